"""Qwen3 in both paths: identical ids for every template, self-consistency
(token path == embedding path, cached == recomputed), streaming, the
repetition guard, quantized bundles, translation and long audio."""

import json

import mlx.core as mx
import numpy as np
import pytest
import torch

from funasr_qwen4b import taps
from funasr_qwen4b.decoding import DecodeConfig, Decoded, decode_loop, loop_start, process_logits, token_bytes
from funasr_qwen4b.prompt import PRESETS, Prompt, template_text
from funasr_qwen4b.reference.llm import load_tokenizer
from funasr_qwen4b.parity.harness import run_parity

NO_GUARD = DecodeConfig(loop_guard=False, min_tokens=24, max_tokens=24)


def test_sharded_checkpoint_with_real_qwen_vocabulary(qwen_dir):
    assert (qwen_dir / "model.safetensors.index.json").is_file()
    assert len(list(qwen_dir.glob("model-*.safetensors"))) >= 2
    cfg = json.loads((qwen_dir / "config.json").read_text())
    assert cfg["tie_word_embeddings"] and cfg["vocab_size"] == 151936
    tok = load_tokenizer(qwen_dir)
    assert [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == \
        [151643, 151644, 151645]
    assert tok.convert_tokens_to_ids("<|object_ref_start|>") == 151646  # not a speech marker
    ids = tok.encode("开放时间：早上九点至下午五点", add_special_tokens=False)
    assert ids[:2] == [100713, 20450]  # Qwen's own BPE: 开放 / 时间
    assert tok.decode(ids) == "开放时间：早上九点至下午五点"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_ids_identical_for_every_template(full_bundle, clip, name):
    rep = run_parity(full_bundle, clip, template=PRESETS[name], decode=NO_GUARD)
    assert rep.llm["tokens"]["equal"], rep.llm["tokens"]
    assert len(rep.llm["tokens"]["mlx"]) == 24
    assert rep.llm["logits"]["top1"] and rep.llm["logits"]["top5_same_order"]
    for mode in ("chained", "isolated"):
        assert rep.first_failure(mode) is None, max(rep.results[mode], key=lambda m: m.rel_l2)
    logits = {m.name: m for m in rep.results["chained"]}[taps.LLM_LOGITS]
    assert logits.rel_l2 <= 1e-4
    lp = rep.llm["logprobs"]  # the generated ids' log-probabilities, MLX speculating, the reference not
    assert lp["compared"] == 24 and lp["max_abs_diff"] <= 1e-4, lp
    tok = load_tokenizer(full_bundle / "llm")
    prompt = Prompt.build(PRESETS[name], tok)
    n_audio = rep.mlx_taps[taps.ADAPTOR_NORM].shape[0]
    assert rep.mlx_taps[taps.LLM_INPUTS_EMBEDS].shape[0] == len(prompt.prefix_ids) + n_audio + len(prompt.suffix_ids)


def test_template_tokenization_keeps_special_tokens(qwen_dir):
    tok = load_tokenizer(qwen_dir)
    p = Prompt.build(PRESETS["chatml-nothink"], tok)
    assert p.prefix_ids[0] == 151644 and 151645 in p.prefix_ids  # <|im_start|> ... <|im_end|>
    # Qwen3's ids: <think> 151667, "\n\n" 271, </think> 151668
    assert p.suffix_ids[:1] == [151645] and p.suffix_ids[-4:] == [151667, 271, 151668, 271]
    assert Prompt.build(PRESETS["raw"], tok) == Prompt([], [])
    with pytest.raises(ValueError, match="exactly one"):
        template_text(presets={"x": "no slot"}, default="x")


def _pipes(full_bundle):
    from funasr_qwen4b.mlx_port.pipeline import Pipeline
    from funasr_qwen4b.reference.pipeline import Pipeline as RefPipeline

    mlx = Pipeline.from_bundle(full_bundle, decode=NO_GUARD)
    ref = RefPipeline.from_bundle(full_bundle, mlx.query, template=mlx.setup.template, decode=NO_GUARD)
    return mlx, ref


def test_token_path_equals_embedding_path_and_cache_equals_recompute(full_bundle):
    from mlx_lm.generate import generate_step

    mlx, ref = _pipes(full_bundle)
    prompt = load_tokenizer(full_bundle / "llm").encode("今天是三月十五日", add_special_tokens=False)
    n = 12
    # MLX: prompt ids vs the same ids as input_embeddings, both through mlx-lm's loop and cache
    by_ids = [int(t) for t, _ in generate_step(mx.array(prompt), mlx.llm.model, max_tokens=n)]
    by_embeds = [int(t) for t, _ in generate_step(mx.array([], dtype=mx.int32), mlx.llm.model, max_tokens=n,
                                                  input_embeddings=mlx.llm.embed(prompt))]
    assert by_ids == by_embeds
    # MLX without a cache: the whole sequence recomputed at every step
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(mx.argmax(mlx.llm.model(mx.array([seq]))[0, -1])))
    assert seq[len(prompt):] == by_ids
    # Reference: cached greedy (our loop) vs transformers recomputing, vs token ids
    cached, cached_logprobs = zip(*ref.llm.tokens(ref.llm.embed(prompt)[None], NO_GUARD, n))
    seq, recomputed = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = ref.llm.model(input_ids=torch.tensor([seq])).logits[0, -1]
            seq.append(int(logits.argmax()))
            recomputed.append(float(torch.log_softmax(logits, -1)[seq[-1]]))
    assert seq[len(prompt):] == list(cached) == by_ids
    # each id's log-probability: the reference's cached loop as recomputed, MLX's as the reference's
    np.testing.assert_allclose(cached_logprobs, recomputed, rtol=0, atol=1e-4)
    mlx_ids, mlx_logprobs = zip(*mlx.llm.tokens(mlx.llm.embed(prompt)[None], NO_GUARD, n))
    assert list(mlx_ids) == by_ids
    np.testing.assert_allclose(mlx_logprobs, cached_logprobs, rtol=0, atol=1e-4)


