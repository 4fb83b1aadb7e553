"""Speed figures that carry a ratio, on one machine: each step writes one JSON report into OUT.
Real-size random weights (`bench --synthetic full`); nothing downloaded. `--quick` shrinks every
model to a few layers and dims (a CPU check of the steps' logic, not a measurement).

    python benchmarks/issue25.py STEP --out OUT [--quick] [--blocks N]

Steps (one process each, so one step's weights never count in another's peak memory):
- `calibrate`: one LLM pass's cost at 1..17 positions, bf16 and 4-bit, stored in the user's cache
  (where speculation finds it) and reported (`calibrate.json`).
- `bench-bf16`, `bench-q4`: the stage table (10 s; 4-bit: 10 and 30 s, 8-bit adaptor), pipeline
  against bare mlx-lm, speculation against the best plain of the run at p = 0.86 in interleaved
  blocks, each pass sized by the calibrated costs; then the same speculation sized by the rule
  used without costs (`speculation_rule`) (`bench_bf16.json`, `bench_q4.json`).
- `batch-q4`: batch 16 against batch 1 at 4 bits in interleaved blocks (`batch_q4.json`).
- `server`: the 4-bit server one request at a time against the pipeline alone, 16 clip lengths
  each visited twice, each run in a fresh process, the server also on a warm compiled-kernel cache
  and with cuDNN's attention off (`server_q4.json`): whether the server's extra time per request
  is the server's, a kernel compiled at run time, or a shape's first run.
- `drift`: plain decoding before speculative passes, after them, and after `mx.clear_cache()`,
  each in a fresh process under MLX's default CUDA graph settings and under each setting of
  DRIFT_ENVS (`drift.json`): whether plain slows after speculation, and which cache it is.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from funasr_qwen4b.atomic import write_json_atomic
from funasr_qwen4b.config import Backend

log = logging.getLogger("issue25")
RATE = 0.86
# MLX's CUDA graph settings, read once per process: a larger cache of instantiated graphs (an
# LRU keyed by each graph's topology), graphs off, and fewer kernels per graph.
DRIFT_ENVS = {"default": {}, "graph_cache_4000": {"MLX_CUDA_GRAPH_CACHE_SIZE": "4000"},
              "no_graphs": {"MLX_USE_CUDA_GRAPHS": "0"}, "ops_per_buffer_20": {"MLX_MAX_OPS_PER_BUFFER": "20"}}


def shrink() -> None:
    """Every synthetic model at a few dims and layers (--quick)."""
    from funasr_qwen4b.app import bench_mlx
    from funasr_qwen4b.config import AdaptorConfig, EncoderConfig

    bench_mlx.EncoderConfig = lambda: EncoderConfig(output_size=64, attention_heads=4, linear_units=128,
                                                    num_blocks=2, tp_blocks=1)
    # widths of 64: what a quantized layer's group needs
    bench_mlx.AdaptorConfig = lambda: AdaptorConfig(encoder_dim=64, d_model=64, num_layers=1, dim_feedforward=128,
                                                    llm_dim=64, nhead=4)
    bench_mlx.QWEN3_4B = {**bench_mlx.QWEN3_4B, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}


def calibrate(args) -> dict:
    from funasr_qwen4b.app.bench_calibrate import calibrate as measure
    from funasr_qwen4b.app.bench_mlx import synthetic_llm
    from funasr_qwen4b.app.bench_stages import bench_decode, machine

    out = {"machine": machine()}
    for name, q in (("bf16", None), ("q4", 4)):
        out[name] = measure(synthetic_llm(q), bench_decode(2).draft_tokens, args.blocks)
        gc.collect()
    return out


def bench(args, q_bits: int | None) -> dict:
    import mlx.core as mx

    from funasr_qwen4b import pass_costs
    from funasr_qwen4b.app import bench
    from funasr_qwen4b.app.bench_mlx import mlx_synthetic, speculation_vs_plain
    from funasr_qwen4b.mlx_port.llm import device_name

    adaptor_q = 8 if q_bits else None
    clips = (10.0, 30.0) if q_bits else (10.0,)
    rep = bench.run_bench(synthetic="full", backends=(Backend.MLX,), clips=clips, reps=args.blocks, warmup=2,
                          tokens=args.tokens, q_bits=q_bits, adaptor_q_bits=adaptor_q, draft_rate=RATE)
    print(bench.to_markdown(rep), flush=True)
    gc.collect()
    mx.clear_cache()
    pipe, _ = mlx_synthetic(q_bits, "float16", args.tokens, adaptor_q)
    pipe.llm.pass_costs = ()  # the rule used where no costs are measured
    rep["speculation_rule"] = speculation_vs_plain(pipe, bench.clip(10.0), args.tokens, args.blocks, RATE, 2)
    rep["calibrated_pass_costs"] = pass_costs.load(device_name(), pipe.llm.identity())  # None: not calibrated
    return rep


def batch(args) -> dict:
    from funasr_qwen4b.app import bench_batch

    rep = bench_batch.run_batching(synthetic="full", sizes=(1, 16), tokens=args.tokens, reps=args.blocks, warmup=1,
                                   q_bits=4, adaptor_q_bits=8)
    print(bench_batch.to_markdown(rep), flush=True)
    return rep


def drift_one(args) -> dict:
    """Plain decoding's speed in phases of one process: fresh, after speculative passes, after
    `mx.clear_cache()` (the allocator's cache of freed buffers)."""
    import mlx.core as mx

    from funasr_qwen4b.app.bench_blocks import spread, tokens_per_s
    from funasr_qwen4b.app.bench_mlx import SimulatedDraft, greedy_continuation, mlx_synthetic
    from funasr_qwen4b.app.bench_stages import bench_decode, clip

    pipe, _ = mlx_synthetic(4, "float16", args.tokens, 8)
    plain_cfg, spec_cfg = bench_decode(args.tokens, "off"), bench_decode(args.tokens, "ctc")
    out = pipe.run(clip(10.0), decode=plain_cfg)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(out.audio_embeds))
    draft = SimulatedDraft(out.decoded.ids, RATE, pipe.llm.model.args.vocab_size,
                           greedy_continuation(pipe.llm, embeds, args.tokens))
    runs = 3 * args.blocks

    def plain() -> list[float]:
        return [tokens_per_s(pipe.llm.tokens(embeds, plain_cfg, args.tokens))[0] for _ in range(runs)]

    def spec() -> list[float]:
        return [tokens_per_s(pipe.llm.tokens(embeds, spec_cfg, args.tokens, draft=draft), excluded=lambda: draft.spent)[0]
                for _ in range(runs)]

    plain()  # warm-up
    phases = {"plain_fresh": plain(), "speculative": spec(), "plain_after_speculation": plain()}
    mx.clear_cache()
    phases["plain_after_clear_cache"] = plain()
    phases["speculative_again"] = spec()
    phases["plain_after_speculation_again"] = plain()
    return {"env": {k: os.environ.get(k) for k in ("MLX_CUDA_GRAPH_CACHE_SIZE", "MLX_USE_CUDA_GRAPHS",
                                                   "MLX_MAX_OPS_PER_BUFFER")}, "draft_realigned": draft.realigned,
            "cache_memory_bytes": mx.get_cache_memory(), "runs_per_phase": runs,
            "phases": {k: {**spread(v), "runs": v} for k, v in phases.items()}}


