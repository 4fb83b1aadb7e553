"""The training clips' features, made by worker processes and cached on disk, so that a run
that pauses (training/RUN.md: one run over two device calls) or fails does not make them again.

A clip: espeak-ng speech or a non-speech sound (`data.synthesize`), augmented (`data.augment`,
drawn from the recipe's seed and the clip's index in `data.items`' training list), then
FunASR's fbank + LFR without CMVN (its statistics come from these features), kept as float16:
half the memory and disk of float32, and the rounding (under 0.01 on log-mel values of about
-16 to 30) is the same in every run, fresh or from the cache.

The clips are shuffled (seeded) and split in two parts: the first is made before training
starts, the second by fewer workers while training runs (the trainer takes its chunks as they
are written, or all at once). Each part is stored as chunk files of up to CHUNK clips, each
written whole by the worker that made it (written under a temporary name, then renamed), so an
interrupted cache is completed, not made again:

    DIR/key.json             what the cache holds: format, chunk size, recipe, part sizes; a cache
                             with another key is removed and made again
    DIR/p{part}_{chunk}.npz  feats [frames, 560] float16 (the clips' rows end to end),
                             frames [clips] int64, index [clips] int64 (places in the training list),
                             s1, s2 [560] float64 (sums of the rows and of their squares)
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import data

log = logging.getLogger(__name__)

CHUNK = 256  # clips per chunk file (about 20 MB)
READERS = 8  # threads reading chunk files
FORMAT = 1
DIM = 560

# On the training device the rows are held as uint8 on an even grid from fbank's log floor
# (log of float32's epsilon: digital silence, held exactly) to 32 (the loudest of 190 training
# clips drawn at random reached 29.5): steps of 0.19 on values that spread about 13 either
# side, half the memory of float16, so that an H100 holds nearly every clip (training/RUN.md).
GRID_LOW = math.log(np.finfo(np.float32).eps)
GRID_STEP = (32.0 - GRID_LOW) / 255


def to_grid(x):
    """float rows (a torch tensor) -> uint8 grid points, the nearest (values beyond it clamped)."""
    import torch

    return ((x.float() - GRID_LOW) / GRID_STEP).round_().clamp_(0, 255).to(torch.uint8)


def from_grid(q):
    """uint8 grid points -> float32 values."""
    return q.float() * GRID_STEP + GRID_LOW


def layout(n: int, seed: int, early_share: float) -> list[list[int]]:
    """The two parts' clip indices: a seeded shuffle of range(n), its first round(early_share * n)
    (at least one) made first."""
    order = list(range(n))
    random.Random(f"{seed}-feature-parts").shuffle(order)
    k = max(1, min(n, round(early_share * n)))
    return [order[:k], order[k:]]


def _init_worker(funasr_modules_only: bool) -> None:
    """A fresh worker process (spawned: the trainer may hold a CUDA context, which a fork must not copy)."""
    if funasr_modules_only:
        from funasr_qwen4b.reference.funasr_modules import import_modules_only

        import_modules_only()
    import torch

    torch.set_num_threads(1)


def pool(workers: int, funasr_modules_only: bool) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(funasr_modules_only,))


def stop(executor: Executor, made: list[Future], wait: bool) -> None:
    """Cancel the chunks not begun (the few already handed to a worker are finished), then shut
    `executor` down. The futures are cancelled here, not by `shutdown(cancel_futures=True)`: that
    cancels nothing once the caller drops its last reference to the executor, and the process
    would not exit before every chunk was made."""
    for f in made:
        f.cancel()
    executor.shutdown(wait=wait)


def _make_chunk(job: tuple[str, list[tuple[data.Item, int]], data.Recipe]) -> str:
    """Synthesise, augment and featurise one chunk's clips; write its file whole."""
    from funasr_qwen4b.config import FrontendConfig
    from funasr_qwen4b.reference.frontend import Frontend

    path, clips, recipe = job
    frontend = Frontend(FrontendConfig(cmvn=False), None)
    feats, frames = [], []
    for item, index in clips:
        x = data.augment(data.synthesize(item), recipe, np.random.default_rng([recipe.seed, index, 0]))
        f = frontend(x).numpy().astype(np.float16)
        feats.append(f)
        frames.append(f.shape[0])
    rows = np.concatenate(feats)
    wide = rows.astype(np.float64)
    tmp = Path(f"{path}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, feats=rows, frames=np.asarray(frames, np.int64), index=np.asarray([i for _, i in clips], np.int64),
                 s1=wide.sum(0), s2=np.square(wide).sum(0))
    os.replace(tmp, path)
    return path