def test_streaming_equals_final_text_across_split_characters(qwen_dir):
    tok = load_tokenizer(qwen_dir)
    text = "龘靐齉齾，开放时间：早上九点至下午五点。"
    ids = tok.encode(text, add_special_tokens=False)
    assert sum("\ufffd" in tok.decode([i]) for i in ids) >= 4  # characters split across byte-level tokens
    deltas = []
    d = decode_loop(((i, -1.0) for i in ids + [151645]), cap=100, stop=[151645], cfg=DecodeConfig(),
                    on_text=deltas.append, tokenizer=tok)
    assert d.stop == "eos" and d.ids == ids
    assert all("\ufffd" not in x for x in deltas) and "".join(deltas) == text


def test_token_bytes_spell_the_text(qwen_dir):
    """Each id's bytes (byte-level BPE mapped back): together the UTF-8 of what the tokenizer decodes,
    a character split across ids split as its bytes are."""
    tok = load_tokenizer(qwen_dir)
    for text in ("龘靐齉齾，开放时间：早上九点至下午五点。", " It's nine o'clock.\n\tok", "<|im_end|>x"):
        ids = tok.encode(text, add_special_tokens=False)
        pieces = token_bytes(tok, ids)
        assert len(pieces) == len(ids) and b"".join(pieces).decode() == tok.decode(ids) == text
    assert any(_not_utf8(p) for p in token_bytes(tok, tok.encode("龘靐齉齾", add_special_tokens=False)))


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return True
    return False


def test_transcriber_stream_equals_text(full_bundle, clip):
    from funasr_qwen4b.app.transcriber import Transcriber

    t = Transcriber.load(full_bundle, decode=NO_GUARD)
    deltas = []
    r = t.transcribe(clip, sample_rate=16000, on_text=deltas.append)
    assert "".join(deltas) == r["text"] and r["tokens"] == 24 and r["stop"] == ["cap"]
    assert set(r["timings"]) >= {"frontend", "encoder", "adaptor", "llm_prefill", "llm_decode", "total"}


def test_repetition_guard_hand_cases():
    cfg = DecodeConfig()
    assert loop_start([5, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], cfg) == 4  # keep 5 and one copy of 1 2 3
    assert loop_start([5, 1, 2, 3, 1, 2, 3, 1, 2, 3], cfg) is None  # 3 copies: not yet a loop
    assert loop_start([9] * 7, cfg) is None and loop_start([9] * 8, cfg) == 1  # single tokens need 8
    looping = [5] + [1, 2, 3] * 50
    d = decode_loop(zip(looping, [-k / 10 for k in range(len(looping))]), cap=100, stop=[0], cfg=cfg)
    assert d == Decoded([5, 1, 2, 3], "loop", [0.0, -0.1, -0.2, -0.3], d.prefill_s, d.decode_s)
    assert decode_loop(((i, 0.0) for i in [1, 2, 3] * 50), cap=100, stop=[0], cfg=NO_GUARD).stop == "cap"


