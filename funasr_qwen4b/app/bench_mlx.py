"""bench's MLX side: the pipeline at real size with random weights (no torch), speculation
against plain decoding, our decode against mlx-lm's own loop, our encoder against the peer's."""

from __future__ import annotations

import logging
import statistics
import time

import numpy as np

from ..audio import SAMPLE_RATE
from ..config import AdaptorConfig, EncoderConfig, FrontendConfig, QueryConfig, SenseVoiceConfig
from ..prompt import PRESETS
from ..wiring import Draft
from .bench_blocks import disagreement, ratio, run_blocks, speedup, tokens_per_s
from .bench_stages import QWEN3_4B, bench_decode, repeat

log = logging.getLogger(__name__)


# Memory bandwidth (GB/s) for the decode projection.
APPLE_BANDWIDTH = {"M1 Pro": 200, "M3 Max": 400, "M4 Max": 546}


# Share of the LLM's ids (after the first, stop ids included) that the CTC draft supplied, ending
# guesses included, on the demonstration model's held-out sets, MLX float32
# (benchmarks/speculation_heldout.py; the figure and its command are in docs/decoding.md): what a
# simulated draft keeps of the LLM's own ids. Its misses fall independently, a real draft's
# cluster (punctuation, the ending), so at this rate a simulated draft takes more passes than a
# real one.
MEASURED_DRAFT_RATE = 0.86


def mlx_synthetic(q_bits: int | None, dtype: str, tokens: int, adaptor_q_bits: int | None = None):
    """The MLX pipeline at real size with random weights (nothing read from disk
    but the tokenizer): SenseVoiceSmall 70 layers, the 4-layer adaptor, Qwen3-4B."""
    import mlx.core as mx
    import mlx.nn as nn

    from funasr_qwen4b.mlx_port.adaptor import AudioAdaptorQwen4B
    from funasr_qwen4b.mlx_port.encoder import SenseVoiceSmall
    from funasr_qwen4b.mlx_port.pipeline import Pipeline
    from funasr_qwen4b.testing import qwen_tokenizer

    from ..wiring import LlmSetup

    mem = {}
    mx.random.seed(0)
    base = mx.get_active_memory()
    sv = SenseVoiceSmall(SenseVoiceConfig(vocab_size=25055, frontend=FrontendConfig(), encoder=EncoderConfig()))
    sv.set_dtype(getattr(mx, dtype))
    sv.frontend.cmvn.shift, sv.frontend.cmvn.scale = mx.full((560,), -11.0), mx.full((560,), 0.15)
    mx.eval(sv.parameters())
    mem["sensevoice"] = mx.get_active_memory() - base
    base = mx.get_active_memory()
    ad = AudioAdaptorQwen4B(AdaptorConfig())
    ad.set_dtype(getattr(mx, dtype))
    if adaptor_q_bits:  # as `convert --adaptor-q-bits` stores it: linear layers only
        nn.quantize(ad, group_size=64, bits=adaptor_q_bits)
    mx.eval(ad.parameters())
    mem["adaptor"] = mx.get_active_memory() - base
    base = mx.get_active_memory()
    llm = synthetic_llm(q_bits)
    mem["llm"] = mx.get_active_memory() - base
    log.info("MLX synthetic weights: " + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in mem.items()))
    setup = LlmSetup.build(qwen_tokenizer(), PRESETS["raw"], bench_decode(tokens))
    return Pipeline(sv, None, QueryConfig(), ad, True, llm, setup), mem


