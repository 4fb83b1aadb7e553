"""The one batching policy (funasr_qwen4b.app.batching, applied by Transcriber.transcribe_each):
pieces longest first, outcomes in input order, a failing batch run again one piece at a time so
that only the input at fault fails (with its own error), and the timing sums; then the same
policy as the Python API, the command line and the server see it, each checked against the
unbatched path."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import soundfile as sf

from funasr_qwen4b.app import batching
from funasr_qwen4b.audio import SAMPLE_RATE, AudioError
from funasr_qwen4b.decoding import DecodeConfig

SR = SAMPLE_RATE


# --- the policy on its own, with pieces that are just lengths --------------------------------

class Out:
    """A pipeline output: a row's stage times, hand-chosen (encoder: a tenth of its length)."""

    def __init__(self, size: int):
        self.size, self.timings = size, {"encoder": size / 10, "llm": 1.0}


def policy(inputs: list, batch_size: int, *, window: int | None = None, fail_run=(), fail_took=()):
    """batching.each over inputs given as their pieces' lengths (a str: an input that cannot be
    read); a call holding a piece whose length is in `fail_run` raises, naming it. Returns the
    outcomes and each pipeline call's piece lengths."""
    calls = []

    def prepare(lengths, i):
        if isinstance(lengths, str):
            raise AudioError(f"input {i}: {lengths}")
        bounds = np.cumsum([0, *lengths]).tolist()
        return batching.Job(np.zeros(bounds[-1]), bounds, pieces={k: np.zeros(n) for k, n in enumerate(lengths)})

    def run(pieces):
        sizes = [job.pieces[k].size for job, k in pieces]
        calls.append(sizes)
        for n in sizes:
            if n in fail_run:
                raise AudioError(f"a piece of {n} samples is rejected")
        return [Out(n) for n in sizes]

    def took(job, k, out):
        if out.size in fail_took:
            raise BrokenPipeError(f"the listener of {out.size} is gone")

    def finish(job):
        return {"sizes": [job.outs[k].size for k in sorted(job.outs)], "timings": job.timings()}

    out = list(batching.each(inputs, prepare=prepare, run=run, took=took, finish=finish, batch_size=batch_size,
                             window=window))
    return out, calls


def test_batches_are_longest_first_and_in_order_one_at_a_time():
    assert batching.batches([3, 5, 5, 1, 7], 2) == [[4, 1], [2, 0], [3]]  # 5 and 5 keep their order
    assert batching.batches([3, 5, 5, 1, 7], 1) == [[0], [1], [2], [3], [4]]
    assert batching.batches([], 4) == []


def test_outcomes_in_input_order_whatever_order_the_pieces_ran():
    out, calls = policy([[4, 1], [3], [9, 2, 6]], batch_size=2)
    assert calls == [[9, 6], [4, 3], [2, 1]]
    assert [i for i, _ in out] == [0, 1, 2]
    assert [r["sizes"] for _, r in out] == [[4, 1], [3], [9, 2, 6]]  # each input's pieces in their order


def test_timing_sums():
    """A call's stage times are its rows' longest; an input's, the sum over the calls its pieces
    were in, a call holding two of its pieces counted once; reading first, the window's total last."""
    out, calls = policy([[4, 1], [3]], batch_size=2)
    assert calls == [[4, 3], [1]]
    (_, a), (_, b) = out
    assert list(a["timings"]) == ["load_audio", "encoder", "llm", "total"]
    assert a["timings"]["encoder"] == pytest.approx(0.4 + 0.1) and a["timings"]["llm"] == pytest.approx(2.0)
    assert b["timings"]["encoder"] == pytest.approx(0.4) and b["timings"]["llm"] == pytest.approx(1.0)
    assert a["timings"]["total"] == b["timings"]["total"]  # the inputs of a window end together
    out, calls = policy([[2, 2], [1]], batch_size=3)
    assert calls == [[2, 2, 1]]
    assert out[0][1]["timings"]["encoder"] == pytest.approx(0.2) and out[0][1]["timings"]["llm"] == pytest.approx(1.0)


def test_an_input_alone_runs_one_piece_at_a_time_and_windows_are_read_in_turn():
    assert policy([[2, 5, 3]], batch_size=4)[1] == [[2], [5], [3]]  # as transcribe runs it
    assert policy([[1], [2], [3]], batch_size=2, window=2)[1] == [[2, 1], [3]]  # the second window: one input
    assert policy([[1], [2], [3]], batch_size=1)[1] == [[1], [2], [3]]


