"""Audio loading shared by the reference and MLX paths, and where the speech is in it.

Both paths must see bit-identical input, so loading, mono mixing and
resampling live here once. Torch- and MLX-free: numpy, soundfile, soxr (ffmpeg, where
installed, for formats libsndfile cannot read).

What no audio is, is refused before any sample is read: a rate outside MIN_RATE..MAX_RATE,
a length over the bound (MAX_AUDIO_SECONDS by default). Samples are then converted block by
block, so memory follows the 16 kHz mono output whatever the input's rate and channels.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # SenseVoice's WavFrontend expects 16 kHz input
_MAX_CHANNELS = 8  # more "channels" than this almost surely means a transposed array
# A declared rate outside these is a damaged header or a wrong argument, never audio: a 16 Hz
# header would have soxr upsample a small file a thousandfold, for minutes.
MIN_RATE, MAX_RATE = 1000, 384000
MAX_AUDIO_SECONDS = 14400.0  # 4 h: a generous default bound, checked before any sample is read
# Float samples are meant to be in [-1, 1]; processed float WAVs overshoot a little (up to
# +6 dB) and are kept as they are. Beyond that the scale is wrong (int16 values stored as
# float, a gain of 1e30): the features would be garbage, so the samples are scaled to peak 1.
MAX_PEAK = 2.0
_BLOCK = 1 << 20  # frames converted at a time: memory follows the 16 kHz output, not the input


class AudioError(ValueError):
    """Bad audio input; the message is one line: what was wrong, what to do."""


class FfmpegMissing(AudioError):
    """A format only ffmpeg reads, and no ffmpeg installed: the machine lacks a tool, the input is fine."""


# How the formats libsndfile reads begin: such a file it cannot open is damaged, not a format for ffmpeg.
_DIRECT = {b"RIFF": "WAV", b"RIFX": "WAV", b"RF64": "WAV", b"fLaC": "FLAC", b"OggS": "OGG", b"FORM": "AIFF"}


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


def check_max_seconds(max_seconds: float | None) -> None:
    """`max_seconds` is a positive number of seconds, or None (no bound)."""
    if max_seconds is None:
        return
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) \
            or not 0 < max_seconds < float("inf"):
        raise ValueError(f"max_seconds must be a positive number of seconds, or None for no bound; got {max_seconds!r}")


def _check_rate(name: str, rate) -> int:
    """The declared rate as an int, refused when it is no whole number or outside [MIN_RATE, MAX_RATE]."""
    number = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not number or not np.isfinite(rate) or rate != int(rate):
        raise AudioError(f"audio {name}: sample rate {rate!r} is not a whole number of samples per second")
    rate = int(rate)
    if rate <= 0:
        raise AudioError(f"sample_rate must be positive, got {rate}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"audio {name}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz (a damaged header "
                         f"or a wrong sample_rate); resave the file at its true rate, or pass the rate the samples "
                         f"were recorded at (e.g. 16000)")
    return rate


def _check_duration(name: str, frames: int, rate: int, max_seconds: float | None) -> None:
    """Refused from the length alone, before samples are read or converted: no work grows past the bound."""
    check_max_seconds(max_seconds)
    if max_seconds is not None and frames > max_seconds * rate:
        raise AudioError(f"audio {name} is {frames / rate:.1f} s long, over the bound of {max_seconds:g} s; cut it "
                         f"into shorter files, or raise the bound (--max-audio-seconds, or max_audio_seconds= in Python)")


def is_stream(path: Path) -> bool:
    """A FIFO, a character device or a socket: /dev/fd/N of a shell's `<(...)`, `mkfifo`."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _read_file(path: Path, max_seconds: float | None, sample_rate) -> np.ndarray:
    if is_stream(path):
        if sample_rate is not None:
            raise AudioError(f"audio {path} is encoded audio with its own rate; omit sample_rate")
        with open(path, "rb") as f:  # a stream can be read only once: whole, then decoded as bytes
            data = io.BytesIO(f.read())
        data.name = str(path)
        return read_audio(data, max_seconds=max_seconds)
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file; give the audio files inside it")
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        f = sf.SoundFile(str(path))
    except (RuntimeError, TypeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
        raise AudioError(f"cannot read audio {path}: {_one_line(exc)}; WAV or FLAC expected") from None
    if sample_rate is not None and sample_rate != f.samplerate:
        f.close()
        raise AudioError(f"audio {path} is {f.samplerate} Hz but sample_rate={sample_rate} was given; omit "
                         f"sample_rate for files")
    st = path.stat()
    _check_file_once(path, st.st_size, st.st_mtime_ns)
    return _read_checked(f, str(path), max_seconds)


def _read_checked(f: sf.SoundFile, name: str, max_seconds: float | None) -> np.ndarray:
    """An open file's audio, 16 kHz mono, its rate and length checked from the header before any
    sample is read; closes `f`."""
    with f:
        rate = _check_rate(name, f.samplerate)
        _check_duration(name, f.frames, rate, max_seconds)

        def blocks():
            f.seek(0)
            yield from f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True)

        try:
            return _mono_16k(name, blocks, rate)
        except AudioError:
            raise
        except (RuntimeError, ValueError) as exc:  # damage past the header
            raise AudioError(f"cannot read audio {name}: {_one_line(exc)}") from None