def fresh_process(args, step: str, name: str, env: dict, *extra: str) -> dict:
    """`step` run by this script in a fresh process under `env`: its report, or its exit status."""
    part = Path(args.out) / f".{step}_{name}.json"
    part.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, step, "--out", str(part), "--blocks", str(args.blocks), *extra]
    done = subprocess.run([*cmd, *(["--quick"] if args.quick else [])], env={**os.environ, **env}, check=False)
    if done.returncode:
        return {"error": f"exit {done.returncode}"}
    rep = json.loads(part.read_text())
    part.unlink()
    return rep


def drift(args) -> dict:
    from funasr_qwen4b.app.bench_stages import machine

    res = {"machine": machine()}
    for name, env in DRIFT_ENVS.items():
        res[name] = fresh_process(args, "drift-one", name, env)
        if "error" in res[name]:
            continue
        ph = res[name]["phases"]
        log.info("%s: plain %.1f fresh, %.1f after speculation, %.1f after clear_cache (tok/s, medians)", name,
                 ph["plain_fresh"]["median"], ph["plain_after_speculation"]["median"],
                 ph["plain_after_clear_cache"]["median"])
    return res


def visits(args) -> dict:
    """One process (`visits-one`): the 4-bit pipeline, one token a pass, decodes 16 clips of 16
    lengths one at a time, each clip twice (first visits, then second), timed per clip; through
    the server (HTTP, one request at a time) or by the pipeline alone. A first visit runs every
    shape of that length for the first time in the process; a second does not."""
    import time

    from funasr_qwen4b.app.bench_batch import ragged_clips

    sys.path.insert(0, str(Path(__file__).parent))
    import server_batching as sb

    pipe = sb.synthetic(4, args.tokens)
    clips = ragged_clips(16)
    if args.mode == "server":
        url, _, stop = sb.serve(pipe, 16)
        bodies = [sb.wav(x) for x in clips]

        def one(k: int) -> None:
            sb.ask(url, bodies[k])
    else:
        stop = None

        def one(k: int) -> None:
            pipe.run(clips[k])
    one(0)  # warm-up: the first clip's shapes
    seconds = {"first": [], "second": []}
    for visit in seconds:
        for k in range(1, len(clips)):
            t = time.perf_counter()
            one(k)
            seconds[visit].append(time.perf_counter() - t)
    if stop is not None:
        stop()
    return {"mode": args.mode, "clip_samples": [x.size for x in clips[1:]], "seconds": seconds}