def synthetic_llm(q_bits: int | None):
    """Qwen3-4B's shapes with random weights, bfloat16 (`q_bits`: quantized as mlx-lm does)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models.qwen3 import Model, ModelArgs

    from funasr_qwen4b.mlx_port.llm import Qwen3

    model = Model(ModelArgs.from_dict(QWEN3_4B))
    model.set_dtype(mx.bfloat16)
    if q_bits:
        nn.quantize(model, group_size=64, bits=q_bits)
    mx.eval(model.parameters())
    return Qwen3(model)


class SimulatedDraft(Draft):
    """A draft simulated from the LLM's own greedy ids, each kept with probability `rate` (iid,
    seeded) and otherwise replaced by another id, re-aligned as a real CTC draft is: where the
    LLM's token parts from plain greedy's (a near-tie a pass over several positions resolves
    otherwise), the draft goes on from plain greedy's ids continued from the token the LLM chose
    (`continue_from(prefix)`: the greedy ids given exactly `prefix`, `prefix` first), not from ids
    of a text the LLM no longer writes. Draft positions are output positions. `spent`: seconds of
    re-deriving (the draft's own work, not speculation's); `realigned`: how often."""

    def __init__(self, plain_ids: list[int], rate: float, vocab: int, continue_from, seed: int = 0):
        self.keep = np.random.default_rng(seed).random(len(plain_ids)) < rate
        self.vocab, self.continue_from = vocab, continue_from
        self.base, self.known, self.own = list(plain_ids), {}, {}
        self.spent, self.realigned = 0.0, 0
        super().__init__(self.noisy(self.base), None)

    def noisy(self, base: list[int]) -> list[int]:
        return [i if k else (i + 1) % self.vocab for i, k in zip(base, self.keep)]

    def after(self, own: int, at: int, reach: int = 3) -> int:
        if at == 0:  # a decode starts
            self.own = {}
        self.own[at] = own
        if at >= len(self.ids):
            return len(self.ids)
        # what the LLM wrote so far: its own tokens where told, the draft's it accepted elsewhere
        prefix = [self.own.get(i, self.ids[i]) for i in range(at + 1)]
        if prefix != self.base[: at + 1]:
            key = tuple(prefix)
            if key not in self.known:
                t = time.perf_counter()
                self.known[key] = self.continue_from(prefix)[: len(self.ids)]
                self.spent += time.perf_counter() - t
            self.realigned += 1
            self.base = self.known[key]
            self.ids[at + 1:] = self.noisy(self.base)[at + 1:]
        return at + 1


def greedy_continuation(llm, embeds, tokens: int):
    """prefix -> `prefix` and plain greedy's ids after it, `tokens` in all, given `embeds`: the
    prefix fed one position a pass as plain decoding feeds its own ids, then plain decoding's
    passes. Where a pass over several positions computes other values than one-position passes
    (quantized kernels that change with the row count), this is what plain decoding would write
    after that prefix, not a guess from a pass shaped otherwise."""
    import mlx.core as mx

    from funasr_qwen4b.mlx_port.llm import greedy

    def continue_from(prefix: list[int]) -> list[int]:
        mx.synchronize()  # a pass in flight is speculation's time, not the draft's
        cache, logits = llm.prefill(embeds)
        out = list(prefix)
        for k in range(tokens - 1):  # the pass after the last id would decide nothing
            logits = llm.model(mx.array([[out[k]]], dtype=mx.uint32), cache)[0]
            if k + 1 == len(out):
                out.append(greedy(logits)[-1])
        return out
    return continue_from


def speculation_vs_plain(pipe, samples: np.ndarray, tokens: int, blocks: int, draft_rate: float | None,
                         warmup: int = 1, table_plain_tok_s: float | None = None) -> dict:
    """Decode with speculation against plain greedy decoding, on the same weights and input
    embeddings, in interleaved blocks (bench_blocks); both time the tokens after the first. The
    speed-up divides by the best plain figure of the run (`table_plain_tok_s`, the stage table's,
    included); a stage table whose plain speed the blocks' contradict beyond their spread is
    said. The draft is the clip's CTC transcript, or with `draft_rate` a SimulatedDraft.
    `voided`: passes queued on a bet that failed (computed, thrown away); `verify_vs_single`: at
    how many positions one pass over a whole window and one-position passes disagree."""
    import mlx.core as mx

    from ..decoding import DecodeStats

    plain_cfg, spec_cfg = bench_decode(tokens, "off"), bench_decode(tokens, "ctc")
    out = pipe.run(samples, decode=plain_cfg)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(out.audio_embeds))
    plain_ids = out.decoded.ids
    if draft_rate is None:
        draft = pipe.setup.with_decode(spec_cfg).draft(out.ctc)
    else:
        draft = SimulatedDraft(plain_ids, draft_rate, pipe.llm.model.args.vocab_size,
                               greedy_continuation(pipe.llm, embeds, tokens))
    seen = {"plain": [], "speculative": []}
    stats = DecodeStats()

    def plain() -> float:
        speed, ids = tokens_per_s(pipe.llm.tokens(embeds, plain_cfg, tokens))
        seen["plain"].append(ids)
        return speed

    def speculative() -> float:
        nonlocal stats
        stats = DecodeStats()
        speed, ids = tokens_per_s(pipe.llm.tokens(embeds, spec_cfg, tokens, draft=draft, stats=stats),
                                  excluded=lambda: getattr(draft, "spent", 0.0))
        seen["speculative"].append(ids)
        return speed

    pipe.llm.costs(spec_cfg.draft_tokens + 1)  # where none are cached, measured now: in no timed run
    rep = run_blocks({"speculative": speculative, "plain": plain}, n=blocks, warmup=warmup)
    up = speedup(rep, "speculative", "plain", [table_plain_tok_s] if table_plain_tok_s else [])
    spec_ids = seen["speculative"][-1]
    parted = next((i for i, (a, b) in enumerate(zip(spec_ids, plain_ids)) if a != b), None)
    r = {"draft": "simulated" if draft_rate is not None else "ctc", "draft_rate": draft_rate,
         "plain_tok_s": up["speeds"]["plain"]["median"], "speculative_tok_s": up["speeds"]["speculative"]["median"],
         "decode_speedup": up["over_best"], **up, "blocks": rep,
         "ids_identical": all(ids == plain_ids for ids in seen["plain"] + seen["speculative"]),
         "first_difference": parted, "forwards": stats.forwards, "drafted": stats.drafted,
         "accepted": stats.accepted, "voided": stats.voided, "tokens_per_pass": (tokens - 1) / max(stats.forwards, 1),
         "verify_vs_single": verify_vs_single(pipe.llm, embeds, plain_ids, spec_cfg.draft_tokens + 1)}
    if draft_rate is not None:
        r["draft_realigned"], r["draft_upkeep_s"] = draft.realigned, draft.spent
    if table_plain_tok_s and (warn := disagreement("the stage table's plain decode", table_plain_tok_s, rep, "plain")):
        log.warning(warn)
        r["warning"] = warn
    return r


def verify_vs_single(llm, embeds, plain_ids: list[int], positions: int) -> dict:
    """Plain greedy's ids (one-position passes) fed back `positions` at a time, as a verify pass
    feeds them: at how many positions the pass's argmax differs from the id plain greedy chose
    there (near-ties that several rows resolve otherwise)."""
    import mlx.core as mx

    from funasr_qwen4b.mlx_port.llm import greedy

    cache, logits = llm.prefill(embeds)  # as speculation prefills
    first = greedy(logits)[-1]
    differ = int(first != plain_ids[0])
    for start in range(0, len(plain_ids) - 1, positions):
        fed = plain_ids[start: start + positions]
        want = plain_ids[start + 1: start + 1 + len(fed)]
        got = greedy(llm.model(mx.array(fed, dtype=mx.uint32)[None], cache)[0])[: len(want)]
        differ += sum(a != b for a, b in zip(got, want))
    return {"positions": len(plain_ids), "pass_positions": positions, "differ": differ,
            "share": differ / len(plain_ids)}


def mlx_decode_vs_bare(pipe, samples: np.ndarray, tokens: int, blocks: int, warmup: int = 1) -> dict:
    """Our pipeline's decode (its token source under the shared rules) against mlx-lm's
    generate_step alone, on the same weights and input embeddings, in interleaved blocks
    (bench_blocks). Both time the tokens after the first (prefill excluded)."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    cfg = bench_decode(tokens)
    out = pipe.run(samples, decode=cfg)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(out.audio_embeds))
    setup, seconds = pipe.setup.with_decode(cfg), samples.size / SAMPLE_RATE

    def pipeline() -> float:
        d = setup.decoder(seconds).run(pipe.llm.tokens(embeds, cfg, cfg.token_cap(seconds) + 1))
        return (len(d.ids) - 1) / d.decode_s

    def bare() -> float:
        return tokens_per_s(generate_step(mx.array([], dtype=mx.int32), pipe.llm.model, max_tokens=tokens,
                                          input_embeddings=embeds[0]))[0]

    rep = run_blocks({"pipeline": pipeline, "bare": bare}, n=blocks, warmup=warmup)
    r = ratio(rep, "pipeline", "bare")
    return {"pipeline_tok_s": statistics.median(rep["speeds"]["pipeline"]),
            "bare_mlx_lm_tok_s": statistics.median(rep["speeds"]["bare"]), "ratio": r["median"],
            "ratio_over_blocks": r, "blocks": rep}