@functools.lru_cache(maxsize=256)  # one warning a file: callers may read it twice
def _check_file_once(path: Path, size: int, mtime_ns: int) -> None:
    with open(path, "rb") as f:
        warn_if_truncated(f.read(1 << 16), size, str(path))


def load_audio(source, sample_rate: int | None = None, *,
               max_seconds: float | None = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Return float32 mono samples in [-1, 1] at 16 kHz (a new C-contiguous array).

    `source` is a path readable by libsndfile, or a numpy array of samples
    shaped (frames,) or (frames, channels); for arrays `sample_rate` is required.
    Refused: a rate outside MIN_RATE..MAX_RATE, audio longer than `max_seconds` (None: no
    bound; judged from the header or the array's length, before any sample is converted),
    non-finite samples. Float samples peaking above MAX_PEAK are scaled to peak 1, with a warning.
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source), max_seconds, sample_rate)
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioError("sample_rate is required when passing a numpy array; e.g. load_audio(x, 16000)")
        rate = _check_rate("array", sample_rate)
        data = source
        if data.ndim not in (1, 2):
            raise AudioError(
                f"audio array has {data.ndim} dimensions; pass shape (frames,) or (frames, channels)"
            )
        if data.ndim == 2 and data.shape[1] > _MAX_CHANNELS and data.shape[0] <= _MAX_CHANNELS:
            raise AudioError(
                f"audio array shape {data.shape} looks like (channels, frames); pass (frames, channels), e.g. x.T"
            )
        _check_duration("array", data.shape[0], rate, max_seconds)
        if not np.issubdtype(data.dtype, np.floating):
            _int_to_float(data[:0])  # an unsupported dtype refused before any work
        return _mono_16k("array", lambda: _array_blocks(data), rate)
    raise AudioError(
        f"unsupported audio source type {type(source).__name__}; pass a file path or a numpy array"
    )


def _array_blocks(data: np.ndarray):
    """`data` as float32 blocks of (frames, channels), each a copy: the caller's array untouched."""
    for i in range(0, data.shape[0], _BLOCK):
        b = data[i:i + _BLOCK]
        b = b.astype(np.float32) if np.issubdtype(b.dtype, np.floating) else _int_to_float(b)
        yield b if b.ndim == 2 else b[:, None]


def _mono_16k(name: str, blocks, rate: int) -> np.ndarray:
    """The audio `blocks()` gives (a fresh iterator of float32 (frames, channels) blocks each call),
    checked, mixed to mono and resampled to 16 kHz, block by block: two passes, the first for
    what must be known of the whole (finite, its peak), so memory follows the output alone.
    Returns a new C-contiguous float32 array, bit for bit what one pass over the whole would give."""
    frames, peak = 0, 0.0
    for b in blocks():
        if not np.all(np.isfinite(b)):
            raise AudioError(f"audio {name} contains NaN or infinite samples; clean the input first")
        if b.size:
            frames, peak = frames + b.shape[0], max(peak, float(np.max(np.abs(b))))
    if frames == 0:
        raise AudioError(f"audio {name} is empty; provide at least one sample")
    scale = peak > MAX_PEAK
    if scale:
        log.warning("audio %s peaks at %.3g, far outside [-1, 1] (int16 values stored as float?); scaled to peak 1",
                    name, peak)
    stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ") if rate != SAMPLE_RATE else None
    out = []
    for b in blocks():
        if scale:  # before mixing, which could overflow float32 at absurd scales
            b = b / np.float32(peak)
        # Average rather than pick a channel: matches common ASR frontends.
        mono = np.ascontiguousarray(b.mean(axis=1, dtype=np.float32) if b.shape[1] > 1 else b[:, 0])
        out.append(stream.resample_chunk(mono, last=False) if stream else mono)
    if stream:
        out.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


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


