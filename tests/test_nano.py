"""Fun-ASR-Nano (bundle kind `funasr-nano`): its prompt against FunASR's own FunASRNano methods,
a tiny checkpoint in FunASR's layout (FunASR's classes, seeded), conversion and its refusals, a
hub id from a Hugging Face cache, and float32 parity of the two paths."""

from __future__ import annotations

import types

import numpy as np
import pytest

from funasr_qwen4b.config import NanoAdaptorConfig
from funasr_qwen4b.prompt import Prompt, nano_template


@pytest.fixture(scope="module")
def qwen_tokenizer_dir(tmp_path_factory):
    """Qwen's real tokenizer saved as a Hugging Face folder: what FunASR's HuggingfaceTokenizer loads."""
    from funasr_qwen4b.testing import qwen_tokenizer

    out = tmp_path_factory.mktemp("qwen_tok")
    qwen_tokenizer().save_pretrained(out)
    return out


def _funasr_source_ids(tokenizer, frontend, samples, *, hotwords, language, itn, low_frame_rate):
    """FunASR's own prompt path: FunASRNano.get_prompt → generate_chatml → data_template →
    data_load_speech, called unbound (they read nothing of the model but use_low_frame_rate)."""
    import torch

    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401
    from funasr.models.fun_asr_nano.model import FunASRNano

    this = types.SimpleNamespace(use_low_frame_rate=low_frame_rate)
    prompt = FunASRNano.get_prompt(this, hotwords, language, itn)
    chat = FunASRNano.generate_chatml(this, prompt, torch.from_numpy(samples))
    out = FunASRNano.data_load_speech(this, FunASRNano.data_template(this, chat), tokenizer, frontend, meta_data={})
    return out["source_ids"][0].tolist(), int(out["fbank_beg"][0, 0]), int(out["fake_token_len"][0, 0]), \
        int(out["speech_lengths"].reshape(-1)[0])


@pytest.mark.parametrize("low_frame_rate", [True, False])
def test_prompt_ids_equal_funasr(qwen_tokenizer_dir, clip, low_frame_rate):
    """Token for token: our template (text before and after the one audio slot) and the number of
    audio rows equal what FunASR's FunASRNano builds with the real Qwen tokenizer, for language
    None/中文/英文 (and the code "en"), ITN on/off, with and without hotwords."""
    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.tokenizer.hf_tokenizer import HuggingfaceTokenizer

    tokenizer = HuggingfaceTokenizer(init_param_path=str(qwen_tokenizer_dir))
    frontend = WavFrontend(cmvn_file=None, fs=16000, window="hamming", n_mels=80, frame_length=25, frame_shift=10,
                           lfr_m=7, lfr_n=6, dither=0.0)
    samples = clip[:16000 * 2].astype(np.float32)
    cfg = NanoAdaptorConfig(use_low_frame_rate=low_frame_rate)
    cases = [([], None, True), ([], "中文", True), ([], "英文", False), (["阿里巴巴", "FunASR", "通义"], None, True),
             (["热词"], "中文", False), (["Hello world"], "English", True)]
    for hotwords, language, itn in cases:
        ids, beg, rows, frames = _funasr_source_ids(tokenizer, frontend, samples, hotwords=hotwords,
                                                    language=language, itn=itn, low_frame_rate=low_frame_rate)
        ours = Prompt.build(nano_template(hotwords, language, itn), tokenizer)
        assert cfg.audio_rows(frames) == rows, (hotwords, language, itn)
        assert ours.prefix_ids == ids[:beg], (hotwords, language, itn)
        assert ours.suffix_ids == ids[beg + rows:], (hotwords, language, itn)
    # a language code maps to the name the model was trained with
    assert nano_template(language="en") == nano_template(language="英文")
    assert nano_template(language="auto") == nano_template()


def test_prompt_refuses_markers():
    for bad in (["{audio}"], ["a<|startofspeech|>"], [""]):
        with pytest.raises(ValueError, match="hotword"):
            nano_template(bad)


# --- the tiny checkpoint, converted ------------------------------------------------------

@pytest.fixture(scope="module")
def nano_dir(tmp_path_factory):
    """A tiny Fun-ASR-Nano in FunASR's layout, by FunASR's own FunASRNano (seeded), with the CTC
    branch the published file may hold (conversion leaves it out)."""
    from funasr_qwen4b.testing_nano import make_nano_dir

    return make_nano_dir(tmp_path_factory.mktemp("nano") / "Fun-ASR-Nano-tiny", ctc_vocab=50)


