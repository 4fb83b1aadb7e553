"""Where long audio is cut before the LLM: speech segments, each decoded as its own utterance.

FunASR runs its LLM recognisers on the FSMN VAD's segments (`vad_model="fsmn-vad"`, at most
`max_single_segment_time` each): an LLM decoder asked for far more speech than the utterances
it was trained on stops early. The segmenters:

- `fsmn`: the bundle's `vad` component (FunASR's FSMN VAD, funasr_qwen4b.vad), as FunASR runs it;
- `energy`: without a VAD, the loud stretches between pauses of PAUSE_SECONDS or more
  (audio.speech_regions);
- `off`: no segmentation, only pieces of at most `max_seconds` cut at the quietest points
  (audio.split_points), with the silence kept.

Audio no longer than `max_segment_seconds` is one utterance, whole, as the models were
trained (a sentence with silence around it). Longer audio is cut at the speech either
segmenter finds, and its segments longer than the limit are cut again at their quietest
points (split_points), so no piece is longer than the limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .audio import PAD_SECONDS, SAMPLE_RATE, speech_regions, split_points

VAD_MODES = ("auto", "fsmn", "energy", "off")
# What the model kinds were trained on when the bundle records nothing: Fun-ASR-Nano is run by
# FunASR on VAD segments of at most 30 s (its published example's max_single_segment_time);
# SenseVoice-based qwen4b models were trained on single utterances, a few to about 20 s.
MAX_SEGMENT_SECONDS = {"qwen4b": 20.0, "funasr-nano": 30.0}
MIN_SEGMENT_SECONDS = 1.0  # shorter limits would cut words apart
# A pause that ends an utterance: shorter ones (a comma's) stay inside it. FunASR's FSMN VAD waits
# longer (800 ms of end silence); the energy rule, without its model, cuts at half a second.
PAUSE_SECONDS = 0.5


def vad_mode(value) -> str:
    """A segmenter's name, checked."""
    if value not in VAD_MODES:
        raise ValueError(f"vad must be one of {', '.join(VAD_MODES)}, got {value!r}")
    return value


def max_segment_seconds(value) -> float:
    """The longest segment, in seconds: a finite number of at least MIN_SEGMENT_SECONDS."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < MIN_SEGMENT_SECONDS:
        raise ValueError(f"max_segment_seconds must be a finite number of at least {MIN_SEGMENT_SECONDS:g}, "
                         f"got {value!r}")
    return float(value)


def cut(samples: np.ndarray, max_seconds: float, find: Callable[[np.ndarray, float], list[tuple[int, int]]],
        sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """The pieces of `samples`: the whole when it is at most `max_seconds` long, else the speech
    `find(samples, max_seconds)` gives (energy_spans, or a VAD's through ms_spans)."""
    if samples.size <= max_seconds * sr:
        return [(0, samples.size)]
    return find(samples, max_seconds)


def limited(spans: list[tuple[int, int]], samples: np.ndarray, max_seconds: float,
            sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """`spans` (sample ranges) with each one longer than `max_seconds` cut at its quietest points."""
    out = []
    for a, b in spans:
        cuts = [a + c for c in split_points(samples[a:b], max_seconds, sr)]
        out += list(zip([a, *cuts], [*cuts, b]))
    return out


def energy_spans(samples: np.ndarray, max_seconds: float, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """The loud stretches between pauses of at least PAUSE_SECONDS (speech_regions, closer ones
    joined while the whole stays within `max_seconds`) as sample ranges, at most `max_seconds` each."""
    spans: list[list[int]] = []
    for s, e in speech_regions(samples, sr):
        a, b = round(s * sr), min(round(e * sr), samples.size)
        # regions are padded by PAD_SECONDS each side: their gap is the pause less both pads
        if spans and a - spans[-1][1] < (PAUSE_SECONDS - 2 * PAD_SECONDS) * sr and b - spans[-1][0] <= max_seconds * sr:
            spans[-1][1] = b
        elif b > a:
            spans.append([a, b])
    return limited([(a, b) for a, b in spans], samples, max_seconds, sr)


def ms_spans(segments: list[tuple[int, int]], samples: np.ndarray, max_seconds: float,
             sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """A VAD's [start_ms, end_ms) segments as sample ranges inside the audio, at most `max_seconds` each."""
    spans = [(max(0, s * sr // 1000), min(samples.size, e * sr // 1000)) for s, e in segments]
    return limited([(a, b) for a, b in spans if b > a], samples, max_seconds, sr)


def contiguous(samples: np.ndarray, max_seconds: float, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """`off`: the whole audio in pieces of at most `max_seconds` (0: one piece), silence included."""
    bounds = [0, *(split_points(samples, max_seconds, sr) if max_seconds else []), samples.size]
    return list(zip(bounds, bounds[1:]))
