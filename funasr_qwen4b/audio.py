"""Audio loading shared by the reference and MLX paths, and where the speech is in it.

Both paths must see bit-identical input, so loading, mono mixing and
resampling live here once. Torch- and MLX-free: numpy, soundfile, soxr (ffmpeg, where
installed, for formats libsndfile cannot read).
"""

from __future__ import annotations

import functools
import logging
import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # SenseVoice's WavFrontend expects 16 kHz input
_MAX_CHANNELS = 8  # more "channels" than this almost surely means a transposed array


class AudioError(ValueError):
    """Bad audio input; the message is one line: what was wrong, what to do."""


def _one_line(text: object) -> str:
    # libsndfile reasons can span lines; the message must stay one line.
    return " ".join(str(text).split())


def _int_to_float(x: np.ndarray) -> np.ndarray:
    # Same scaling as soundfile's float reads, so arrays and files agree.
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2**31).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    raise AudioError(
        f"unsupported sample dtype {x.dtype}; pass float32/float64, int16, int32 or uint8 samples"
    )


def wav_shortfall(head: bytes, size: int) -> tuple[int, int] | None:
    """(bytes of samples a WAV header promises, bytes the file holds after it) when the
    header promises more than the file holds (a truncated file), else None.
    `head`: the file's first bytes (64 KiB is plenty); `size`: its length in bytes."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"data":
            held = size - (pos + 8)
            # 0 and 0xFFFFFFFF are what streaming writers leave when they cannot seek back
            return (length, held) if 0 < length < 0xFFFFFFFF and length > held else None
        pos += 8 + length + (length & 1)  # chunks are padded to an even length
    return None


def warn_if_truncated(head: bytes, size: int, name: str) -> None:
    """A WAV whose header promises more samples than it holds is read as far as it goes,
    with this warning: a cut recording still holds valid audio, but the user must know."""
    short = wav_shortfall(head, size)
    if short is not None:
        promised, held = short
        log.warning("audio %s is truncated: its header promises %d bytes of samples but the file holds %d "
                    "(%.0f%%); transcribing what is there", name, promised, held, 100 * held / promised)


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file; give the audio files inside it")
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/etc.
        raise AudioError(
            f"cannot read audio {path}: {_one_line(exc)}; WAV or FLAC expected"
        ) from None
    st = path.stat()
    _check_file_once(path, st.st_size, st.st_mtime_ns)
    return data, int(rate)


@functools.lru_cache(maxsize=256)  # one warning a file: callers may read it twice
def _check_file_once(path: Path, size: int, mtime_ns: int) -> None:
    with open(path, "rb") as f:
        warn_if_truncated(f.read(1 << 16), size, str(path))


def load_audio(source, sample_rate: int | None = None) -> np.ndarray:
    """Return float32 mono samples in [-1, 1] at 16 kHz (a new C-contiguous array).

    `source` is a path readable by libsndfile, or a numpy array of samples
    shaped (frames,) or (frames, channels); for arrays `sample_rate` is required.
    """
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        data, rate = _read_file(Path(source))
        if sample_rate is not None and int(sample_rate) != rate:
            raise AudioError(
                f"audio {name} is {rate} Hz but sample_rate={sample_rate} was given; omit sample_rate for files"
            )
    elif isinstance(source, np.ndarray):
        name = "array"
        if sample_rate is None:
            raise AudioError("sample_rate is required when passing a numpy array; e.g. load_audio(x, 16000)")
        rate = int(sample_rate)
        data = source
        if data.ndim > 2:
            raise AudioError(
                f"audio array has {data.ndim} dimensions; pass shape (frames,) or (frames, channels)"
            )
        if data.ndim == 2 and data.shape[1] > _MAX_CHANNELS and data.shape[0] <= _MAX_CHANNELS:
            raise AudioError(
                f"audio array shape {data.shape} looks like (channels, frames); pass (frames, channels), e.g. x.T"
            )
        if np.issubdtype(data.dtype, np.floating):
            data = data.astype(np.float32)  # astype copies: caller's array untouched
        else:
            data = _int_to_float(data)
    else:
        raise AudioError(
            f"unsupported audio source type {type(source).__name__}; pass a file path or a numpy array"
        )

    if rate <= 0:
        raise AudioError(f"sample_rate must be positive, got {rate}")
    if data.ndim == 2:
        # Average rather than pick a channel: matches common ASR frontends.
        data = data.mean(axis=1, dtype=np.float32)
    if data.size == 0:
        raise AudioError(f"audio {name} is empty; provide at least one sample")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"audio {name} contains NaN or infinite samples; clean the input first")

    if rate != SAMPLE_RATE:
        data = soxr.resample(data, rate, SAMPLE_RATE, quality="HQ")
    # Every branch above already produced a fresh array, never the caller's.
    return np.ascontiguousarray(data, dtype=np.float32)


def split_points(samples: np.ndarray, max_seconds: float, sr: int = SAMPLE_RATE) -> list[int]:
    """Cut points that keep every piece at most `max_seconds` long, each at the
    quietest 100 ms (by RMS, 10 ms hop) of the last half of the allowed span."""
    limit = int(max_seconds * sr)
    win, hop = sr // 10, sr // 100
    cuts, start = [], 0
    while samples.size - start > limit:
        lo, hi = start + limit // 2, start + limit - win
        frames = np.lib.stride_tricks.sliding_window_view(samples[lo:hi + win], win)[::hop]
        energy = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
        cut = lo + int(np.argmin(energy)) * hop + win // 2
        cuts.append(cut)
        start = cut
    return cuts


def _ffmpeg(source: Path | bytes, name: str, reason: str) -> np.ndarray:
    """What libsndfile cannot read (M4A, AAC, video containers, ...), decoded by ffmpeg to 16 kHz mono."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"cannot read audio {name} ({reason}); WAV, FLAC, OGG and MP3 are read directly, other "
                         "formats (M4A, AAC, ...) need ffmpeg, which is not installed (apt install ffmpeg, brew "
                         "install ffmpeg)")
    data = source if isinstance(source, bytes) else None
    cmd = [exe, "-nostdin", "-v", "error", "-i", "pipe:0" if data is not None else str(source),
           "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]
    r = subprocess.run(cmd, input=data, capture_output=True)
    if r.returncode != 0 or not r.stdout:
        why = " ".join(r.stderr.decode(errors="replace").split())[:200] or "no audio stream"
        raise AudioError(f"cannot read audio {name}: ffmpeg: {why}")
    return np.frombuffer(r.stdout, dtype="<f4").copy()


def read_audio(audio, sample_rate: int | None = None) -> np.ndarray:
    """16 kHz mono float32 from a path, samples with their `sample_rate`, or encoded audio as
    bytes or a binary file-like (an open file, an upload); through ffmpeg where libsndfile
    cannot read the format."""
    if isinstance(audio, (bytes, bytearray, memoryview)) or hasattr(audio, "read"):
        name = str(getattr(audio, "name", "audio bytes"))
        data = audio.read() if hasattr(audio, "read") else bytes(audio)
        if not isinstance(data, bytes):
            raise AudioError(f"{name} gave {type(data).__name__}, not bytes; open audio files in binary mode ('rb')")
        if sample_rate is not None:
            raise AudioError(f"{name} is encoded audio with its own rate; omit sample_rate (it is for sample arrays)")
        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            return load_audio(_ffmpeg(data, name, " ".join(str(e).split())), SAMPLE_RATE)
        return load_audio(samples, rate)
    if isinstance(audio, (str, os.PathLike)) and Path(audio).is_file():
        try:
            sf.info(str(audio))
        except (sf.LibsndfileError, RuntimeError) as e:
            if sample_rate is not None:
                raise AudioError(f"audio {audio} is a file; omit sample_rate for files") from None
            return load_audio(_ffmpeg(Path(audio), str(audio), " ".join(str(e).split())), SAMPLE_RATE)
    return load_audio(audio, sample_rate)


# --- where the speech is ------------------------------------------------------

FRAME, HOP = 400, 160  # 25 ms frames every 10 ms at 16 kHz, as the frontend frames
PAUSE_SECONDS = 0.3  # a quieter stretch at least this long separates two speech regions
PAD_SECONDS = 0.05  # each region widened by this much, so cues do not clip word edges
FLOOR_DBFS = -70.0  # a noise floor below this counts as this (digital silence)


def frame_levels(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 25 ms frames (every 10 ms, float64) and each one's level in dBFS."""
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), FRAME)[::HOP]
    return frames, 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)


