"""bench's measuring tools, shared by both backends: the clips (real speech tiled to length),
the one timing loop, the per-stage table of one pipeline, the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Iterator

import numpy as np

from ..audio import SAMPLE_RATE, load_audio, packaged_clip
from ..decoding import DecodeConfig


STAGES = ("frontend", "encoder", "adaptor", "llm_prefill", "llm_decode")


CLIPS = (5.0, 10.0, 30.0)


SPEECH = packaged_clip("zh_10s.wav")


# Qwen3-4B's config.json, the numbers that shape compute and memory.
QWEN3_4B = dict(model_type="qwen3", hidden_size=2560, num_hidden_layers=36, intermediate_size=9728,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                vocab_size=151936, max_position_embeddings=40960, rope_theta=1_000_000.0,
                tie_word_embeddings=True)


def clip(seconds: float) -> np.ndarray:
    """Real speech (a committed 10 s clip), tiled or cut to `seconds`."""
    x = load_audio(SPEECH)
    n = int(seconds * SAMPLE_RATE)
    return np.resize(x, n).astype(np.float32)


def bench_decode(tokens: int, speculate: str = "off") -> DecodeConfig:
    """Always `tokens` tokens (EOS ignored); the stage table times plain greedy decoding."""
    return DecodeConfig(loop_guard=False, ignore_eos=True, min_tokens=tokens, max_tokens=tokens,
                        speculate=speculate)


def repeat(reps: int, warmup: int) -> Iterator[bool]:
    """The one timing loop: `warmup` untimed runs, then `reps` timed ones (yields whether to record)."""
    for i in range(warmup + reps):
        yield i >= warmup


def run_stages(pipe, samples: np.ndarray, reps: int, warmup: int, peak: Callable[[], float] | None,
               reset_peak: Callable[[], None] | None) -> dict:
    per_stage = {s: [] for s in STAGES}
    totals, peaks, n_tok = [], [], 0
    for timed in repeat(reps, warmup):
        if reset_peak:
            reset_peak()
        t = time.perf_counter()
        out = pipe.run(samples)
        total = time.perf_counter() - t
        if not timed:
            continue
        for s in STAGES:
            per_stage[s].append(out.timings.get(s, float("nan")))
        totals.append(total)
        n_tok = len(out.decoded.ids) if out.decoded else 0
        if peak:
            peaks.append(peak())
    seconds = samples.size / SAMPLE_RATE
    stats = {s: stage_stats(v) for s, v in per_stage.items()}
    total = stage_stats(totals)
    prefill_len = None
    if getattr(pipe, "setup", None) is not None:
        prefill_len = len(pipe.setup.prompt.prefix_ids) + len(pipe.setup.prompt.suffix_ids) + \
            int(out.audio_embeds.shape[0])
    res = {"audio_s": seconds, "stages_s": stats, "total_s": total, "rtf": total["median"] / seconds,
           "generated_tokens": n_tok, "prefill_positions": prefill_len}
    if prefill_len and stats["llm_prefill"]["median"]:
        res["prefill_tok_s"] = prefill_len / stats["llm_prefill"]["median"]
    if n_tok > 1 and stats["llm_decode"]["median"]:
        res["decode_tok_s"] = (n_tok - 1) / stats["llm_decode"]["median"]
    if peaks:
        res["peak_gib"] = max(peaks) / 2**30
    if out.memory:  # where the peak was reached: peak so far after each stage (last run)
        res["peak_after_stage_gib"] = {k: v / 2**30 for k, v in out.memory.items()}
    return res


def stage_stats(v: list[float]) -> dict:
    v = [x for x in v if x == x]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def machine() -> dict:
    info = {"system": platform.system(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count()}
    try:
        import mlx.core as mx

        info["mlx"] = mx.__version__
        info["mlx_device"] = str(mx.default_device())
        if mx.default_device() == mx.gpu:
            info["mlx_gpu"] = mx.device_info().get("device_name", "") if hasattr(mx, "device_info") else ""
    except ImportError:
        pass
    return info
