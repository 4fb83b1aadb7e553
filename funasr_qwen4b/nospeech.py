"""No speech: the rule both backends apply before transcribing, on the samples alone
(so the reference and MLX agree by construction), with its thresholds stated.

A clip has no speech when
- it is shorter than MIN_SECONDS (less than a syllable), or
- its loudest 25 ms frame is below SILENCE_DBFS (digital silence, hum-free room tone), or
- its loud frames are noise-like: their median spectral flatness (geometric over
  arithmetic mean of the power spectrum) is above NOISE_FLATNESS. White noise has a
  flatness near 0.56 whatever its level; voiced speech stays well below 0.3.
"""

from __future__ import annotations

import numpy as np

from .audio import FRAME, SAMPLE_RATE, frame_levels

MIN_SECONDS = 0.1
SILENCE_DBFS = -60.0
NOISE_FLATNESS = 0.45
LOUD_DB = -20.0  # frames within this of the loudest one are the ones judged


def no_speech(samples: np.ndarray, sr: int = SAMPLE_RATE) -> str | None:
    """Why `samples` (mono float in [-1, 1]) hold no speech, or None when they may."""
    if samples.size < MIN_SECONDS * sr:
        return f"no speech: {1000 * samples.size / sr:.0f} ms is shorter than {1000 * MIN_SECONDS:.0f} ms"
    frames, rms_db = frame_levels(samples)
    peak = float(rms_db.max())
    if peak < SILENCE_DBFS:
        return f"no speech: silence (loudest frame {peak:.1f} dBFS < {SILENCE_DBFS:g} dBFS)"
    loud = frames[rms_db >= peak + LOUD_DB]
    power = np.abs(np.fft.rfft(loud * np.hanning(FRAME), axis=1)) ** 2 + 1e-20
    flatness = float(np.median(np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)))
    if flatness > NOISE_FLATNESS:
        return f"no speech: noise (spectral flatness {flatness:.2f} > {NOISE_FLATNESS:g})"
    return None
