"""Ratios that survive a drifting clock: every A-against-B speed in `bench` is timed in
interleaved blocks. A GPU's decode loop is bound by kernel launches and its speed drifts by tens
of percent within one process, so one alternating pair cannot carry a ratio: each block runs every
contender `k` times in a row (the order reversed on every other block, so neither always goes
first), `n` blocks in all; a ratio is the median over blocks of the contenders' block medians,
with its spread, and a speed-up is also divided by the best figure of the divisor in the run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator

RUNS_PER_BLOCK = 2  # k: runs of each contender in a row, in one block


def schedule(names: list[str], n: int, k: int) -> list[list[str]]:
    """The order of runs: block i runs each name k times in a row, in the given order on even
    blocks and reversed on odd ones."""
    return [[name for name in (names if i % 2 == 0 else names[::-1]) for _ in range(k)] for i in range(n)]


def run_blocks(runs: dict[str, Callable[[], float]], *, n: int, k: int = RUNS_PER_BLOCK, warmup: int = 1) -> dict:
    """Each runner returns one speed (units/s) per call. `warmup` untimed calls of each first, then
    `schedule`'s blocks. {"n", "k", "order", "speeds": name -> its median per block}."""
    names = list(runs)
    for name in names:
        for _ in range(warmup):
            runs[name]()
    order = schedule(names, n, k)
    per_block = {name: [[] for _ in range(n)] for name in names}
    for i, block in enumerate(order):
        for name in block:
            per_block[name][i].append(runs[name]())
    return {"n": n, "k": k, "order": [block[0] for block in order],
            "speeds": {name: [statistics.median(b) for b in blocks] for name, blocks in per_block.items()}}


def spread(values: list[float]) -> dict:
    """Median, min, max and the interquartile range of `values`."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "iqr": [q[0], q[2]]}


def ratio(blocks: dict, a: str, b: str) -> dict:
    """A's speed over B's, block by block: its spread over blocks, and each block's ratio."""
    per = [x / y for x, y in zip(blocks["speeds"][a], blocks["speeds"][b], strict=True)]
    return {**spread(per), "blocks": per}


def speedup(blocks: dict, a: str, b: str, others: Iterable[float] = ()) -> dict:
    """A against B as `ratio` does, and A's median over the best figure of B in the run: the best
    of B's block medians and `others` (B's speed measured elsewhere in the run, the stage table's)."""
    best = max([*blocks["speeds"][b], *others])
    a_med = statistics.median(blocks["speeds"][a])
    return {"ratio_over_blocks": ratio(blocks, a, b), "speeds": {a: spread(blocks["speeds"][a]),
                                                                b: spread(blocks["speeds"][b])},
            f"best_{b}_tok_s": best, "over_best": a_med / best}


def disagreement(what: str, figure: float, blocks: dict, name: str) -> str | None:
    """A warning where `figure` (the same speed measured elsewhere in the run) lies further from
    the blocks' median of `name` than the blocks' spread (max - min) allows, else None."""
    s = spread(blocks["speeds"][name])
    if abs(figure - s["median"]) <= s["max"] - s["min"]:
        return None
    return (f"{what} {figure:.1f} tok/s and the blocks' {name} {s['median']:.1f} tok/s (over {blocks['n']} blocks: "
            f"{s['min']:.1f}-{s['max']:.1f}) differ by more than the spread: this machine's speed drifted in the run")


def tokens_per_s(tokens: Iterator, clock: Callable[[], float] = time.perf_counter,
                 excluded: Callable[[], float] = lambda: 0.0) -> tuple[float, list[int]]:
    """Speed of the tokens after the first (which ends the prefill), by `clock`, and all the ids;
    `tokens` yields (id, log-probability) pairs, as the LLMs' token sources and mlx-lm's
    generate_step do. `excluded`: seconds spent inside the run on work not its own (a simulated
    draft's upkeep), read before and after, taken off."""
    first = next(tokens)
    t, skip = clock(), excluded()
    rest = list(tokens)
    elapsed = clock() - t - (excluded() - skip)
    return len(rest) / elapsed, [int(tok) for tok, _ in [first, *rest]]
