"""`bench --batch-sizes`: what batching buys on this machine (MLX).

- Throughput: B clips of different lengths (about 10 s each) through the whole pipeline as
  one batch (Pipeline.run_batch), every row decoding exactly `tokens` tokens (EOS ignored):
  audio seconds and decoded tokens per second of wall time, against a batch of one block by
  block (the sizes in interleaved blocks: bench_blocks); the peak memory of each size and what
  one more stream adds.
- Why rows do not speculate: one LLM forward pass over B rows of k new positions each, on a
  200-position cache, for k = 1 (plain decoding) and k = 8 (a verify pass): where k = 8
  costs about k times k = 1, a batch has no idle compute left for speculation to use.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time

import numpy as np

from ..audio import SAMPLE_RATE
from ..config import Backend
from .backends import load_pipeline
from .bench_blocks import ratio, run_blocks
from .bench_mlx import mlx_synthetic
from .bench_nano import nano_synthetic
from .bench_stages import bench_decode, clip, machine, repeat

log = logging.getLogger(__name__)

CONTEXT = 200  # cache positions before a timed pass: a 10 s clip's prompt and some text
VERIFY = 8  # positions a verify pass feeds per row


def ragged_clips(n: int, seconds: float = 10.0) -> list[np.ndarray]:
    """`n` clips of real speech, 70 to 100 % of `seconds` long, so every batch is padded."""
    x = clip(seconds)
    return [x[: int(x.size * (1.0 - 0.3 * i / max(n - 1, 1)))] for i in range(n)]


def throughput(pipe, sizes: tuple[int, ...], tokens: int, reps: int, warmup: int) -> dict:
    """Each size's whole-batch throughput, the sizes timed in interleaved blocks (bench_blocks:
    `reps` blocks), each against batch 1 block by block."""
    import mlx.core as mx

    cfg, peaks, walls, decode = bench_decode(tokens), {b: 0 for b in sizes}, {b: [] for b in sizes}, {}

    def runner(b: int):
        clips = ragged_clips(b)

        def run() -> float:
            mx.reset_peak_memory()
            t = time.perf_counter()
            outs = pipe.run_batch(clips, decode=cfg)
            wall = time.perf_counter() - t
            assert all(len(o.decoded.ids) == tokens for o in outs)
            peaks[b] = max(peaks[b], mx.get_peak_memory())
            walls[b].append(wall)
            decode[b] = b * (tokens - 1) / max(o.decoded.decode_s for o in outs)
            return b * tokens / wall
        return run, sum(c.size for c in clips) / SAMPLE_RATE

    runs = {b: runner(b) for b in sizes}
    log.info("MLX: batches of %s in %d interleaved blocks ...", ", ".join(map(str, sizes)), reps)
    rep = run_blocks({str(b): run for b, (run, _) in runs.items()}, n=reps, warmup=warmup)
    rows = {}
    for b, (_, audio) in runs.items():
        speed = statistics.median(rep["speeds"][str(b)])
        wall = b * tokens / speed
        rows[b] = {"wall_s": wall, "audio_s": audio, "tokens": b * tokens, "audio_s_per_s": audio / wall,
                   "tokens_per_s": speed, "tokens_per_s_blocks": rep["speeds"][str(b)],
                   "decode_tokens_per_s": decode[b], "peak_bytes": peaks[b]}
    one = rows.get(1)
    for b, r in rows.items():
        if one is not None:
            r["speedup_vs_1"] = ratio(rep, str(b), "1")
            r["speedup_vs_best_1"] = r["tokens_per_s"] / max(rep["speeds"]["1"])
            if b > 1:
                r["bytes_per_extra_stream"] = (r["peak_bytes"] - one["peak_bytes"]) / (b - 1)
    return {"note": f"every row decodes {tokens} tokens (EOS ignored); clips 7-10 s; sizes timed in {reps} "
                    f"interleaved blocks of {rep['k']} runs each",
            "order": rep["order"], "sizes": {str(b): r for b, r in rows.items()}}


def verify_cost(llm, sizes: tuple[int, ...], reps: int) -> dict:
    """Seconds of one forward pass over B rows × k new positions on a CONTEXT-position cache."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    model, out = llm.model, {}
    for b in sizes:
        cache = make_prompt_cache(model)
        mx.eval(model(mx.zeros((b, CONTEXT), dtype=mx.int32), cache))
        times = {}
        for k in (1, VERIFY):
            ts = []
            for keep in repeat(reps, 2):
                t = time.perf_counter()
                mx.eval(model(mx.ones((b, k), dtype=mx.int32), cache))
                if keep:
                    ts.append(time.perf_counter() - t)
                trim_prompt_cache(cache, k)
            times[k] = statistics.median(ts)
        out[str(b)] = {"pass_s_k1": times[1], f"pass_s_k{VERIFY}": times[VERIFY],
                       "ratio": times[VERIFY] / times[1]}
    return {"note": f"one pass over B rows × k positions, {CONTEXT}-position cache; a ratio near {VERIFY} "
                    "means a verify pass costs what its tokens would cost decoded one by one", "batch": out}