def _ffmpeg(source: Path | bytes, name: str, reason: str, max_seconds: float | None) -> np.ndarray:
    """What libsndfile cannot read (M4A, AAC, video containers, ...), decoded by ffmpeg to 16 kHz mono.
    Containers do not reliably say their length, so ffmpeg stops decoding 1 s past `max_seconds`
    and the length is judged on what it gave: the work stays bounded all the same."""
    exe = shutil.which("ffmpeg")
    data = source if isinstance(source, bytes) else None
    if exe is None:
        if data is not None:
            head = data[:4]
        else:
            with open(source, "rb") as f:
                head = f.read(4)
        if head in _DIRECT:
            raise AudioError(f"cannot read audio {name} ({reason}): it begins as a {_DIRECT[head]} file does but is "
                             f"damaged, or in an encoding libsndfile lacks; export it again as PCM WAV or FLAC")
        raise FfmpegMissing(f"cannot read audio {name} ({reason}); WAV, FLAC, OGG and MP3 are read directly, other "
                            "formats (M4A, AAC, ...) need ffmpeg, which is not installed (apt install ffmpeg, brew "
                            "install ffmpeg)")
    bound = [] if max_seconds is None else ["-t", f"{max_seconds + 1:.3f}"]
    cmd = [exe, "-nostdin", "-v", "error", "-i", "pipe:0" if data is not None else str(source),
           *bound, "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]
    r = subprocess.run(cmd, input=data, capture_output=True)
    if r.returncode != 0 or not r.stdout:
        why = " ".join(r.stderr.decode(errors="replace").split())[:200] or "no audio stream"
        raise AudioError(f"cannot read audio {name}: ffmpeg: {why}")
    samples = np.frombuffer(r.stdout, dtype="<f4").copy()
    _check_duration(name, samples.size, SAMPLE_RATE, max_seconds)
    return samples


def read_audio(audio, sample_rate: int | None = None, *,
               max_seconds: float | None = MAX_AUDIO_SECONDS) -> np.ndarray:
    """16 kHz mono float32 from a path, samples with their `sample_rate`, or encoded audio as
    bytes or a binary file-like (an open file, an upload); through ffmpeg where libsndfile
    cannot read the format. Bounds and checks as load_audio's."""
    check_max_seconds(max_seconds)
    if isinstance(audio, (bytes, bytearray, memoryview)) or hasattr(audio, "read"):
        name = str(getattr(audio, "name", "audio bytes"))
        data = audio.read() if hasattr(audio, "read") else bytes(audio)
        if not isinstance(data, bytes):
            raise AudioError(f"{name} gave {type(data).__name__}, not bytes; open audio files in binary mode ('rb')")
        if sample_rate is not None:
            raise AudioError(f"{name} is encoded audio with its own rate; omit sample_rate (it is for sample arrays)")
        try:
            f = sf.SoundFile(io.BytesIO(data))
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            return _from_ffmpeg(data, name, " ".join(str(e).split()), max_seconds)
        return _read_checked(f, name, max_seconds)
    if isinstance(audio, (str, os.PathLike)) and Path(audio).is_file():
        try:
            sf.info(str(audio))
        except (sf.LibsndfileError, RuntimeError) as e:
            if sample_rate is not None:
                raise AudioError(f"audio {audio} is a file; omit sample_rate for files") from None
            return _from_ffmpeg(Path(audio), str(audio), " ".join(str(e).split()), max_seconds)
    return load_audio(audio, sample_rate, max_seconds=max_seconds)


def _from_ffmpeg(source: Path | bytes, name: str, reason: str, max_seconds: float | None) -> np.ndarray:
    samples = _ffmpeg(source, name, reason, max_seconds)
    return _mono_16k(name, lambda: _array_blocks(samples), SAMPLE_RATE)


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
