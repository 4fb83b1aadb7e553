"""Fun-ASR-Nano's two oracles on one checkpoint. A tiny `-hf` repository is written by
transformers' own classes, mapped to FunASR's original layout by convert/nano_hf.py and loaded
into FunASR's own FunASRNano as AutoModel loads a download (the class built from config.yaml,
then the state dict: strictly here). On the same audio: the encoder, the adaptor, the prompt,
the LLM input, the prefill logits and the greedy ids.

Where the oracles differ by design the difference is asserted, not hidden: the adaptor's
LayerNorm eps (FunASR's adaptor blocks 1e-12, transformers' config 1e-5), and how many adaptor
rows reach the LLM (FunASR with the published `use_low_frame_rate`: ceil(T/8); transformers: T).
"""

from __future__ import annotations

import copy
import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from funasr_qwen4b.convert.nano_hf import QWEN_DIR, read_hf, write_original

TOL = 1e-5  # float32, the same computation: max abs


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from funasr_qwen4b.testing_nano_hf import make_nano_hf_dir

    return make_nano_hf_dir(tmp_path_factory.mktemp("nano_hf") / "Fun-ASR-Nano-tiny-hf")


@pytest.fixture(scope="module")
def original(hf_dir, tmp_path_factory):
    return write_original(hf_dir, tmp_path_factory.mktemp("nano_orig") / "Fun-ASR-Nano-tiny")


def build_funasr(original, **adaptor_conf):
    """FunASR's FunASRNano from config.yaml (paths joined onto the folder, as FunASR's hub loader
    does), model.pt loaded strictly; with its WavFrontend (dither 0) and tokenizer."""
    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401  (first)
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.models.fun_asr_nano.model import FunASRNano
    from funasr.tokenizer.hf_tokenizer import HuggingfaceTokenizer

    cfg = yaml.safe_load((original / "config.yaml").read_text(encoding="utf-8"))
    cfg["llm_conf"]["init_param_path"] = str(original / QWEN_DIR)
    cfg["audio_adaptor_conf"].update(adaptor_conf)
    model = FunASRNano(**{**cfg["model_conf"], **cfg, "input_size": 560}).eval()
    model.load_state_dict(torch.load(original / "model.pt", weights_only=True), strict=True)
    return model, WavFrontend(**cfg["frontend_conf"], dither=0.0), HuggingfaceTokenizer(str(original / QWEN_DIR))


@pytest.fixture(scope="module")
def funasr(original):
    """As published: the LLM reads the first ceil(T/8) adaptor rows."""
    return build_funasr(original)


@pytest.fixture(scope="module")
def funasr_all_rows(original):
    """The same checkpoint without use_low_frame_rate: the LLM reads every adaptor row, as transformers does."""
    return build_funasr(original, use_low_frame_rate=False)[0]


@pytest.fixture(scope="module")
def hf_model(hf_dir):
    return load_hf(hf_dir)


@pytest.fixture(scope="module")
def hf_aligned(hf_dir):
    """transformers' model with FunASR's adaptor eps."""
    return load_hf(hf_dir, adaptor_eps=1e-12)


@pytest.fixture(scope="module")
def hf_tokenizer(hf_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(hf_dir))


def load_hf(hf_dir, adaptor_eps: float | None = None):
    """transformers' FunAsrNanoForConditionalGeneration from the -hf folder, float32, each part's
    attention computed as FunASR computes it: matmul-softmax in the encoder and adaptor (eager),
    torch's sdpa in Qwen3 (FunASR builds its LLM with transformers' default); `adaptor_eps`
    overrides its adaptor LayerNorms."""
    from transformers import FunAsrNanoForConditionalGeneration

    attention = {"": "eager", "audio_config": "eager", "adaptor_config": "eager", "text_config": "sdpa"}
    model = FunAsrNanoForConditionalGeneration.from_pretrained(str(hf_dir), dtype=torch.float32,
                                                               attn_implementation=attention).eval()
    if adaptor_eps is not None:
        for m in model.model.multi_modal_projector.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.eps = adaptor_eps
    return model