# The server step's runs, each a fresh process: the pipeline alone; the server; the server again
# on the compiled-kernel cache the first run left (MLX keeps its CUDA kernels compiled at run time
# on disk: a second process compiles none); the server with cuDNN's attention off (a graph built
# per new query length otherwise).
SERVER_RUNS = (("pipeline", "pipeline", {}), ("server", "server", {}), ("server_again", "server", {}),
               ("server_no_cudnn_sdpa", "server", {"MLX_CUDA_USE_CUDNN_SDPA": "0"}))


def server(args) -> dict:
    """The server one request at a time against the pipeline alone (SERVER_RUNS), first and second
    visits of each clip length, every request timed on its own: where the server's extra time per
    request goes (one slow request: a kernel compiled at run time; every first visit slower: a
    per-shape cost; every request slower: the server's own)."""
    import statistics

    from funasr_qwen4b.app.bench_stages import machine

    res = {"machine": machine()}
    for name, mode, env in SERVER_RUNS:
        res[name] = {**fresh_process(args, "visits-one", name, env, "--mode", mode), "env": env}
        if "error" in res[name]:
            continue
        sec = res[name]["seconds"]
        res[name]["median_s"] = {v: statistics.median(t) for v, t in sec.items()}
        res[name]["max_s"] = {v: max(t) for v, t in sec.items()}
        log.info("%s: %.3f s a clip on a first visit of its length (slowest %.3f), %.3f s on a second", name,
                 res[name]["median_s"]["first"], res[name]["max_s"]["first"], res[name]["median_s"]["second"])
    if "median_s" in res["pipeline"]:
        res["over_pipeline"] = {name: {v: res[name]["median_s"][v] / res["pipeline"]["median_s"][v]
                                       for v in ("first", "second")}
                                for name, _, _ in SERVER_RUNS[1:] if "median_s" in res[name]}
    return res


STEPS = {"calibrate": (calibrate, "calibrate.json"), "bench-bf16": (lambda a: bench(a, None), "bench_bf16.json"),
         "bench-q4": (lambda a: bench(a, 4), "bench_q4.json"), "batch-q4": (batch, "batch_q4.json"),
         "drift": (drift, "drift.json"), "drift-one": (drift_one, None), "server": (server, "server_q4.json"),
         "visits-one": (visits, None)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=list(STEPS))
    ap.add_argument("--out", required=True, help="the folder for the reports (drift-one: the file)")
    ap.add_argument("--blocks", type=int, default=5, help="interleaved blocks per ratio (default 5)")
    ap.add_argument("--quick", action="store_true", help="tiny models: a check of the logic, not a measurement")
    ap.add_argument("--mode", choices=["server", "pipeline"], default="pipeline", help="visits-one: what decodes")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    args.tokens = 8 if args.quick else 64
    if args.quick:
        shrink()
    fn, name = STEPS[args.step]
    rep = fn(args)
    path = Path(args.out) if name is None else Path(args.out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"step": args.step, "quick": args.quick, "blocks": args.blocks, **rep})
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
