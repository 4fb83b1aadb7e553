"""Data parallelism under MLX's launcher (`mlx.launch`, or `python -m funasr_qwen4b.app.launch`,
which also gives the launch an exit status): `cer` and `transcribe` split their inputs across
the ranks by audio duration, each rank runs its share (batched as in one process), and rank 0
gathers the per-input results through `mx.distributed` and writes what one process would.

Without a launcher (or a launch of one process) `launched()` is None and nothing changes. Every
rank reads the audio itself, by the same paths (docs/distributed.md says why). Results travel as
JSON: bytes in a uint8 array, padded to the longest, after the lengths (all_gather needs equal
sizes). There is no collective while the work runs, so a rank that dies cannot leave the others
waiting in one: the launcher stops them (and rank 0 writes only after the gather)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import AudioError, is_stream

log = logging.getLogger(__name__)

# What each launcher sets (mlx/_distributed_utils/launch.py; mpirun for MPI) → the backend that
# reads it. The ring's MLX_HOSTFILE and JACCL's MLX_IBV_DEVICES name files (JSON lists, one item a
# rank; mlx.launch leaves the ring's empty for one rank).
LAUNCHER_ENV = (("MLX_HOSTFILE", "ring"), ("MLX_IBV_DEVICES", "jaccl"), ("NCCL_HOST_IP", "nccl"),
                ("OMPI_COMM_WORLD_SIZE", "mpi"))
# The share of a file whose header gives no duration (formats only ffmpeg reads): its size at 128 kbit/s.
BYTES_PER_SECOND = 16_000


class PeerLost(ConnectionError):
    """A collective failed: a rank died or its link broke."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the launch: `rank` of `size`, over `backend`."""
    group: object  # mx.distributed.Group
    rank: int
    size: int
    backend: str

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size} ({self.backend}, {socket.gethostname()})"


def _single(backend: str) -> bool:
    """A launch of one process, told by what the launcher set (MLX's ring refuses its empty hostfile)."""
    env = os.environ
    if backend == "nccl":
        return env.get("MLX_WORLD_SIZE", "1") == "1"
    if backend == "mpi":
        return env["OMPI_COMM_WORLD_SIZE"] == "1"
    path = Path(env["MLX_HOSTFILE" if backend == "ring" else "MLX_IBV_DEVICES"])
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return True  # no file of ranks: MLX would start none either
    return not text or len(json.loads(text)) <= 1


def launched() -> Ranks | None:
    """The ranks of this launch, or None without a launcher."""
    backend = next((b for var, b in LAUNCHER_ENV if var in os.environ), None)
    if backend is None or _single(backend):
        return None
    import mlx.core as mx

    try:
        group = mx.distributed.init(strict=True, backend=backend)
    except RuntimeError as e:
        raise PeerLost(f"mx.distributed could not start its {backend} backend ({' '.join(str(e).split())}); "
                       f"check that every host in the launch can reach the others") from None
    if group.size() == 1:
        return None
    ranks = Ranks(group, group.rank(), group.size(), backend)
    log.debug("%s", ranks)
    return ranks


def header_seconds(path: str | Path) -> float:
    """How long a file plays, from its header alone; from its size for formats only ffmpeg reads;
    0 for what cannot be read (the rank that gets it reports it, as one process would)."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:  # libsndfile's errors have no common type
        try:
            return os.path.getsize(path) / BYTES_PER_SECOND
        except OSError:
            return 0.0


def balance(seconds: list[float], size: int) -> list[list[int]]:
    """Indices of `seconds` for each of `size` ranks: longest first, each onto the least-loaded
    rank (ties to the lower rank); each rank's indices in input order."""
    loads, shares = [0.0] * size, [[] for _ in range(size)]
    for i in sorted(range(len(seconds)), key=lambda i: (-seconds[i], i)):
        r = min(range(size), key=lambda r: (loads[r], r))
        shares[r].append(i)
        loads[r] += seconds[i]
    return [sorted(s) for s in shares]


def share(ranks: Ranks, paths: list, names: list[str] | None = None) -> list[int]:
    """This rank's indices into `paths`, balanced by duration. Every rank computes the split from
    what it sees, and rank 0 refuses to go on unless every rank saw the same `names` (default the
    paths), paths and durations: a split the ranks disagree on would do an input twice and another
    never."""
    import mlx.core as mx

    seconds = [header_seconds(p) for p in paths]
    seen = hashlib.sha256(json.dumps([names, [str(p) for p in paths], seconds]).encode("utf-8")).digest()
    rows = _all_gather(ranks, mx.array(np.frombuffer(seen, dtype=np.uint8))).reshape(ranks.size, -1)
    other = [r for r in range(ranks.size) if not np.array_equal(rows[r], rows[0])]
    if other and ranks.rank == 0:
        raise ValueError(f"{'ranks' if len(other) > 1 else 'rank'} {', '.join(map(str, other))} "
                         f"{'see' if len(other) > 1 else 'sees'} other inputs than rank 0 "
                         f"(another manifest, or audio files missing or of other lengths): every host needs the same "
                         f"manifest and audio at the same paths")
    return balance(seconds, ranks.size)[ranks.rank]