def funasr_features(frontend, samples):
    """FunASR's features as data_load_speech makes them, [1, T, 560] (a copy: FunASR's encoder
    scales its input in place)."""
    from funasr.utils.load_utils import extract_fbank

    feats, _ = extract_fbank(torch.from_numpy(samples), data_type="sound", frontend=frontend, is_final=True)
    return feats.clone()


def funasr_prepare(model, tokenizer, frontend, samples, hotwords=(), language=None):
    """FunASR's own prompt, features, encoder, adaptor and splicing: inference_prepare."""
    chat = model.generate_chatml(model.get_prompt(list(hotwords), language, True), torch.from_numpy(samples))
    with torch.no_grad():
        embeds, _, batch, source_ids, meta = model.inference_prepare([chat], None, ["k"], tokenizer, frontend,
                                                                     device="cpu")
    return embeds, source_ids[0].tolist(), int(batch["fbank_beg"][0, 0]), int(batch["fake_token_len"][0, 0]), meta


def hf_prompt_ids(hf_dir, tok, n_audio, hotwords=(), language=None):
    """transformers' prompt: the repository's chat template over transformers' content items,
    the audio placeholder repeated once per audio row as its processor does, tokenized by the
    repository's tokenizer `tok`."""
    content = [{"type": "audio", "audio": "clip"}]
    content += [{"type": "keywords", "keywords": list(hotwords)}] if hotwords else []
    content += [{"type": "language", "language": language}] if language else []
    text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                   add_generation_prompt=True,
                                   chat_template=(hf_dir / "chat_template.jinja").read_text(encoding="utf-8"))
    placeholder = json.loads((hf_dir / "processor_config.json").read_text())["audio_token"]
    return tok.encode(text.replace(placeholder, placeholder * n_audio), add_special_tokens=False)


