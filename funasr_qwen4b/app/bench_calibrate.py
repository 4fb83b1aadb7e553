"""`bench --calibrate`: what one LLM pass costs at 1..W new positions on this machine, for the
loaded LLM, stored per device and model in the user's cache (funasr_qwen4b.pass_costs), where
speculation finds it and sizes each pass by it (`Qwen3.measure_pass_costs`: a pass as speculation
runs it, the sizes timed in interleaved blocks, each size's cost the median over blocks; the first
speculation that finds none measures them the same way, with fewer blocks)."""

from __future__ import annotations

import contextlib
import logging

from .. import pass_costs
from ..config import Backend
from .backends import load_pipeline
from .bench_nano import nano_synthetic
from .bench_stages import bench_decode, machine

log = logging.getLogger(__name__)


def calibrate(llm, window: int, blocks: int, warmup: int = 1) -> dict:
    """Measure `llm`'s pass costs up to 1 + `window` positions and store them for this machine."""
    from funasr_qwen4b.mlx_port.llm import device_name

    seconds = llm.measure_pass_costs(window + 1, blocks, warmup)
    device, identity = device_name(), llm.identity()
    path = pass_costs.save(device, identity, seconds, context=llm.calibration_context, blocks=blocks)
    llm.pass_costs = seconds
    log.info("pass costs for %s stored in %s", device, path)
    return {"device": device, "model": identity, "seconds": seconds, "context": llm.calibration_context,
            "blocks": blocks, "cache_file": str(path)}


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