def _all_gather(ranks: Ranks, x):
    import mlx.core as mx

    try:
        out = mx.distributed.all_gather(x, group=ranks.group)
        mx.eval(out)
    except RuntimeError as e:
        raise PeerLost(f"{ranks}: lost a peer in a collective ({' '.join(str(e).split())}): another rank ended or "
                       f"its link broke; nothing was written") from None
    return np.array(out)


def gather(ranks: Ranks, obj) -> list | None:
    """Every rank's JSON-able `obj`, in rank order, on rank 0; None on the others."""
    import mlx.core as mx

    data = np.frombuffer(json.dumps(obj, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    sizes = _all_gather(ranks, mx.array([data.size], dtype=mx.int64)).tolist()
    padded = np.zeros(max(sizes), dtype=np.uint8)
    padded[:data.size] = data
    rows = _all_gather(ranks, mx.array(padded)).reshape(ranks.size, -1)
    if ranks.rank != 0:
        return None
    return [json.loads(row[:n].tobytes().decode("utf-8")) for row, n in zip(rows, sizes)]


class Progress:
    """A rank's share done, logged at each tenth of it: the launcher forwards every rank's stderr,
    so the ranks' progress lines, side by side, cover the whole run."""

    def __init__(self, ranks: Ranks, total: int, unit: str):
        self.ranks, self.total, self.unit, self.done, self.said = ranks, total, unit, 0, 0

    def add(self, n: int) -> None:
        self.done += n
        tenth = self.done * 10 // max(self.total, 1)
        if tenth > self.said:
            self.said = tenth
            log.info("rank %d of %d: %d/%d %s", self.ranks.rank, self.ranks.size, self.done, self.total, self.unit)


def counted(fn, progress: Progress | None):
    """`fn` (a batch → its results), its batches counted by `progress` where there is one."""
    if progress is None:
        return fn

    def run(batch):
        out = fn(batch)
        progress.add(len(batch))
        return out

    return run


# --- transcribe ------------------------------------------------------------------

def split_inputs(ranks: Ranks, inputs: list[str], stream: bool) -> list[int]:
    """This rank's inputs (positions) of `transcribe`'s: files only, each rank reading its own."""
    if stream:
        raise ValueError("--stream prints an input's text as it is decoded, on the rank that decodes it; under "
                         "a launcher rank 0 prints every text once gathered: drop --stream")
    for name in inputs:
        if name == "-" or is_stream(Path(name)):  # a missing file: reported by the rank that gets it
            raise ValueError(f"{'standard input' if name == '-' else name} is a stream: under a launcher each rank "
                             f"reads its inputs by path, so a stream cannot be split; save it to a file first")
    return share(ranks, inputs)


def _error(e: Exception) -> dict:
    kind = "AudioError" if isinstance(e, AudioError) else "ValueError" if isinstance(e, ValueError) \
        else "OSError" if isinstance(e, OSError) else type(e).__name__
    return {"error": str(e), "kind": kind}


def _raised(row: dict) -> Exception:
    """An input's error as its rank raised it, of the kind the command reports and goes on after."""
    kind = {"AudioError": AudioError, "ValueError": ValueError, "OSError": OSError}.get(row["kind"])
    return kind(row["error"]) if kind else RuntimeError(f"{row['kind']}: {row['error']}")


def outcomes(ranks: Ranks, mine: list[int], results) -> list[tuple[int, dict | Exception]]:
    """(input position, result or its error) of every rank, in input order, on rank 0 ([] on the
    others), from this rank's `results`: (position in `mine`, result or error) as they come."""
    rows, progress, started = [], Progress(ranks, len(mine), "inputs"), time.perf_counter()
    for k, r in results:
        rows.append({"i": mine[k], **({"error": _error(r)} if isinstance(r, Exception) else {"result": r})})
        progress.add(1)
    every = gather(ranks, {"rows": rows, "host": socket.gethostname(), "seconds": time.perf_counter() - started})
    if every is None:
        return []
    for rank, got in enumerate(every):
        log.info("transcribe: rank %d on %s: %d inputs in %.1f s", rank, got["host"], len(got["rows"]), got["seconds"])
    every = [got["rows"] for got in every]
    merged = sorted((row for got in every for row in got), key=lambda row: row["i"])
    return [(row["i"], _raised(row["error"]) if "error" in row else row["result"]) for row in merged]


# --- cer -------------------------------------------------------------------------

def cer_results(ranks: Ranks, results: dict[str, dict[str, dict]], seconds: float) -> tuple[dict | None, list]:
    """The whole run's {backend: {id: row}} on rank 0 from each rank's own, and per rank what it
    did (utterances, audio seconds, wall seconds); (None, []) on the others."""
    mine = {"results": results, "seconds": round(seconds, 3), "host": socket.gethostname()}
    every = gather(ranks, mine)
    if every is None:
        return None, []
    merged: dict[str, dict[str, dict]] = {b: {} for b in results}
    per_rank = []
    for rank, got in enumerate(every):
        for b, rows in got["results"].items():
            merged[b].update(rows)
        rows = next(iter(got["results"].values()), {})
        per_rank.append({"rank": rank, "host": got["host"], "utterances": len(rows),
                         "audio_s": round(sum(r["audio_s"] for r in rows.values()), 3), "seconds": got["seconds"]})
        log.info("cer: rank %d on %s: %d utterances, %.1f s of audio in %.1f s", rank, got["host"], len(rows),
                 per_rank[-1]["audio_s"], got["seconds"])
    return merged, per_rank
