"""A model, not a measurement: decode speedup over plain greedy that speculation's window rule
would give if a decode pass cost only its measured kernel time (no host time between passes),
with draft tokens each right with probability p, independently (the simulated draft of
`bench.speculation_vs_plain`). Pass costs come from a `quantized_rows.py` report (`default`
mode; sizes not measured are interpolated linearly).

    python benchmarks/window_model.py benchmarks/h200_quantized_rows.json

Rules: `growth` is `mlx_port.llm.Qwen3.speculate`'s (8 tokens first, then twice what the last
pass kept plus 2, at most the window; one token after a pass that kept none); `whole` offers the whole
window except one token after a pass that kept none; `constant` always offers the whole window."""

from __future__ import annotations

import argparse
import json
import random
import sys

RULES = {
    "growth": lambda last, w: min(w, 8) if last is None else 1 if last[0] == 0 < last[1] else min(w, 2 * last[0] + 2),
    "whole": lambda last, w: w if last is None else 1 if last[0] == 0 < last[1] else w,
    "constant": lambda last, w: w,
}


def cost_table(pass_ms: dict) -> dict[int, float]:
    known = sorted((int(k), v["default"] if isinstance(v, dict) else v) for k, v in pass_ms.items())
    table = {}
    for (a, ca), (b, cb) in zip(known, known[1:]):
        for n in range(a, b + 1):
            table[n] = ca + (cb - ca) * (n - a) / (b - a)
    return table


def speedup(rule, cost: dict[int, float], p: float, window: int, tokens: int = 64, trials: int = 4000) -> float:
    rng = random.Random(0)
    ms = made = 0.0
    for _ in range(trials):
        out, last = 1, None  # the first id comes from the prefill
        while out < tokens:
            k = max(0, min(rule(last, window), tokens - out - 1))
            ok = 0
            while ok < k and rng.random() < p:
                ok += 1
            ms += cost[k + 1]
            out += ok + 1
            last = (ok, k)
        made += out - 1
    return made / ms * cost[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="a quantized_rows.py JSON report")
    ap.add_argument("--rates", default="0.6,0.83,0.9", help="draft rates p, comma-separated")
    args = ap.parse_args(argv)
    cost = cost_table(json.load(open(args.report, encoding="utf-8"))["pass_ms"])
    window = max(cost) - 1
    print(f"modelled decode speedup over plain greedy (window {window}, pass costs of {args.report})")
    for p in (float(r) for r in args.rates.split(",")):
        print(f"p={p}: " + ", ".join(f"{name} {speedup(rule, cost, p, window):.2f}x" for name, rule in RULES.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