def test_original_layout(hf_dir, original, funasr):
    """The mapping's files are FunASR's: config.yaml FunASRNano builds from, model.pt it loads with
    every key (the fixture's strict load), the Qwen3 folder its LLM config and tokenizer come from;
    the norms transformers keeps on layers land on FunASR's after_norm / tp_norm."""
    from safetensors.torch import load_file

    assert sorted(p.name for p in (original / QWEN_DIR).iterdir()) == ["config.json", "tokenizer.json",
                                                                       "tokenizer_config.json"]
    cfg = yaml.safe_load((original / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["audio_encoder_conf"]["num_blocks"] == 3 and cfg["audio_encoder_conf"]["tp_blocks"] == 2
    assert cfg["audio_adaptor_conf"]["use_low_frame_rate"] is True  # the published config's
    hf = load_file(str(hf_dir / "model.safetensors"))
    model = funasr[0]
    enc = model.audio_encoder
    assert torch.equal(enc.after_norm.weight, hf["model.audio_tower.layers.2.final_layernorm.weight"])
    assert torch.equal(enc.tp_norm.bias, hf["model.audio_tower.layers.4.final_layernorm.bias"])
    assert torch.equal(enc.encoders[0].self_attn.linear_q_k_v.weight[64:128],
                       hf["model.audio_tower.layers.1.self_attn.k_proj.weight"])
    assert torch.equal(model.llm.lm_head.weight, hf["model.language_model.embed_tokens.weight"])


def test_encoder_and_adaptor(funasr, hf_model, hf_aligned, clip):
    """Same features in: the encoder outputs agree; the adaptor outputs differ by the LayerNorm eps
    alone (more than the tolerance with transformers' 1e-5, within it with FunASR's 1e-12)."""
    model, frontend, tokenizer = funasr
    _, _, _, _, meta = funasr_prepare(model, tokenizer, frontend, clip)
    feats = funasr_features(frontend, clip)
    mask = torch.ones(feats.shape[:2], dtype=torch.long)
    hf = hf_model
    assert hf.config.adaptor_config.layer_norm_eps == 1e-5
    assert model.audio_adaptor.blocks[0].norm1.eps == 1e-12
    with torch.no_grad():
        enc = hf.model.audio_tower(input_features=feats, input_features_mask=mask).last_hidden_state
        np.testing.assert_allclose(enc.numpy(), meta["encoder_out"].numpy(), rtol=0, atol=TOL)
        # Isolated: FunASR's encoder output into both adaptors.
        apart = (hf.model.multi_modal_projector(meta["encoder_out"], mask) - meta["audio_adaptor_out"]).abs().max()
        same = hf_aligned.model.multi_modal_projector(meta["encoder_out"], mask)
    assert apart > 10 * TOL, f"eps 1e-5 vs 1e-12 should show, got {float(apart):.2e}"
    np.testing.assert_allclose(same.numpy(), meta["audio_adaptor_out"].numpy(), rtol=0, atol=TOL)


def test_encoder_length(funasr, hf_model):
    """A third difference, asserted: transformers' position table holds max_position_embeddings − 1
    frames (2048 LFR frames, 122.88 s), FunASR's encoder computes positions for any length."""
    limit = hf_model.config.audio_config.max_position_embeddings - 1
    feats = torch.randn(1, limit + 1, 560, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(feats.shape[:2], dtype=torch.long)
    with torch.no_grad():
        out, lengths = funasr[0].audio_encoder(feats.clone(), torch.tensor([limit + 1]))
        assert out.shape == (1, limit + 1, 64) and bool(torch.isfinite(out).all())
        with pytest.raises(RuntimeError):
            hf_model.model.audio_tower(input_features=feats, input_features_mask=mask)
        ok = hf_model.model.audio_tower(input_features=feats[:, :limit], input_features_mask=mask[:, :limit])
    assert ok.last_hidden_state.shape == (1, limit, 64)


@pytest.mark.parametrize("hotwords,language", [((), None), (("开放", "时间"), "英文")])
def test_prompt_and_audio_rows(hf_dir, funasr, funasr_all_rows, hf_model, hf_tokenizer, clip, hotwords, language):
    """The -hf chat template tokenizes to FunASR's ChatML token for token, with transformers'
    audio token where FunASR puts its placeholders. Rows: transformers splices all T adaptor rows;
    FunASR with the published use_low_frame_rate splices the first ceil(T/8), and T without it."""
    model, frontend, tokenizer = funasr
    embeds, ids, beg, n, meta = funasr_prepare(model, tokenizer, frontend, clip, hotwords, language)
    _, ids_full, beg_full, n_full, _ = funasr_prepare(funasr_all_rows, tokenizer, frontend, clip, hotwords, language)
    frames = meta["encoder_out"].shape[1]
    assert n_full == frames and n == -(-frames // 8) and beg == beg_full
    torch.testing.assert_close(embeds[0, beg:beg + n], meta["audio_adaptor_out"][0, :n], rtol=0, atol=0)
    audio_token = hf_model.config.audio_token_id
    expected = ids_full[:beg] + [audio_token] * n_full + ids_full[beg + n_full:]
    assert hf_prompt_ids(hf_dir, hf_tokenizer, n_full, hotwords, language) == expected
    assert ids[:beg] == ids_full[:beg] and ids[beg + n:] == ids_full[beg + n_full:]


def test_llm_logits_and_greedy_ids(funasr, funasr_all_rows, hf_aligned, clip):
    """With the two design differences aligned (FunASR without the low-frame-rate cut, FunASR's eps
    in transformers' adaptor), each oracle end to end from the same features and its own prompt:
    prefill logits agree at every position, greedy ids are identical, and FunASR's own
    `inference` text is transformers' decoded ids."""
    _, frontend, tokenizer = funasr
    model, hf = funasr_all_rows, hf_aligned
    embeds, ids, beg, n, _ = funasr_prepare(model, tokenizer, frontend, clip)
    hf_ids = torch.tensor([ids[:beg] + [hf.config.audio_token_id] * n + ids[beg + n:]])
    feats = funasr_features(frontend, clip)
    mask = torch.ones(feats.shape[:2], dtype=torch.long)
    steps = 8
    with torch.no_grad():
        ref = model.llm(inputs_embeds=embeds).logits
        got = hf(input_ids=hf_ids, input_features=feats, input_features_mask=mask).logits
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=TOL)
        ones = torch.ones(embeds.shape[:2], dtype=torch.long)
        ref_ids = model.llm.generate(inputs_embeds=embeds, attention_mask=ones, max_new_tokens=steps,
                                     do_sample=False, pad_token_id=model.llm.config.eos_token_id)
        got_ids = hf.generate(input_ids=hf_ids, input_features=feats, input_features_mask=mask,
                              attention_mask=torch.ones_like(hf_ids), max_new_tokens=steps, do_sample=False)
        got_ids = got_ids[0, hf_ids.shape[1]:].tolist()
        text = model.inference([torch.from_numpy(clip)], key=["k"], tokenizer=tokenizer, frontend=frontend,
                               device="cpu", max_length=steps)[0][0]["text"]
    assert ref_ids[0].tolist() == got_ids and len(got_ids) == steps
    assert text == re.sub(r"\s+", " ", tokenizer.decode(got_ids, skip_special_tokens=True))


# --- what the mapping refuses: one line naming the file, nothing written ------------------------

def _copy(hf_dir, tmp_path):
    dst = tmp_path / "hf"
    shutil.copytree(hf_dir, dst)
    return dst


def test_refuses_what_is_not_nano_hf(hf_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = _copy(hf_dir, tmp_path)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen3"}))
    with pytest.raises(ValueError, match=r"config\.json: model_type is 'qwen3'"):
        read_hf(bad)
    (bad / "config.json").write_text(json.dumps(cfg))
    sd = load_file(str(hf_dir / "model.safetensors"))
    gone = "model.multi_modal_projector.layers.1.mlp.fc2.bias"
    save_file({k: v for k, v in sd.items() if k != gone}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"1 tensors missing .*{re.escape(gone)}"):
        read_hf(bad)
    wrong = "model.audio_tower.layers.0.self_attn.fsmn.conv.weight"
    save_file({**sd, wrong: torch.zeros(64, 1, 9)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"model\.safetensors: {re.escape(wrong)} has shape \[64, 1, 9\], "
                                         rf"config\.json says \[64, 1, 11\]"):
        read_hf(bad)
    save_file({**sd, "ctc.ctc_lo.weight": torch.zeros(3, 64)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.safetensors: unexpected tensor ctc\.ctc_lo\.weight"):
        read_hf(bad)
    gelu = copy.deepcopy(cfg)
    gelu["adaptor_config"]["projector_hidden_act"] = "gelu"
    (bad / "config.json").write_text(json.dumps(gelu))
    with pytest.raises(ValueError, match=r"config\.json: adaptor_config\.projector_hidden_act is 'gelu'"):
        read_hf(bad)
    out = tmp_path / "orig"
    with pytest.raises(ValueError):
        write_original(bad, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_write_refuses_an_existing_output(hf_dir, original):
    before = {p: p.stat().st_mtime_ns for p in original.rglob("*")}
    with pytest.raises(ValueError, match="already exists; pass --force"):
        write_original(hf_dir, original)
    assert {p: p.stat().st_mtime_ns for p in original.rglob("*")} == before


# --- the transformers oracle's runner: the project's taps, as FunASR's modules give them -----------

def test_transformers_runner_taps_equal_funasr(hf_dir, funasr, funasr_all_rows, clip):
    """reference/nano_transformers.py (transformers' model under the project's tap names, aligned to
    FunASR: its eps, its ⌈T/8⌉ audio rows) against FunASR's FunASRNano hooked by the same names:
    every tap within the float32 tolerance, isolated inputs where the layer's input is, greedy ids
    identical. Unaligned on rows (transformers' own splicing), it equals FunASR without the cut."""
    from funasr_qwen4b import nano_taps, taps
    from funasr_qwen4b.config import NanoAdaptorConfig
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.prompt import nano_template
    from funasr_qwen4b.reference.nano_transformers import TransformersNano
    from funasr_qwen4b.reference.taps import TapRecorder

    model, frontend, tokenizer = funasr
    steps = DecodeConfig(loop_guard=False, min_tokens=8, max_tokens=8, ignore_eos=True)
    rows = NanoAdaptorConfig(use_low_frame_rate=True).audio_rows
    runner = TransformersNano.load(hf_dir, nano_template(), steps, adaptor_eps=1e-12, audio_rows=rows)
    got = TapRecorder()
    out = runner.run(clip, got)

    ref = TapRecorder()
    encoder = [taps.ENCODERS0, taps.encoder_layer(0), taps.encoder_layer(1), taps.AFTER_NORM, taps.tp_layer(0),
               taps.tp_layer(1), taps.TP_NORM]
    adaptor = nano_taps.nano_adaptor_taps(NanoAdaptorConfig(n_layer=2, llm_dim=64, attention_heads=4))
    llm = [taps.llm_layer(0), taps.llm_layer(1), taps.LLM_NORM]
    with ref.hooks(model.audio_encoder, encoder, prefix="encoder."), \
            ref.hooks(model.audio_adaptor, adaptor, prefix=taps.ADAPTOR):
        embeds, *_ = funasr_prepare(model, tokenizer, frontend, clip)
    with torch.no_grad():
        with ref.hooks(model.llm, llm, prefix=taps.LLM):
            logits = model.llm(inputs_embeds=embeds).logits
        ids = model.llm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                                 max_new_tokens=8, do_sample=False, pad_token_id=model.llm.config.eos_token_id)
    feats = funasr_features(frontend, clip)[0].numpy()
    np.testing.assert_allclose(got.outputs[taps.CMVN], feats, rtol=0, atol=TOL)
    np.testing.assert_array_equal(got.outputs[taps.ENCODER_INPUT], feats)
    for name in encoder + adaptor + llm:
        np.testing.assert_allclose(got.outputs[name], ref.outputs[name], rtol=0, atol=TOL, err_msg=name)
        np.testing.assert_allclose(got.inputs[name], ref.inputs[name], rtol=0, atol=TOL, err_msg=f"{name} (input)")
    np.testing.assert_allclose(got.outputs[taps.LLM_INPUTS_EMBEDS], embeds[0].numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(got.outputs[taps.LLM_LOGITS], logits[0, -1].numpy(), rtol=0, atol=TOL)
    assert out.decoded.ids == ids[0].tolist() and got.outputs[taps.LLM_TOKENS].tolist() == out.decoded.ids
    assert out.audio_embeds.shape == (rows(got.outputs[taps.TP_NORM].shape[0]), 64)

    # Every row, as transformers splices them: FunASR without the cut (the model shared, not reloaded).
    own = TransformersNano(runner.model, runner.feature_extractor, runner.setup)
    every = TapRecorder()
    assert own.run(clip, every).decoded.ids != out.decoded.ids  # the rows the LLM reads matter
    full, *_ = funasr_prepare(funasr_all_rows, tokenizer, frontend, clip)
    with torch.no_grad():
        logits = funasr_all_rows.llm(inputs_embeds=full).logits[0, -1].numpy()
    np.testing.assert_allclose(every.outputs[taps.LLM_LOGITS], logits, rtol=0, atol=TOL)


def test_sharded_and_without_funasr(hf_dir, tmp_path):
    """Weights split over shards with an index map the same; the mapping imports no FunASR (a
    machine that converts needs none): run where `import funasr` fails."""
    import subprocess
    import sys

    from safetensors.torch import load_file, save_file

    sharded = _copy(hf_dir, tmp_path)
    sd = load_file(str(sharded / "model.safetensors"))
    (sharded / "model.safetensors").unlink()
    keys = sorted(sd)
    names = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in names.items():
        save_file({k: sd[k] for k in part}, str(sharded / name), metadata={"format": "pt"})
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: name for name, part in names.items() for k in part}}))
    one, two = read_hf(hf_dir), read_hf(sharded)
    assert one.config == two.config and one.state_dict.keys() == two.state_dict.keys()
    assert all(torch.equal(v, two.state_dict[k]) for k, v in one.state_dict.items())

    code = ("import sys; sys.modules['funasr'] = None\n"
            "from funasr_qwen4b.convert.nano_hf import write_original\n"
            f"write_original({str(sharded)!r}, {str(tmp_path / 'orig')!r})\n"
            "assert 'funasr' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert torch.load(tmp_path / "orig" / "model.pt", weights_only=True).keys() == one.state_dict.keys()