def run_batching(*, bundle=None, synthetic: str | None, sizes: tuple[int, ...], tokens: int, reps: int,
                 warmup: int, q_bits: int | None = None, dtype: str = "float16",
                 adaptor_q_bits: int | None = None) -> dict:
    """The batching report for a bundle or `synthetic` "full" or "nano" (real-size random weights,
    as bench.run_bench builds them)."""
    import mlx.core as mx

    if synthetic == "nano" and adaptor_q_bits:
        raise ValueError("--adaptor-q-bits quantizes the qwen4b adaptor; Fun-ASR-Nano's is converted unquantized")
    with nano_synthetic(dtype, q_bits) if synthetic == "nano" else contextlib.nullcontext(bundle) as built:
        if synthetic == "full":
            pipe, _ = mlx_synthetic(q_bits, dtype, tokens, adaptor_q_bits)
        else:
            pipe = load_pipeline(built, Backend.MLX, decode=bench_decode(tokens))
        if pipe.llm is None:
            raise ValueError("--batch-sizes needs the LLM: the bundle has no llm component")
        weights = mx.get_active_memory()
        settings = {"batch_sizes": list(sizes), "tokens": tokens, "reps": reps, "warmup": warmup, "q_bits": q_bits,
                    "adaptor_q_bits": adaptor_q_bits,
                    "source": f"synthetic {synthetic}" if synthetic else str(built.root), "weights_bytes": weights}
        return {"machine": machine(), "settings": settings, "throughput": throughput(pipe, sizes, tokens, reps, warmup),
                "verify_cost": verify_cost(pipe.llm, sizes, reps)}


def to_markdown(rep: dict) -> str:
    m, st = rep["machine"], rep["settings"]
    lines = [f"# Batching: {st['source']}", "",
             f"- machine: {m.get('system')} {m.get('machine')}, MLX {m.get('mlx')} on "
             f"{m.get('mlx_gpu') or m.get('mlx_device')}; {st['tokens']} tokens a row, {st['reps']} interleaved blocks "
             f"after {st['warmup']} warm-up; weights {st['weights_bytes'] / 2**30:.2f} GiB", "",
             "| batch | wall s | audio s / s | tokens / s | vs batch 1, median over blocks (min-max) | peak GiB "
             + "| MiB per extra stream |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for b, r in rep["throughput"]["sizes"].items():
        extra, up = r.get("bytes_per_extra_stream"), r.get("speedup_vs_1")
        vs_1 = f"{up['median']:.2f}x ({up['min']:.2f}-{up['max']:.2f})" if up else "-"
        lines.append(f"| {b} | {r['wall_s']:.3f} | {r['audio_s_per_s']:.1f} | {r['tokens_per_s']:.0f} | {vs_1} | "
                     f"{r['peak_bytes'] / 2**30:.2f} | {'' if extra is None else f'{extra / 2**20:.0f}'} |")
    lines += ["", f"One LLM pass, B rows × k positions ({rep['verify_cost']['note']}):", "",
              f"| batch | k = 1 ms | k = {VERIFY} ms | ratio |", "| ---: | ---: | ---: | ---: |"]
    for b, r in rep["verify_cost"]["batch"].items():
        lines.append(f"| {b} | {r['pass_s_k1'] * 1e3:.2f} | {r[f'pass_s_k{VERIFY}'] * 1e3:.2f} | {r['ratio']:.2f} |")
    return "\n".join(lines)