def test_a_failing_batch_runs_again_one_piece_at_a_time_and_fails_only_the_input_at_fault():
    out, calls = policy([[5], [4], [3]], batch_size=3, fail_run={4})
    assert calls == [[5, 4, 3], [5], [4], [3]]
    assert [i for i, _ in out] == [0, 1, 2]
    assert out[0][1]["sizes"] == [5] and out[2][1]["sizes"] == [3]
    assert isinstance(out[1][1], AudioError) and str(out[1][1]) == "a piece of 4 samples is rejected"
    # two inputs at fault: each its own message; an input that failed runs no more of its pieces
    out, calls = policy([[6], [4, 2], [7]], batch_size=2, fail_run={4, 7})
    assert calls == [[7, 6], [7], [6], [4, 2], [4]]  # then [2] is skipped: input 1's piece 4 failed
    assert str(out[1][1]) == "a piece of 4 samples is rejected" and str(out[2][1]) == "a piece of 7 samples is rejected"
    assert out[0][1]["sizes"] == [6]


def test_an_input_that_cannot_be_read_or_whose_listener_fails_fails_alone():
    out, calls = policy([[3], "not audio", [2], [5]], batch_size=4, fail_took={5})
    assert calls == [[5, 3, 2]]  # nothing runs again: the batch itself did not fail
    assert str(out[1][1]) == "input 1: not audio" and isinstance(out[3][1], BrokenPipeError)
    assert [out[0][1]["sizes"], out[2][1]["sizes"]] == [[3], [2]]


# --- through the Transcriber, against its unbatched path --------------------------------------

def same(a: dict, b: dict) -> bool:
    """Two results alike but for the time they took."""
    drop = ("timings", "tokens_per_s")
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def plant(pipe, bad: set[int]) -> list[int]:
    """pipe.run and run_batch raise for any call holding a piece of a size in `bad`, naming it;
    each call's size is recorded."""
    calls, run, run_batch = [], pipe.run, pipe.run_batch

    def check(batch):
        calls.append(len(batch))
        for x in batch:
            if x.size in bad:
                raise AudioError(f"a piece of {x.size} samples is rejected")

    def run_(samples, rec=None, on_text=None, *, query=None, decode=None, template=None):
        check([samples])
        return run(samples, rec, on_text, query=query, decode=decode, template=template)

    def run_batch_(batch, on_texts=None, *, query=None, decode=None, template=None):
        check(batch)
        return run_batch(batch, on_texts, query=query, decode=decode, template=template)

    pipe.run, pipe.run_batch = run_, run_batch_
    return calls


@pytest.fixture(scope="module")
def ctc(bundle):
    """SenseVoice's CTC head (MLX), long input split every 2 s at most."""
    from funasr_qwen4b import Transcriber

    return Transcriber.load(bundle, ctc_only=True, max_seconds=2.0)


def ragged(clip_10s) -> list[np.ndarray]:
    """Speech of 1.3 to 7.3 s (the longest split in four or more) and one silent input."""
    return [clip_10s[:int(s * SR)] for s in (1.3, 7.3, 0.9)] + [np.zeros(SR, np.float32), clip_10s[SR:int(3.7 * SR)]]


@pytest.mark.parametrize("batch_size,window", [(2, None), (3, None), (4, 2), (16, None)])
def test_ragged_inputs_batched_give_the_unbatched_results_in_order(ctc, clip_10s, batch_size, window):
    inputs = ragged(clip_10s)
    alone = [ctc.transcribe(x, SR) for x in inputs]
    assert max(r["chunks"] for r in alone) >= 4 and "no_speech" in alone[3]
    got = list(ctc.transcribe_each(inputs, SR, batch_size=batch_size, window=window))
    assert [i for i, _ in got] == list(range(len(inputs)))
    for a, (_, b) in zip(alone, got):
        assert same(a, b)
    assert all(same(a, b) for a, b in zip(alone, ctc.transcribe_batch(inputs, SR, batch_size=batch_size)))


def test_a_failing_batch_fails_only_the_input_at_fault(ctc, clip_10s):
    inputs = ragged(clip_10s) + [clip_10s[:14417], clip_10s[2 * SR: 2 * SR + 27203], np.zeros(0, np.float32)]
    alone = {i: ctc.transcribe(x, SR) for i, x in enumerate(inputs[:5])}
    calls = plant(ctc.pipeline, {14417, 27203})
    try:
        got = dict(ctc.transcribe_each(inputs, SR, batch_size=4))
        assert sorted(got) == list(range(len(inputs)))
        assert all(same(alone[i], got[i]) for i in alone)
        assert str(got[5]) == "a piece of 14417 samples is rejected"  # each at fault with its own error
        assert str(got[6]) == "a piece of 27203 samples is rejected"
        assert isinstance(got[7], AudioError) and "empty" in str(got[7])  # unreadable: never ran
        assert calls[0] == 4 and calls.count(1) >= 2  # batches of 4; the pieces of a failed one ran alone
        with pytest.raises(AudioError, match="a piece of 14417 samples"):  # the first in input order
            ctc.transcribe_batch(inputs[:7], SR, batch_size=4)
    finally:
        del ctc.pipeline.run, ctc.pipeline.run_batch


