"""`bench --calibrate`: what one LLM pass costs at 1..W new positions on this machine, for the
loaded LLM, stored per device and model in the user's cache (funasr_qwen4b.pass_costs), where
speculation finds it and sizes each pass by it. A pass is what speculation runs: k new positions
on a CONTEXT-position cache and the argmax of each, then trimmed away again; the sizes are timed
in interleaved blocks (bench_blocks), each size's cost the median over blocks."""

from __future__ import annotations

import contextlib
import logging
import statistics
import time

from .. import pass_costs
from ..config import Backend
from .backends import load_pipeline
from .bench_blocks import run_blocks
from .bench_nano import nano_synthetic
from .bench_stages import bench_decode, machine

log = logging.getLogger(__name__)

CONTEXT = 200  # cache positions before a timed pass: a 10 s clip's prompt and some text


def measure(llm, positions: int, blocks: int, warmup: int = 1) -> list[float]:
    """Seconds of one pass over 1..`positions` new positions (median over blocks)."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    from funasr_qwen4b.mlx_port.llm import greedy_ids

    model = llm.model
    cache = make_prompt_cache(model)
    mx.eval(model(mx.zeros((1, CONTEXT), dtype=mx.int32), cache))

    def runner(k: int):
        x = mx.ones((1, k), dtype=mx.uint32)

        def run() -> float:
            t = time.perf_counter()
            mx.eval(greedy_ids(model(x, cache)[0]))
            seconds = time.perf_counter() - t
            trim_prompt_cache(cache, k)
            return seconds
        return run

    rep = run_blocks({str(k): runner(k) for k in range(1, positions + 1)}, n=blocks, k=1, warmup=warmup)
    return [statistics.median(rep["speeds"][str(k)]) for k in range(1, positions + 1)]


def calibrate(llm, window: int, blocks: int, warmup: int = 1) -> dict:
    """Measure `llm`'s pass costs up to 1 + `window` positions and store them for this machine."""
    from funasr_qwen4b.mlx_port.llm import device_name

    seconds = measure(llm, window + 1, blocks, warmup)
    device, identity = device_name(), llm.identity()
    path = pass_costs.save(device, identity, seconds, context=CONTEXT, blocks=blocks)
    llm.pass_costs = seconds
    log.info("pass costs for %s stored in %s", device, path)
    return {"device": device, "model": identity, "seconds": seconds, "context": CONTEXT, "blocks": blocks,
            "cache_file": str(path)}


def run_calibrate(*, bundle=None, synthetic: str | None, blocks: int, warmup: int, window: int | None = None,
                  q_bits: int | None = None, dtype: str = "float16") -> dict:
    """The calibration of a bundle's LLM, or of `synthetic` "full" (Qwen3-4B's shapes, random
    weights) or "nano"; `window`: the most draft tokens a pass verifies (default: the decoding's)."""
    with nano_synthetic(dtype, q_bits) if synthetic == "nano" else contextlib.nullcontext(bundle) as built:
        if synthetic == "full":
            from .bench_mlx import synthetic_llm

            llm = synthetic_llm(q_bits)
        else:
            llm = load_pipeline(built, Backend.MLX, decode=bench_decode(2)).llm
            if llm is None:
                raise ValueError("--calibrate measures the LLM: the bundle has no llm component")
        window = window or bench_decode(2).draft_tokens
        return {"machine": machine(), "calibration": calibrate(llm, window, blocks, warmup)}


def to_markdown(rep: dict) -> str:
    c = rep["calibration"]
    lines = [f"# Pass costs: {c['device']}", "", f"- model: {c['model']}",
             f"- one pass over k new positions on a {c['context']}-position cache, median over {c['blocks']} "
             f"interleaved blocks; stored in {c['cache_file']}", "",
             "| positions | ms | over one position |", "| ---: | ---: | ---: |"]
    for k, s in enumerate(c["seconds"], 1):
        lines.append(f"| {k} | {s * 1e3:.2f} | {s / c['seconds'][0]:.2f} |")
    return "\n".join(lines) + "\n"