@dataclass
class Part:
    feats: np.ndarray  # [frames, 560] float16
    frames: np.ndarray  # [clips]
    index: np.ndarray  # [clips]: places in the training list
    s1: np.ndarray  # [560] float64
    s2: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.frames.sum())


class Cache:
    """One cache directory for one recipe and layout."""

    def __init__(self, root: Path, recipe: data.Recipe, parts: list[list[int]]):
        self.root, self.recipe, self.parts = Path(root), recipe, parts
        key = {"format": FORMAT, "chunk": CHUNK, "recipe": asdict(recipe), "parts": [len(p) for p in parts]}
        key_file = self.root / "key.json"
        if key_file.is_file() and json.loads(key_file.read_text(encoding="utf-8")) != json.loads(json.dumps(key)):
            log.info(f"{self.root} holds features of another recipe: making them again")
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key, indent=1), encoding="utf-8")

    def chunks(self, part: int) -> list[tuple[Path, list[int]]]:
        clips = self.parts[part]
        return [(self.root / f"p{part}_{k // CHUNK:05d}.npz", clips[k:k + CHUNK]) for k in range(0, len(clips), CHUNK)]

    def missing(self, part: int) -> list[tuple[Path, list[int]]]:
        return [(path, clips) for path, clips in self.chunks(part) if not path.is_file()]

    def submit(self, executor: ProcessPoolExecutor, part: int, items: list[data.Item]) -> list[Future]:
        """Make the part's missing chunk files in `executor`; the futures end when each is written."""
        return [executor.submit(_make_chunk, (str(path), [(items[i], i) for i in clips], self.recipe))
                for path, clips in self.missing(part)]

    def load(self, part: int) -> Part:
        """The part's chunks, in order (every one must exist)."""
        return self._read(self.chunks(part))

    def ready(self, part: int, start: int) -> Part:
        """The part's chunks from its clip `start` (a chunk's first) that are written, in order,
        up to the first that is not (yet)."""
        if start % CHUNK:
            raise ValueError(f"clip {start} does not begin a chunk of {CHUNK}")
        chunks = list(itertools.takewhile(lambda c: c[0].is_file(), self.chunks(part)[start // CHUNK:]))
        return self._read(chunks)

    def _read(self, chunks: list[tuple[Path, list[int]]]) -> Part:
        def read(chunk: tuple[Path, list[int]]) -> dict[str, np.ndarray]:
            path, clips = chunk
            with np.load(path) as z:
                if z["index"].tolist() != clips:
                    raise ValueError(f"{path} holds other clips than this recipe's layout; remove {self.root}")
                return {k: z[k] for k in ("feats", "frames", "index", "s1", "s2")}

        # Several files at a time: the GPU waits for these reads (at an epoch's start, and before
        # a resumed run's first step; training/RUN.md).
        with ThreadPoolExecutor(READERS) as pool:
            got = list(pool.map(read, chunks))
        feats, frames, index = ([g[k] for g in got] for k in ("feats", "frames", "index"))
        s1, s2 = np.zeros(DIM), np.zeros(DIM)
        for g in got:  # in order, as the sums always were
            s1 += g["s1"]
            s2 += g["s2"]
        if not feats:
            return Part(np.zeros((0, DIM), np.float16), np.zeros(0, np.int64), np.zeros(0, np.int64), s1, s2)
        return Part(np.concatenate(feats), np.concatenate(frames), np.concatenate(index), s1, s2)


def cmvn(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every row of `part`, from its float64 sums."""
    count = part.rows
    mean = part.s1 / count
    return mean, np.sqrt(np.maximum(part.s2 / count - mean ** 2, 0.0))
