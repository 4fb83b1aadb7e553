"""bench's interleaved blocks: the schedule, the medians per block, the ratio's spread, the
best-divisor speed-up and the warning where two figures of one speed disagree. Fake runners and
a fake clock: nothing here is timed."""

import itertools

import pytest

from funasr_qwen4b.app.bench_blocks import (disagreement, ratio, run_blocks, schedule, speedup, spread,
                                            tokens_per_s)


def test_schedule_alternates_order_per_block():
    assert schedule(["a", "b"], 3, 2) == [["a", "a", "b", "b"], ["b", "b", "a", "a"], ["a", "a", "b", "b"]]
    assert schedule(["x", "y", "z"], 2, 1) == [["x", "y", "z"], ["z", "y", "x"]]


def scripted(speeds, calls, name):
    it = iter(speeds)

    def run():
        calls.append(name)
        return next(it)
    return run


def test_blocks_run_in_schedule_and_take_medians_per_block():
    calls = []
    # a: one warm-up (99, dropped), then block speeds 10, 12 | 20, 22 | 30, 50 (k = 2, n = 3)
    a = scripted([99, 10, 12, 20, 22, 30, 50], calls, "a")
    b = scripted([99, 5, 5, 8, 12, 10, 10], calls, "b")
    rep = run_blocks({"a": a, "b": b}, n=3, k=2, warmup=1)
    assert calls == ["a", "b", "a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert rep["order"] == ["a", "b", "a"]
    assert rep["speeds"] == {"a": [11, 21, 40], "b": [5, 10, 10]}
    r = ratio(rep, "a", "b")
    assert r["blocks"] == [2.2, 2.1, 4.0] and r["median"] == 2.2 and (r["min"], r["max"]) == (2.1, 4.0)
    assert r["iqr"] == pytest.approx([2.15, 3.1])


def test_speedup_divides_by_the_best_plain_of_the_run():
    rep = {"n": 3, "k": 2, "speeds": {"spec": [20.0, 30.0, 25.0], "plain": [10.0, 12.0, 8.0]}}
    s = speedup(rep, "spec", "plain")
    assert s["best_plain_tok_s"] == 12.0 and s["over_best"] == 25.0 / 12.0
    assert s["ratio_over_blocks"]["median"] == 2.5  # blocks: 2.0, 2.5, 3.125
    s = speedup(rep, "spec", "plain", others=[15.0])  # the stage table's plain was faster still
    assert s["best_plain_tok_s"] == 15.0 and s["over_best"] == 25.0 / 15.0
    assert s["speeds"]["plain"]["median"] == 10.0 and s["speeds"]["spec"]["max"] == 30.0


def test_disagreement_beyond_the_spread_is_said():
    rep = {"n": 3, "k": 2, "speeds": {"plain": [100.0, 110.0, 120.0]}}
    assert disagreement("stage table plain", 125.0, rep, "plain") is None  # 15 from the median, spread 20
    line = disagreement("stage table plain", 172.1, rep, "plain")
    assert "172.1" in line and "110.0" in line and "100.0-120.0" in line and "more than the spread" in line
    assert disagreement("x", 90.0, rep, "plain") is None
    assert disagreement("x", 89.0, rep, "plain") is not None


def test_spread_of_one_value():
    assert spread([3.0]) == {"median": 3.0, "min": 3.0, "max": 3.0, "iqr": [3.0, 3.0]}


def test_tokens_per_s_times_after_the_first_and_takes_off_excluded_time():
    ticks = itertools.count(0.0, 2.0)  # each read of the clock: 2 s later
    speed, ids = tokens_per_s(iter([(7, -0.5), (8, -1.0), (9, -0.1), (10, -2.0)]), clock=lambda: next(ticks))
    assert ids == [7, 8, 9, 10] and speed == 3 / 2.0
    ticks = itertools.count(0.0, 4.0)
    spent = iter([1.0, 2.0])  # 1 s of the 4 was the draft's upkeep
    speed, _ = tokens_per_s(iter([(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0)]), clock=lambda: next(ticks),
                            excluded=lambda: next(spent))
    assert speed == 3 / 3.0