@pytest.fixture(scope="module")
def nano_bundle(nano_dir, tmp_path_factory):
    from funasr_qwen4b.convert.nano import convert_nano

    return convert_nano(nano_dir, tmp_path_factory.mktemp("nb") / "bundle", dtype="float32")


def test_bundle_kind(nano_dir, nano_bundle, bundle):
    import torch

    from funasr_qwen4b.bundle import Bundle
    from funasr_qwen4b.prompt import NANO_TEMPLATE

    b = Bundle.read(nano_bundle)
    assert b.kind == "funasr-nano" and not b.query.enabled
    assert isinstance(b.adaptor_config, NanoAdaptorConfig) and b.adaptor_config.use_low_frame_rate
    assert b.sensevoice_config.vocab_size is None and not b.sensevoice_config.embed  # no CTC head, no query table
    assert any(k.startswith("ctc_decoder.") for k in torch.load(nano_dir / "model.pt", weights_only=True))
    assert b.default_template == NANO_TEMPLATE and b.template() == nano_template()
    assert Bundle.read(bundle).kind == "qwen4b"  # a bundle.json without `kind`
    assert not b.verify()["llm"]


def test_parity_float32(nano_bundle, clip):
    """Reference (FunASR's FunASRNano modules, transformers' Qwen3) against MLX, chained and
    isolated, every tap within the float32 tolerance, generated ids identical; then once more
    under a per-call prompt with hotwords, language and ITN off."""
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.parity.harness import run_parity
    from funasr_qwen4b.reference.llm import load_tokenizer

    to_cap = DecodeConfig(loop_guard=False, min_tokens=24, max_tokens=24, ignore_eos=True)  # 24 ids compared
    report = run_parity(nano_bundle, clip, decode=to_cap)
    assert report.passed, report.to_dict()["first_failure"]
    assert report.ctc is None and report.llm["tokens"]["equal"] and len(report.llm["tokens"]["mlx"]) == 24
    assert "adaptor.blocks.1" in report.taps and "ctc.ctc_lo" not in report.taps
    # the LLM reads the prompt's text and the adaptor's first ceil(frames / 8) rows
    rows = report.mlx_taps["llm.inputs_embeds"].shape[0]
    frames = report.mlx_taps["encoder.tp_norm"].shape[0]
    p = Prompt.build(nano_template(), load_tokenizer(nano_bundle / "llm"))
    assert rows == len(p.prefix_ids) + -(-frames // 8) + len(p.suffix_ids)

    hot = run_parity(nano_bundle, clip, template=nano_template(["开放时间"], "中文", itn=False), decode=to_cap,
                     modes=("chained",))
    assert hot.passed and hot.llm["tokens"]["equal"]
    assert hot.mlx_taps["llm.inputs_embeds"].shape[0] > rows


def _variant(nano_dir, tmp_path, edit=None, llm_folder: bool = True):
    """The tiny checkpoint's files linked into `tmp_path`, config.yaml edited by `edit(cfg)`."""
    import yaml

    out = tmp_path / "variant"
    out.mkdir(parents=True)
    (out / "model.pt").symlink_to(nano_dir / "model.pt")
    if llm_folder:
        (out / "Qwen3-0.6B").symlink_to(nano_dir / "Qwen3-0.6B")
    cfg = yaml.safe_load((nano_dir / "config.yaml").read_text(encoding="utf-8"))
    if edit:
        edit(cfg)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return out


def _refused(src, tmp_path, match):
    from funasr_qwen4b.convert.nano import convert_nano

    (tmp_path / "out").mkdir(exist_ok=True)
    out = tmp_path / "out" / "bundle"
    with pytest.raises(ValueError, match=match) as e:
        convert_nano(src, out, dtype="float32")
    assert "\n" not in str(e.value)
    assert not out.exists() and not any((tmp_path / "out").iterdir())  # nothing written, no staging left
    return str(e.value)


def test_convert_refuses(nano_dir, tmp_path):
    (tmp_path / "neither").mkdir()
    (tmp_path / "neither" / "model.safetensors").write_bytes(b"x")
    _refused(tmp_path / "neither", tmp_path, "neither Fun-ASR-Nano layout")

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "fun_asr_nano"}', encoding="utf-8")
    _refused(hf, tmp_path, "config.json")  # transformers' layout, through its mapping, refused

    def more_blocks(cfg):
        cfg["audio_adaptor_conf"]["n_layer"] = 3
    msg = _refused(_variant(nano_dir, tmp_path / "a", more_blocks), tmp_path, "does not match its config")
    assert "model.pt" in msg and "audio_adaptor.blocks.2" in msg

    def wider(cfg):
        cfg["audio_encoder_conf"]["linear_units"] = 256
    msg = _refused(_variant(nano_dir, tmp_path / "b", wider), tmp_path, "wrong shapes")
    assert "audio_encoder.encoders0.0.feed_forward.w_1.weight" in msg

    msg = _refused(_variant(nano_dir, tmp_path / "c", llm_folder=False), tmp_path, "init_param_path")
    assert "config.yaml" in msg and "Qwen3-0.6B" in msg

    from funasr_qwen4b.testing import write_am_mvn

    width = 80 * 7  # the tiny model's mel bins times its low frame rate's stack
    nan = _variant(nano_dir, tmp_path / "d")
    write_am_mvn(nan / "am.mvn", np.zeros(width, np.float32), np.array([np.nan] + [1.0] * (width - 1), np.float32))
    assert str(nan / "am.mvn") in _refused(nan, tmp_path, "NaN or infinite values")
    narrow = _variant(nano_dir, tmp_path / "e")
    write_am_mvn(narrow / "am.mvn", np.zeros(80, np.float32), np.ones(80, np.float32))
    _refused(narrow, tmp_path, f"has 80 values per vector; the frontend makes {width}")