def test_streaming_holds_back_what_a_loop_cut_removes(qwen_dir):
    tok = load_tokenizer(qwen_dir)
    word = tok.encode("早上", add_special_tokens=False)
    deltas = []
    d = decode_loop(((i, -1.0) for i in word * 40), cap=200, stop=[151645], cfg=DecodeConfig(),
                    on_text=deltas.append, tokenizer=tok)
    assert d.stop == "loop" and "".join(deltas) == tok.decode(d.ids) == "早上"


def test_penalties_match_transformers_logits_processors():
    """The penalties claim Hugging Face semantics: its own processors are the oracle."""
    from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.standard_normal(50).astype(np.float32) * 3
        generated = rng.integers(0, 50, size=int(rng.integers(1, 30))).tolist()
        ids = torch.tensor([generated])
        for cfg, hf in ((DecodeConfig(repetition_penalty=1.3), RepetitionPenaltyLogitsProcessor(1.3)),
                        (DecodeConfig(repetition_penalty=0.7), RepetitionPenaltyLogitsProcessor(0.7)),
                        (DecodeConfig(no_repeat_ngram=2), NoRepeatNGramLogitsProcessor(2)),
                        (DecodeConfig(no_repeat_ngram=3), NoRepeatNGramLogitsProcessor(3))):
            expected = hf(ids, torch.from_numpy(logits.copy())[None])[0].numpy()
            np.testing.assert_array_equal(process_logits(generated, logits, cfg), expected)


def test_penalties_hand_checked_and_same_in_both_paths(full_bundle, clip):
    logits = np.array([2.0, -1.0, 0.5, 3.0], np.float32)
    out = process_logits([0, 1], logits, DecodeConfig(repetition_penalty=2.0))
    np.testing.assert_array_equal(out, [1.0, -2.0, 0.5, 3.0])
    out = process_logits([3, 1, 2, 3, 1], logits, DecodeConfig(no_repeat_ngram=3))
    assert out[2] == -np.inf and np.isfinite(out[[0, 1, 3]]).all()  # "3 1 2" seen: after "3 1" ban 2
    cfg = DecodeConfig(loop_guard=False, min_tokens=16, max_tokens=16, repetition_penalty=1.3, no_repeat_ngram=2)
    rep = run_parity(full_bundle, clip, decode=cfg, modes=("chained",))
    ids = rep.llm["tokens"]["mlx"]
    assert rep.llm["tokens"]["equal"] and len(ids) == 16
    assert len({tuple(ids[i:i + 2]) for i in range(15)}) == 15  # no bigram repeats
    # the log-probabilities of the penalised distributions the ids were picked from, alike in both
    assert rep.llm["logprobs"]["compared"] == 16 and rep.llm["logprobs"]["max_abs_diff"] <= 1e-4, rep.llm["logprobs"]


@pytest.mark.accuracy  # a 4- or 8-bit LM head over Qwen's vocabulary takes ~0.6 s a pass on a CPU
@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_llm_loads_and_transcribes(full_bundle, clip, tmp_path, bits):
    import shutil

    import mlx_lm

    from funasr_qwen4b.convert.llm import convert_llm
    from funasr_qwen4b.app.transcriber import Transcriber

    b = tmp_path / "b"
    shutil.copytree(full_bundle, b)
    src = json.loads((b / "bundle.json").read_text())["components"]["llm"]["source_dir"]
    convert_llm(src, b, q_bits=bits, force=True, embeddings_8bit=bits == 4)
    model, _ = mlx_lm.load(str(b / "llm"))  # plain mlx-lm loads it
    cfg = json.loads((b / "llm" / "config.json").read_text())
    assert cfg["quantization"]["bits"] == bits
    if bits == 4:
        assert cfg["quantization"]["model.embed_tokens"]["bits"] == 8
    r = Transcriber.load(b, decode=NO_GUARD).transcribe(clip, sample_rate=16000)
    rep = run_parity(b, clip, decode=NO_GUARD, modes=("chained",))
    assert rep.meta["component_dtypes"]["llm"] == f"{bits}bit"
    assert r["tokens"] == 24 and r["text"] and r["text"] == rep.llm["mlx_text"].strip()
    # Against the float32 reference: the prefill logits are off by the quantization error
    # (measured 1.4e-2 at both widths: the tied 8-bit embedding / LM head dominates), not more,
    # and not less (it really is quantized); the first generated id, their argmax, agrees.
    logits = {m.name: m for m in rep.results["chained"]}[taps.LLM_LOGITS]
    assert 1e-3 < logits.rel_l2 < 5e-2, logits
    assert rep.llm["logits"]["top1"] and rep.llm["tokens"]["mlx"][0] == rep.llm["tokens"]["reference"][0]