def test_a_batch_failing_mid_stream_streams_each_text_once(full_bundle, clip, clip_10s, caplog):
    """Rows that streamed part of their text before their batch failed run again alone: what
    they streamed is not streamed twice, and each input's stream is its text, as unbatched."""
    from funasr_qwen4b import Transcriber

    t = Transcriber.load(full_bundle, decode=DecodeConfig(loop_guard=False, speculate="off", min_tokens=1,
                                                          tokens_per_second=12.0))
    inputs = [clip[:int(2.5 * SR)], clip_10s[:3 * SR]]
    alone = [t.transcribe(x, SR) for x in inputs]
    pipe, run_batch, deltas, at_failure = t.pipeline, t.pipeline.run_batch, [[], []], []

    def failing_once(batch, on_texts=None, *, query=None, decode=None, template=None):
        count = [0]

        def gone(f):
            def feed(delta):
                f(delta)
                count[0] += 1
                if count[0] == 6:
                    at_failure.extend(len(d) for d in deltas)
                    raise RuntimeError("the device was lost")
            return feed

        pipe.run_batch = run_batch  # it fails once
        return run_batch(batch, [gone(f) for f in on_texts], query=query, decode=decode, template=template)

    pipe.run_batch = failing_once
    try:
        got = t.transcribe_batch(inputs, SR, batch_size=2, on_texts=[d.append for d in deltas])
    finally:
        del pipe.run_batch
    assert "a batch of 2 pieces failed (the device was lost)" in caplog.text
    assert len(at_failure) == 2 and all(at_failure)  # both rows had streamed some of their text
    for a, b, d in zip(alone, got, deltas):
        assert len(a["text"]) > 10 and "".join(d) == b["text"] == a["text"]


# --- the command line and the server ---------------------------------------------------------

def test_cli_a_failing_batch_names_the_input_at_fault(bundle, clip, clip_10s, tmp_path, monkeypatch, capsys):
    from funasr_qwen4b import Transcriber
    from funasr_qwen4b.app.cli import main

    paths = []
    for name, x in (("a", clip[:int(1.5 * SR)]), ("bad", clip_10s[:33331]), ("c", clip_10s[4 * SR: 7 * SR])):
        paths.append(str(tmp_path / f"{name}.wav"))
        sf.write(paths[-1], x, SR, subtype="FLOAT")
    base = ["transcribe", "--ctc", *paths, "-m", str(bundle)]
    assert main(base) == 0
    clean = capsys.readouterr().out
    load = Transcriber.load.__func__

    def planted(cls, *args, **kwargs):  # the command loads its own
        t = load(cls, *args, **kwargs)
        plant(t.pipeline, {33331})
        return t

    monkeypatch.setattr(Transcriber, "load", classmethod(planted))
    for size in ("1", "3"):
        assert main([*base, "--batch-size", size]) == 1
        out, err = capsys.readouterr()
        assert out.splitlines() == [line for line in clean.splitlines() if not line.startswith(paths[1])]
        assert f"{paths[1]}: a piece of 33331 samples is rejected" in err
        assert f"2 of 3 transcribed; failed: {paths[1]}" in err


def test_server_a_failing_batch_answers_each_request_on_its_own(bundle, clip, clip_10s):
    from funasr_qwen4b.app.server.errors import ApiError
    from funasr_qwen4b.app.server.slots import CTC_MODEL, ModelSlot, ServerConfig

    slot = ModelSlot(CTC_MODEL, ServerConfig(bundle, batch_size=8, batch_wait=0))
    inputs = [clip[:int(1.5 * SR)], clip_10s[:29989], clip_10s[4 * SR: 7 * SR]]
    gate = threading.Event()
    try:
        asyncio.run(slot.load())
        # the unbatched path, on the model's own thread
        alone = slot.executor.submit(lambda: [slot.model.transcribe(x, SR) for x in inputs]).result()
        calls = plant(slot.model.pipeline, {29989})
        slot.executor.submit(gate.wait)  # the model's thread busy: the requests wait together

        async def ask():
            tasks = [asyncio.ensure_future(slot.transcribe(x)) for x in inputs]
            while slot.queued < len(inputs):
                await asyncio.sleep(0)  # each task queues its request
            gate.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

        got = asyncio.run(ask())
    finally:
        gate.set()
        slot.shutdown()
    assert calls == [3, 1, 1, 1]  # one batch, failed; then each alone
    assert same(got[0], alone[0]) and same(got[2], alone[2])
    assert isinstance(got[1], ApiError) and (got[1].status, got[1].code) == (400, "invalid_audio")
    assert got[1].message == "a piece of 29989 samples is rejected"
    assert {k: slot.stats[k] for k in ("requests", "failed", "batches", "batched")} == \
        {"requests": 3, "failed": 1, "batches": 1, "batched": 3}