def projection(llm_bytes: int) -> dict:
    """Decode is memory-bound on Apple Silicon: each token reads the LLM weights once."""
    return {name: {"bandwidth_gb_s": bw, "ceiling_tok_s": round(bw * 1e9 / llm_bytes, 1)}
            for name, bw in APPLE_BANDWIDTH.items()}


def encoder_vs_peer(seconds: float, dtypes: tuple[str, ...], reps: int, warmup: int) -> dict:
    """Our SenseVoiceSmall encoder (query rows + 70 SAN-M layers) against the peer funasr-mlx's,
    both real size with random weights, on the same features, alternating run by run: medians.
    Also ours under mx.compile (one graph per input length: a bound, not the default path)."""
    import mlx.core as mx

    try:
        from funasr_mlx.models.sensevoice import SenseVoiceSmall as PeerSenseVoice
    except ImportError as e:
        raise ValueError(f"--peer needs the funasr-mlx package ({e}); pip install funasr-mlx") from None
    from funasr_qwen4b.mlx_port.encoder import SenseVoiceSmall

    frames = -(-int(seconds * 100 - 1.5) // 6)  # LFR frames of `seconds` of audio
    out = {"seconds": seconds, "frames": frames}
    for dtype in dtypes:
        mx.random.seed(0)
        ours = SenseVoiceSmall(SenseVoiceConfig(vocab_size=25055))
        ours.set_dtype(getattr(mx, dtype))
        peer = PeerSenseVoice(vocab_size=25055)
        peer.set_dtype(getattr(mx, dtype))
        mx.eval(ours.parameters(), peer.parameters())
        feats = mx.random.normal((1, frames, 560)).astype(getattr(mx, dtype))
        lengths = mx.array([frames])
        query = QueryConfig()
        compiled = mx.compile(lambda x: ours.encode(x, lengths, query)[0])
        runs = {"ours": lambda: ours.encode(feats, lengths, query)[0], "ours_compiled": lambda: compiled(feats),
                "peer": lambda: peer.encode(feats, lengths, language="zh")[0]}
        times = {k: [] for k in runs}
        for keep in repeat(reps, warmup):
            for name, fn in runs.items():
                t = time.perf_counter()
                mx.eval(fn())
                if keep:
                    times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        out[dtype] = {"median_ms": med, "ours_speed_over_peer": med["peer"] / med["ours"],
                      "compiled_speed_over_peer": med["peer"] / med["ours_compiled"]}
        log.info("encoder %s: ours %.2f ms, compiled %.2f ms, peer %.2f ms", dtype, med["ours"],
                 med["ours_compiled"], med["peer"])
    return out
