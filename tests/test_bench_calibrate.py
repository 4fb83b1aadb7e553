"""A window tuned to the machine: the pass size that gives the most expected tokens per second
(hand-derived cases), the draft's running acceptance, the cost curve's cache (keyed, atomic,
lenient), speculation sized by an injected curve (still plain greedy's ids), and `bench
--calibrate`'s logic on a tiny model (nothing here asserts on a timing)."""

import json
import logging
import os

import pytest

from funasr_qwen4b import pass_costs
from funasr_qwen4b.decoding import Acceptance, DecodeConfig, DecodeStats, draft_size
from funasr_qwen4b.wiring import Draft

TOKENS = 40
PLAIN = DecodeConfig(loop_guard=False, ignore_eos=True, min_tokens=TOKENS, max_tokens=TOKENS, speculate="off")


def test_draft_size_maximises_tokens_per_second():
    flat = [1.0] * 17
    assert draft_size(flat, 0.5, 16) == 16  # more positions cost nothing: the whole window
    assert draft_size(flat, 0.5, 8) == 8
    linear = [float(k) for k in range(1, 18)]
    assert draft_size(linear, 0.99, 16) == 0  # each position costs a pass: plain decoding
    # 1 position 1.0, 2 positions 1.3: 1.5 / 1.3 > 1 / 1.0 at rate 0.5; at rate 0.2, 1.2 / 1.3 < 1
    step = [1.0, 1.3] + [5.0] * 15
    assert draft_size(step, 0.5, 16) == 1 and draft_size(step, 0.2, 16) == 0
    # H200's 4-bit curve shape: ~2x from 9 positions on; rate 0.5 -> one draft token, 0.86 -> all 16
    h200 = [7.4, 10.0, 12.1, 14.7, 17.3, 16.7, 16.0, 15.5, 15.0] + [15.3] * 8
    assert draft_size(h200, 0.5, 16) == 1 and draft_size(h200, 0.86, 16) == 16
    assert draft_size([1.0, 1.0, 1.0], 0.9, 16) == 2  # sizes beyond the measured ones are not chosen


def test_acceptance_counts_kept_and_first_rejected():
    a = Acceptance()
    assert a.rate == 0.5
    a.update(3, 3)  # all kept
    a.update(1, 4)  # one kept, the second rejected (the two after it untried)
    assert (a.kept, a.rejected) == (4, 1) and a.rate == 5 / 7


IDENTITY = {"hidden_size": 64, "dtype": "mlx.core.bfloat16", "quantized": [[4, 64]]}