def speech_regions(samples: np.ndarray, sr: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """(start, end) seconds of the loud stretches: frames above a level a quarter of the way
    from the noise floor (10th percentile) to the loudest frame, pauses shorter than
    PAUSE_SECONDS closed, each region padded by PAD_SECONDS."""
    duration = samples.size / sr
    if samples.size < FRAME:
        return [(0.0, duration)] if samples.size else []
    db = frame_levels(samples)[1]
    floor = max(float(np.percentile(db, 10)), FLOOR_DBFS)
    loud = db > floor + 0.25 * (float(db.max()) - floor)
    edges = np.flatnonzero(np.diff(np.r_[0, loud.astype(np.int8), 0]))
    regions: list[list[float]] = []
    for a, b in zip(edges[::2], edges[1::2]):  # loud frames a..b-1
        start, end = a * HOP / sr, ((b - 1) * HOP + FRAME) / sr
        if regions and start - regions[-1][1] < PAUSE_SECONDS:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    return [(max(0.0, s - PAD_SECONDS), min(duration, e + PAD_SECONDS)) for s, e in regions]


def packaged_clip(name: str) -> Path:
    """A committed clip (datasets/clips): inside the installed package when installed from a
    wheel (pyproject's package data), else in the source checkout."""
    here = Path(__file__).resolve()
    installed, checkout = here.parent / "clips" / name, here.parents[1] / "datasets" / "clips" / name
    return installed if installed.is_file() else checkout