def test_translation_pass_same_in_both_backends(full_bundle, clip):
    from funasr_qwen4b.app.transcriber import Transcriber

    mlx = Transcriber.load(full_bundle, decode=NO_GUARD)
    ref = Transcriber.load(full_bundle, "reference", decode=NO_GUARD)
    a = mlx.transcribe(clip, sample_rate=16000, translate=True)
    b = ref.transcribe(clip, sample_rate=16000, translate=True)
    assert a["text"] == b["text"] and a["translation"] == b["translation"]
    assert "translate" in a["timings"]


def test_long_audio_split_at_quiet_points(full_bundle, clip_10s):
    from funasr_qwen4b.audio import split_points
    from funasr_qwen4b.app.transcriber import Transcriber, join_texts

    rng = np.random.default_rng(0)
    loud = lambda s: 0.3 * rng.standard_normal(int(s * 16000)).astype(np.float32)  # noqa: E731
    quiet_ = lambda s: 1e-4 * rng.standard_normal(int(s * 16000)).astype(np.float32)  # noqa: E731
    x = np.concatenate([loud(20), quiet_(1), loud(25), quiet_(1), loud(20)])  # 67 s, gaps at 20-21 s and 46-47 s
    cuts = split_points(x, 30.0)
    assert len(cuts) == 2
    assert 20 * 16000 <= cuts[0] <= 21 * 16000 and 46 * 16000 <= cuts[1] <= 47 * 16000
    speech = lambda s: np.resize(clip_10s, int(s * 16000))  # noqa: E731  (noise is no speech: see nospeech.py)
    x = np.concatenate([speech(20), quiet_(1), speech(25), quiet_(1), speech(20)])
    r = Transcriber.load(full_bundle, decode=NO_GUARD, max_seconds=30, vad="off").transcribe(x, sample_rate=16000)
    bounds = [0, *split_points(x, 30.0), x.size]
    assert r["chunks"] == len(bounds) - 1 >= 3 and r["tokens"] == 24 * r["chunks"]
    segs, cuts = r["segments"], [round(b / 16000, 3) for b in bounds]
    assert all(s["start"] <= s["end"] for s in segs) and all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:]))
    for lo, hi in zip(cuts, cuts[1:]):  # each piece's segments stay inside it and carry its ids
        inside = [s for s in segs if lo <= s["start"] and s["end"] <= hi]
        assert inside and sum(len(s["tokens"]) for s in inside) == 24
    assert sum(len(s["tokens"]) for s in segs) == r["tokens"]
    assert join_texts(["开放", "时间"]) == "开放时间" and join_texts(["open", "now"]) == "open now"


def test_bench_reports_every_stage_and_fixed_token_count(full_bundle, tmp_path):
    """Structure only: no test asserts a time."""
    from funasr_qwen4b.app.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "-m", str(full_bundle), "--backend", "both", "--clips", "2", "--reps", "2",
                 "--tokens", "6", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    for backend in ("mlx", "reference"):
        c = rep["results"][backend]["clips"]["2s"]
        assert c["generated_tokens"] == 6 and c["audio_s"] == 2.0
        assert set(c["stages_s"]) == {"frontend", "encoder", "adaptor", "llm_prefill", "llm_decode"}
        assert c["stages_s"]["encoder"]["n"] == 2 and c["peak_gib"] > 0
    d = rep["results"]["mlx"]["decode_vs_bare_mlx_lm"]
    assert d["bare_mlx_lm_tok_s"] > 0 and d["pipeline_tok_s"] > 0
    assert d["blocks"]["n"] == 2 and len(d["ratio_over_blocks"]["blocks"]) == 2  # --reps 2: two blocks
    assert rep["settings"]["tokens"] == 6 and rep["machine"]["mlx"]