def test_hub_id_offline(nano_dir, tmp_path, monkeypatch):
    """`FunAudioLLM/Fun-ASR-Nano-2512` resolves from a Hugging Face cache, offline, like every id;
    the bundle records the snapshot's files and its card names the hub id."""
    import huggingface_hub.constants

    from funasr_qwen4b.bundle import Bundle
    from funasr_qwen4b.convert.nano import convert_nano
    from tests.test_hub import COMMIT, hf_layout

    hf = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf / "hub"))
    snap = hf_layout(hf, "FunAudioLLM/Fun-ASR-Nano-2512", nano_dir)
    out = convert_nano("FunAudioLLM/Fun-ASR-Nano-2512", tmp_path / "b", q_bits=4)  # dtypes: the defaults
    b = Bundle.read(out)
    assert b.precisions == {"sensevoice": "float32", "adaptor": "float32", "llm": "4bit"}
    assert b.kind == "funasr-nano" and b.components["llm"].entry["source_dir"] == str(snap)
    assert {"model.pt", "config.yaml", "Qwen3-0.6B/config.json"} <= set(b.components["llm"].sources)
    assert b.source("llm") == snap
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"FunAudioLLM/Fun-ASR-Nano-2512@{COMMIT[:12]}" in card and "`funasr-nano`" in card
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        convert_nano("FunAudioLLM/Not-Cached", tmp_path / "c")


