"""What a quantized LLM pass over a few positions costs, and whether multiplying its rows one
matrix-vector product at a time (`mx.gather_qmm`, every row routed to the one weight) makes a
speculative verify pass cheaper. Real-size random weights (bench --synthetic full,
4-bit Qwen3-4B, 8-bit adaptor); nothing downloaded.

    python benchmarks/quantized_rows.py --out benchmarks/h200_quantized_rows.json

Modes, switched in one run pass by pass: `default` (MLX's quantized matmul), `few_rows` (2-16
rows per row), `few_rows_and_1` (1-16 rows: the single-row LM head too). Reports one pass's
milliseconds over 1-16 new positions on a 200-position cache; one 9-position pass's logits
against nine 1-position passes'; speculation against plain greedy with a simulated draft
(`bench.speculation_vs_plain`); batched decoding throughput. The pipeline does not route rows
(docs/performance.md has the measurement that decided it): the routing lives here only."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from funasr_qwen4b.app import bench  # noqa: E402
from funasr_qwen4b.app.bench_batch import throughput  # noqa: E402

log = logging.getLogger("quantized_rows")
MODES = {"default": (2, 0), "few_rows": (2, 16), "few_rows_and_1": (1, 16)}  # rows routed: lo..hi


def _per_row(module, x: mx.array) -> mx.array | None:
    rows = x.size // x.shape[-1]
    if not module.rows[0] <= rows <= module.rows[1]:
        return None
    biases = module.get("biases")
    y = mx.gather_qmm(x.reshape(rows, 1, x.shape[-1]), module["weight"][None], module["scales"][None],
                      None if biases is None else biases[None], rhs_indices=mx.zeros((rows,), mx.uint32),
                      transpose=True, group_size=module.group_size, bits=module.bits, mode=module.mode)
    return y.reshape(*x.shape[:-1], y.shape[-1])


class RowsLinear(nn.QuantizedLinear):
    rows = MODES["default"]

    def __call__(self, x):
        y = _per_row(self, x)
        if y is None:
            return super().__call__(x)
        return y + self["bias"] if "bias" in self else y


class RowsEmbedding(nn.QuantizedEmbedding):
    rows = MODES["default"]

    def as_linear(self, x):
        y = _per_row(self, x)
        return super().as_linear(x) if y is None else y


def route(model: nn.Module) -> None:
    for _, m in model.named_modules():
        if type(m) is nn.QuantizedLinear:
            m.__class__ = RowsLinear
        elif type(m) is nn.QuantizedEmbedding:
            m.__class__ = RowsEmbedding


def use(mode: str) -> None:
    RowsLinear.rows = RowsEmbedding.rows = MODES[mode]


def pass_costs(model, reps: int) -> dict:
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    mx.random.seed(1)
    cache = make_prompt_cache(model)
    mx.eval(model(mx.random.randint(0, 150000, (1, 200)).astype(mx.int32), cache))
    cost = {}
    for n in (1, 2, 3, 5, 9, 16):
        ids = mx.random.randint(0, 150000, (1, n)).astype(mx.int32)
        ts = {m: [] for m in MODES}
        for _ in range(reps + 5):  # modes alternate pass by pass; the first 5 rounds warm up
            for m in MODES:
                use(m)
                t = time.perf_counter()
                mx.eval(model(ids, cache))
                ts[m].append(time.perf_counter() - t)
                trim_prompt_cache(cache, n)
        cost[n] = {m: statistics.median(v[5:]) * 1e3 for m, v in ts.items()}
        log.info("one pass over %d positions, ms: %s", n, {m: round(v, 2) for m, v in cost[n].items()})
    # one 9-position pass against nine 1-position passes (default kernels), same cache
    ids = mx.random.randint(0, 150000, (1, 9)).astype(mx.int32)
    use("default")
    seq = mx.stack([model(ids[:, i: i + 1], cache)[0, 0] for i in range(9)])
    mx.eval(seq)
    trim_prompt_cache(cache, 9)
    same = {}
    for m in ("default", "few_rows"):
        use(m)
        logits = model(ids, cache)[0]
        mx.eval(logits)
        trim_prompt_cache(cache, 9)
        d = mx.abs(logits.astype(mx.float32) - seq.astype(mx.float32))
        same[m] = {"max_abs": d.max().item(), "rows_bitwise": int((d.max(axis=-1) == 0).sum().item()),
                   "argmax_same": int((mx.argmax(logits, -1) == mx.argmax(seq, -1)).sum().item()), "rows": 9}
    return {"pass_ms": cost, "nine_positions_vs_one_by_one": same}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the JSON report")
    ap.add_argument("--reps", type=int, default=20, help="timed passes per size and mode")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    pipe, _ = bench.mlx_synthetic(4, "float16", 64, 8)
    route(pipe.llm.model)
    res = {"device": bench.machine(), **pass_costs(pipe.llm.model, args.reps)}
    x = bench.clip(10)
    for m in MODES:
        use(m)
        st = bench.run_stages(pipe, x, 5, 2, mx.get_peak_memory, mx.reset_peak_memory)
        res[m] = r = {"stages": st}
        for rate in (bench.MEASURED_DRAFT_RATE, 0.9):
            sp = bench.speculation_vs_plain(pipe, x, 64, 7, rate)
            d = st["stages_s"]["llm_decode"]["median"]
            sp["rtf_with_speculation"] = (st["total_s"]["median"] - d + d / sp["decode_speedup"]) / st["audio_s"]
            r[f"spec_{rate}"] = sp
            log.info("%s, draft rate %s: decode %.2fx plain, ids identical %s", m, rate, sp["decode_speedup"],
                     sp["ids_identical"])
    for m in ("default", "few_rows"):
        use(m)
        res[f"batch_{m}"] = throughput(pipe, (1, 4, 8), 64, 3, 1)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res["pass_ms"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
