"""bench's MLX side: the pipeline at real size with random weights (no torch), speculation
against plain decoding, our decode against mlx-lm's own loop, our encoder against the peer's."""

from __future__ import annotations

import logging
import statistics
import time

import numpy as np

from ..config import AdaptorConfig, EncoderConfig, FrontendConfig, QueryConfig, SenseVoiceConfig
from ..prompt import PRESETS
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
    from mlx_lm.models.qwen3 import Model, ModelArgs

    from funasr_qwen4b.mlx_port.adaptor import AudioAdaptorQwen4B
    from funasr_qwen4b.mlx_port.encoder import SenseVoiceSmall
    from funasr_qwen4b.mlx_port.llm import Qwen3
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
    model = Model(ModelArgs.from_dict(QWEN3_4B))
    model.set_dtype(mx.bfloat16)
    if q_bits:
        nn.quantize(model, group_size=64, bits=q_bits)
    mx.eval(model.parameters())
    mem["llm"] = mx.get_active_memory() - base
    log.info("MLX synthetic weights: " + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in mem.items()))
    setup = LlmSetup.build(qwen_tokenizer(), PRESETS["raw"], bench_decode(tokens))
    return Pipeline(sv, None, QueryConfig(), ad, True, Qwen3(model), setup), mem


def speculation_vs_plain(pipe, samples: np.ndarray, tokens: int, reps: int, draft_rate: float | None) -> dict:
    """Decode with speculation against plain greedy decoding, on the same weights and input
    embeddings, alternating run by run; both time the tokens after the first. The draft is
    the clip's CTC transcript, or with `draft_rate` a simulated one: the LLM's own greedy ids,
    each kept with that probability (iid, seeded) and otherwise replaced by another id.
    `voided`: passes queued on a bet that failed (computed, thrown away)."""
    import mlx.core as mx

    from ..decoding import DecodeStats
    from ..wiring import Draft

    plain_cfg, spec_cfg = bench_decode(tokens, "off"), bench_decode(tokens, "ctc")
    out = pipe.run(samples, decode=plain_cfg)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(out.audio_embeds))
    plain_ids = out.decoded.ids
    if draft_rate is None:
        draft = pipe.setup.with_decode(spec_cfg).draft(out.ctc)
    else:
        rng = np.random.default_rng(0)
        keep = rng.random(len(plain_ids)) < draft_rate
        ids = [i if k else (i + 1) % pipe.llm.model.args.vocab_size for i, k in zip(plain_ids, keep)]
        draft = Draft(ids, pipe.setup.tokenizer)

    def timed_decode(cfg, **kw) -> tuple[float, list[int]]:
        gen = pipe.llm.tokens(embeds, cfg, tokens, **kw)
        first = next(gen)
        t = time.perf_counter()
        rest = list(gen)
        return len(rest) / (time.perf_counter() - t), [first, *rest]

    plain_tok_s, spec_tok_s, identical, stats = [], [], True, DecodeStats()
    for keep_it in repeat(reps, 1):
        p, ids_p = timed_decode(plain_cfg)
        stats = DecodeStats()
        q, ids_q = timed_decode(spec_cfg, draft=draft, stats=stats)
        identical &= ids_p == ids_q == plain_ids
        if keep_it:
            plain_tok_s.append(p)
            spec_tok_s.append(q)
    plain_med, spec_med = statistics.median(plain_tok_s), statistics.median(spec_tok_s)
    return {"draft": "simulated" if draft_rate is not None else "ctc", "draft_rate": draft_rate,
            "plain_tok_s": plain_med, "speculative_tok_s": spec_med, "decode_speedup": spec_med / plain_med,
            "ids_identical": identical, "forwards": stats.forwards, "drafted": stats.drafted,
            "accepted": stats.accepted, "voided": stats.voided,
            "tokens_per_pass": (tokens - 1) / max(stats.forwards, 1), "pairs": reps}


def mlx_decode_vs_bare(pipe, samples: np.ndarray, tokens: int, reps: int) -> dict:
    """Our pipeline's decode against mlx-lm's generate_step alone, on the same
    weights and input embeddings, alternating run by run so clocks and caches
    treat both alike. Both time the tokens after the first (prefill excluded)."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    ours, bare = [], []
    for timed in repeat(reps, 1):  # the first pair warms up
        out = pipe.run(samples)
        embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(out.audio_embeds))
        gen = generate_step(mx.array([], dtype=mx.int32), pipe.llm.model, max_tokens=tokens + 1,
                            input_embeddings=embeds[0])
        next(gen)
        t = time.perf_counter()
        n = sum(1 for _ in gen)
        if timed:
            bare.append(n / (time.perf_counter() - t))
            ours.append((len(out.decoded.ids) - 1) / out.decoded.decode_s)
    return {"pipeline_tok_s": statistics.median(ours), "bare_mlx_lm_tok_s": statistics.median(bare),
            "ratio": statistics.median(ours) / statistics.median(bare), "pairs": reps}


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