def test_pass_costs_cached_per_device_and_model(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(pass_costs.CACHE_ENV, str(tmp_path / "own"))
    assert pass_costs.cache_dir() == tmp_path / "own"  # the project's own variable first
    monkeypatch.delenv(pass_costs.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    old = os.umask(0o027)
    try:
        path = pass_costs.save("gpu A", IDENTITY, [0.01, 0.012], context=200)
    finally:
        os.umask(old)
    assert path.parent == tmp_path / "funasr-qwen4b" and (path.stat().st_mode & 0o777) == 0o640
    assert pass_costs.load("gpu A", IDENTITY) == [0.01, 0.012]
    assert pass_costs.load("gpu B", IDENTITY) is None  # another card
    assert pass_costs.load("gpu A", {**IDENTITY, "quantized": [[8, 64]]}) is None  # another precision
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert pass_costs.load("gpu A", IDENTITY) is None
    assert str(path) in caplog.text and "bench --calibrate" in caplog.text
    path.write_text(json.dumps({"device": "gpu A", "model": IDENTITY, "seconds": [0.01, -1]}))
    assert pass_costs.load("gpu A", IDENTITY) is None
    with pytest.raises(ValueError, match="positive"):
        pass_costs.save("gpu A", IDENTITY, [])


@pytest.fixture(scope="module")
def tiny(full_bundle, clip):
    import mlx.core as mx

    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(full_bundle, decode=PLAIN)
    embeds = pipe.llm.inputs_embeds(pipe.setup.prompt, mx.array(pipe.run(clip, decode=PLAIN).audio_embeds))
    return pipe, embeds, [tok for tok, _ in pipe.llm.tokens(embeds, PLAIN, TOKENS)]


@pytest.mark.parametrize("costs, forwards", [
    ([float(k) for k in range(1, 18)], TOKENS - 1),  # a pass costs its positions: no draft tokens at all
    ([1.0, 1.0, 1.0, 1.0] + [10.0] * 13, 10),  # 4 positions for the price of 1: 3 draft tokens a pass
    ([1.0] * 17, 3),  # flat: whole windows (16 + 1, 16 + 1, then the 4 + 1 left)
])
def test_speculation_sized_by_the_cost_curve_keeps_plain_ids(tiny, costs, forwards):
    pipe, embeds, plain = tiny
    llm = pipe.llm
    before = llm.pass_costs
    llm.pass_costs = costs
    try:
        stats = DecodeStats()
        ids = [tok for tok, _ in llm.tokens(embeds, DecodeConfig(draft_tokens=16), TOKENS,
                                            draft=Draft(plain, pipe.setup.tokenizer), stats=stats)]
    finally:
        llm.pass_costs = before
    assert ids == plain and stats.forwards == forwards
    assert stats.accepted == TOKENS - 1 - forwards  # a right draft: every draft token offered is kept


def test_a_window_shrunk_to_nothing_grows_again_where_the_draft_comes_right(tiny):
    """Two wrong draft tokens first, then the right ones: the rate falls below what a draft token
    is worth (1 + r > 1.3) and passes verify none; the tokens the LLM writes meanwhile still show
    the draft right, so the rate rises and draft tokens are verified again (before, it stayed low:
    nothing verified, nothing learnt)."""
    pipe, embeds, plain = tiny
    llm, tok = pipe.llm, pipe.setup.tokenizer
    wrong = [next(i for i in range(100, 200) if i not in plain[k - 1: k + 2] and tok.decode([i]).strip())
             for k in (1, 2)]
    before = llm.pass_costs
    llm.pass_costs = [1.0, 1.3] + [5.0] * 15  # one draft token a pass pays at a rate over 0.3
    try:
        stats = DecodeStats()
        ids = [t for t, _ in llm.tokens(embeds, DecodeConfig(draft_tokens=16), TOKENS,
                                        draft=Draft([plain[0], *wrong, *plain[3:]], tok), stats=stats)]
    finally:
        llm.pass_costs = before
    assert ids == plain
    assert stats.drafted - stats.accepted == 2  # the two wrong ones, then every one offered is kept
    assert stats.accepted >= (TOKENS - 1) // 2 - 3  # after the pass or two that verify none, one a pass


def test_calibrate_stores_what_speculation_finds(tiny, full_bundle, tmp_path, monkeypatch):
    from funasr_qwen4b.app import bench_calibrate
    from funasr_qwen4b.mlx_port.llm import Qwen3

    monkeypatch.delenv(pass_costs.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rep = bench_calibrate.run_calibrate(bundle=full_bundle, synthetic=None, blocks=2, warmup=0, window=4)
    c = rep["calibration"]
    assert len(c["seconds"]) == 5 and all(s > 0 for s in c["seconds"]) and c["blocks"] == 2
    assert c["cache_file"].startswith(str(tmp_path / "funasr-qwen4b"))
    fresh = Qwen3.load(full_bundle / "llm")  # a later load looks the curve up on first use
    assert fresh.pass_costs is None and fresh.costs(5) == c["seconds"]
    assert "| 5 |" in bench_calibrate.to_markdown(rep)
    other = tmp_path / "other"
    monkeypatch.setenv("XDG_CACHE_HOME", str(other))
    assert Qwen3.load(full_bundle / "llm").costs(5) == ()  # none measured here (and none on first use)


def test_the_first_speculation_without_costs_measures_and_stores_them(tiny, tmp_path, monkeypatch, caplog):
    """Where no costs are cached, the first speculation measures them (1..window + 1 positions),
    stores them for this device and model, and decodes plain greedy's ids; a later load of the
    same model finds them and measures nothing."""
    from funasr_qwen4b.mlx_port.llm import Qwen3, device_name

    pipe, embeds, plain = tiny
    monkeypatch.setenv(pass_costs.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(pass_costs.MEASURE_ENV)
    fresh = Qwen3(pipe.llm.model)
    with caplog.at_level(logging.INFO, logger=pass_costs.__name__):
        ids = [tok for tok, _ in fresh.tokens(embeds, DecodeConfig(draft_tokens=6), TOKENS,
                                              draft=Draft(plain, pipe.setup.tokenizer), stats=DecodeStats())]
    assert ids == plain
    assert "measuring what one pass costs at 1..7 positions" in caplog.text
    stored = pass_costs.load(device_name(), fresh.identity())
    assert stored == fresh.pass_costs and len(stored) == 7 and all(s > 0 for s in stored)
    rec = json.loads(pass_costs.path_for(device_name(), fresh.identity()).read_text(encoding="utf-8"))
    assert rec["blocks"] == pass_costs.FIRST_USE_BLOCKS and rec["context"] == Qwen3.calibration_context

    def measured(*a, **k):
        raise AssertionError("measured again")
    monkeypatch.setattr(Qwen3, "measure_pass_costs", measured)
    assert Qwen3(pipe.llm.model).costs(7) == stored
    monkeypatch.setenv(pass_costs.MEASURE_ENV, "off")
    monkeypatch.setenv(pass_costs.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert Qwen3(pipe.llm.model).costs(7) == ()  # turned off: the rule without costs


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tiny, tmp_path, monkeypatch, caplog):
    from funasr_qwen4b.mlx_port.llm import Qwen3

    pipe, _, _ = tiny
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(pass_costs.CACHE_ENV, str(tmp_path / "a-file"))  # a file where the folder should be
    monkeypatch.delenv(pass_costs.MEASURE_ENV)
    with caplog.at_level(logging.WARNING, logger=pass_costs.__name__):
        costs = Qwen3(pipe.llm.model).costs(3)
    assert len(costs) == 3 and all(s > 0 for s in costs)
    assert "pass costs not stored" in caplog.text and pass_costs.CACHE_ENV in caplog.text