def test_batch_equals_one_by_one(nano_bundle, clip):
    """MLX batching of a Nano bundle (padded encoder and adaptor with their masks, the audio rows
    each utterance's own count, one per-call prompt for the batch) gives each utterance's own ids."""
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(nano_bundle)
    cfg = DecodeConfig(loop_guard=False, min_tokens=12, max_tokens=12, ignore_eos=True)
    template = nano_template(["开放时间"], "en")
    clips = [clip, clip[: clip.size // 2]]
    batch = pipe.run_batch(clips, decode=cfg, template=template)
    for x, got in zip(clips, batch):
        alone = pipe.run(x, decode=cfg, template=template)
        assert got.ctc is None and got.audio_embeds.shape == alone.audio_embeds.shape
        np.testing.assert_allclose(got.audio_embeds, alone.audio_embeds, rtol=0, atol=1e-4)
        assert got.decoded.ids == alone.decoded.ids and len(got.decoded.ids) == 12
    with pytest.raises(ValueError, match="no CTC head"):
        Pipeline.from_bundle(nano_bundle, ctc_only=True)


def test_transformers_layout(tmp_path, clip):
    """transformers' -hf layout (written by transformers' own classes) converts through its mapping
    onto FunASR's names: the bundle records the -hf files, holds the mapped weights, and runs; the
    reference twin, which reads FunASR's layout, says so in one line, and the application's
    reference backend reads the mapped files and decodes the ids MLX decodes (float32)."""
    import torch
    from safetensors.numpy import load_file

    from funasr_qwen4b.app.backends import load_pipeline
    from funasr_qwen4b.bundle import Bundle
    from funasr_qwen4b.config import Backend
    from funasr_qwen4b.convert.nano import convert_nano
    from funasr_qwen4b.convert.nano_hf import write_original
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.mlx_port.pipeline import Pipeline
    from funasr_qwen4b.reference.pipeline import Pipeline as RefPipeline
    from funasr_qwen4b.testing_nano_hf import make_nano_hf_dir

    hf = make_nano_hf_dir(tmp_path / "Fun-ASR-Nano-hf")
    b = Bundle.read(convert_nano(hf, tmp_path / "bundle", dtype="float32"))
    assert b.kind == "funasr-nano" and {"config.json", "model.safetensors"} <= set(b.components["adaptor"].sources)
    mapped = torch.load(write_original(hf, tmp_path / "original") / "model.pt", weights_only=True)
    adaptor = load_file(str(b.dir("adaptor") / "model.safetensors"))
    assert adaptor.keys() == {k.removeprefix("audio_adaptor.") for k in mapped if k.startswith("audio_adaptor.")}
    for k, v in adaptor.items():
        np.testing.assert_array_equal(v, mapped[f"audio_adaptor.{k}"].float().numpy())
    out = Pipeline.from_bundle(b).run(clip, decode=DecodeConfig(loop_guard=False, min_tokens=8, max_tokens=8,
                                                                ignore_eos=True))
    assert len(out.decoded.ids) == 8
    with pytest.raises(ValueError, match="converted from transformers' layout"):
        RefPipeline.from_bundle(b)
    # The application's reference backend maps the -hf files onto FunASR's layout and runs FunASRNano.
    ref = load_pipeline(b, Backend.REFERENCE).run(clip, decode=DecodeConfig(loop_guard=False, min_tokens=8,
                                                                            max_tokens=8, ignore_eos=True))
    assert ref.decoded.ids == out.decoded.ids


def test_qwen3_folder_weights_left_alone(tmp_path):
    """A Qwen3 folder that also holds weights (a full download): FunASRNano reads only its config and
    tokenizer, and so do conversion and the sources a bundle records."""
    from funasr_qwen4b.nano_sources import llm_files

    names = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
             "model.safetensors.index.json", "pytorch_model.bin", ".hidden"]
    for n in names:
        (tmp_path / n).write_text("{}", encoding="utf-8")
    assert [p.name for p in llm_files(tmp_path)] == ["config.json", "tokenizer.json", "tokenizer_config.json"]


def test_config_sections_read_as_funasr_reads_them(nano_dir):
    """Keys FunASR's classes ignore (their **kwargs: training switches and the like) are ignored
    here too; encoder_dim and llm_dim come from the encoder and the LLM, as FunASRNano sets them."""
    import yaml

    from funasr_qwen4b.config import nano_adaptor_config_from_yaml, nano_encoder_config_from_yaml

    cfg = yaml.safe_load((nano_dir / "config.yaml").read_text(encoding="utf-8"))
    more = {**cfg, "audio_encoder_conf": {**cfg["audio_encoder_conf"], "freeze_layer_num": -1, "hub": "hf"},
            "audio_adaptor_conf": {**cfg["audio_adaptor_conf"], "activation_checkpoint": False, "llm_dim": 4096}}
    assert nano_encoder_config_from_yaml(more, has_cmvn=False) == nano_encoder_config_from_yaml(cfg, has_cmvn=False)
    ad = nano_adaptor_config_from_yaml(more, encoder_dim=64, llm_dim=64)
    assert ad == nano_adaptor_config_from_yaml(cfg, encoder_dim=64, llm_dim=64) and ad.llm_dim == 64
    with pytest.raises(ValueError, match="hub=ms"):
        nano_encoder_config_from_yaml({**cfg, "audio_encoder_conf": {"hub": "ms"}}, has_cmvn=False)
