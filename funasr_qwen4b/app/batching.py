"""The one batching policy: what runs together, what a failure costs, how a batch's time is
counted. The Transcriber applies it (`Transcriber.transcribe_each`); the Python API, the
command line, the server and `cer` all go through the Transcriber.

- Inputs are taken `window` at a time (all of them by default). Each is read and cut into
  pieces on its own: an input that cannot be read fails alone.
- A window's pieces run `batch_size` at a time, longest first so that a batch pads little
  (equal lengths keep their order). One at a time they run in input order, and so do the
  pieces of an input alone in its window, as `Transcriber.transcribe` runs them
  (speculation where it applies).
- A batch that raises runs again one piece at a time, so that only the input whose piece
  fails gets the error, its own; that input's other pieces are then skipped.
- A batch's stage times are its rows' longest (its rows end one by one); an input's are the
  sums over the batches its pieces were in, with its own reading time and the window's total.
- Outcomes come back in input order, a window's once the window is done: each input's result,
  or the exception raised for that input alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One input on its way through a window: its samples cut at `bounds` into pieces (or, where
    pieces leave gaps, as speech segments do, given as `spans`), the pieces that run (place →
    samples) and those that do not, what each run gave, the stage times of the pipeline calls
    they were in, and the input's own failure."""

    samples: np.ndarray
    bounds: list[int] = field(default_factory=list)  # 0, the cut points, the end: contiguous pieces
    pieces: dict[int, np.ndarray] = field(default_factory=dict)
    silent: dict[int, str] = field(default_factory=dict)  # the pieces without speech, with the reason
    stream: object = None  # the input's OrderedStream, if its text is streamed
    progress: object = None  # a bar advanced by each piece's seconds as it is decoded (update, close)
    read_s: float = 0.0  # reading it
    outs: dict[int, object] = field(default_factory=dict)
    runs: list[dict[str, float]] = field(default_factory=list)
    error: Exception | None = None
    spans: list[tuple[int, int]] | None = None  # each piece's [start, end) in samples; default: between bounds

    def __post_init__(self):
        if self.spans is None:
            self.spans = list(zip(self.bounds, self.bounds[1:]))

    def timings(self) -> dict[str, float]:
        """The stage times of the calls its pieces were in, summed (a call holding two of its pieces once)."""
        out: dict[str, float] = {}
        for run in self.runs:
            for key, v in run.items():
                out[key] = out.get(key, 0.0) + v
        return out


Piece = tuple[Job, int]  # an input's job and the piece's place in it
Run = Callable[[list[Piece]], list]  # pieces → their pipeline outputs, in order
Took = Callable[[Job, int, object], None]  # a piece's output handed on (streamed): raising fails that input


def batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions `batch_size` at a time: longest first when several run together, in order one at a time."""
    order = list(range(len(lengths)))
    if batch_size > 1:
        order.sort(key=lambda n: -lengths[n])  # stable: equal lengths keep their order
    return [order[n: n + batch_size] for n in range(0, len(order), batch_size)]


def stage_times(outs: list) -> dict[str, float]:
    """A pipeline call's stage times: its rows' longest (a batch's stages are shared by its rows)."""
    return {key: max(o.timings.get(key, 0.0) for o in outs) for key in outs[0].timings}


def failure(fn: Callable, *args) -> Exception | None:
    """What `fn(*args)` raised, if anything (its result is not wanted)."""
    try:
        fn(*args)
    except Exception as e:  # whose it is, the caller knows
        return e
    return None


def run_jobs(jobs: list[Job], batch_size: int, run: Run, took: Took) -> None:
    """Every piece of every job through `run`, batch by batch; fills each job's outs, runs and error."""
    pieces = [(job, k) for job in jobs for k in job.pieces]
    for group in batches([job.pieces[k].size for job, k in pieces], batch_size):
        _run_group([pieces[n] for n in group], run, took)


def _run_group(group: list[Piece], run: Run, took: Took) -> None:
    group = [(job, k) for job, k in group if job.error is None]  # an input that failed runs no more
    if not group:
        return
    try:
        outs = run(group)
    except Exception as e:
        if len(group) == 1:
            group[0][0].error = e
            return
        log.warning("a batch of %d pieces failed (%s); running them one at a time, so that only the input at "
                    "fault fails", len(group), " ".join(str(e).split()))
        for piece in group:
            _run_group([piece], run, took)
        return
    times = stage_times(outs)
    for (job, k), out in zip(group, outs):
        if not job.runs or job.runs[-1] is not times:
            job.runs.append(times)
        job.outs[k] = out
        if job.error is None:
            job.error = failure(took, job, k, out)


def each(inputs: Sequence, *, prepare: Callable[[object, int], Job], run: Run, took: Took,
         finish: Callable[[Job], dict], batch_size: int = 1,
         window: int | None = None) -> Iterator[tuple[int, dict | Exception]]:
    """(position, result or that input's exception) for each input, in input order. `prepare`
    reads an input (given with its position) into a Job, `run` runs pieces, `took` hands a
    piece's output on, `finish` makes a done job's result (its "timings": the job's stage sums
    and what finishing took); results get the job's "load_audio" first and the window's
    "total" last."""
    window = window or max(len(inputs), 1)
    for at in range(0, len(inputs), window):
        t0 = time.perf_counter()
        jobs = [_prepare(prepare, inputs[i], i) for i in range(at, min(at + window, len(inputs)))]
        live = [j for j in jobs if isinstance(j, Job)]
        run_jobs(live, batch_size if len(live) > 1 else 1, run, took)
        outcomes = [_finish(j, finish) for j in jobs]
        total = round(time.perf_counter() - t0, 4)  # the window's: its inputs end together
        for i, (job, r) in enumerate(zip(jobs, outcomes), at):
            if isinstance(r, dict):
                r["timings"] = {"load_audio": round(job.read_s, 4), **r["timings"], "total": total}
            yield i, r


def _prepare(prepare: Callable[[object, int], Job], audio, i: int) -> Job | Exception:
    try:
        return prepare(audio, i)
    except Exception as e:  # this input cannot be read: its failure alone
        return e


def _finish(job: Job | Exception, finish: Callable[[Job], dict]) -> dict | Exception:
    if isinstance(job, Exception):
        return job
    if job.error is not None:
        return job.error
    try:
        return finish(job)
    except Exception as e:  # finishing (a translation) failed: this input's alone
        return e
