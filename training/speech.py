"""espeak-ng speech for the demonstration model, and the speaker settings that
separate training from the held-out test sets.

Held-out utterances use voice variants, speeds and pitches that never occur in
training, so a held-out CER measures more than memorised sentences.
"""

from __future__ import annotations

import random
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
# espeak-ng's plain `cmn` voice reads its pinyin through English rules; this one speaks Mandarin.
ZH_VOICE = "cmn-latn-pinyin"
EN_ACCENTS = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan"]
EN_ACCENTS_HELDOUT = ["en-gb-x-gbcwmd"]
VARIANTS = ["", "m1", "m2", "m4", "m6", "m7", "f1", "f3", "f5", "klatt", "klatt2", "klatt4", "adam",
            "Andrea", "benjamin", "caleb", "david", "ed", "linda", "max", "paul", "steph", "john", "iven"]
VARIANTS_HELDOUT = ["m3", "f2", "f4", "klatt3", "Alex", "robert"]
SPEEDS = [130, 140, 150, 160, 170, 180, 190, 200, 210, 220]  # words per minute
SPEEDS_HELDOUT = [145, 175, 205]
PITCHES = [30, 35, 40, 45, 50, 55, 60, 65, 70]
PITCHES_HELDOUT = [42, 52, 62]


@dataclass(frozen=True)
class Speaker:
    voice: str  # espeak-ng voice[+variant]
    speed: int
    pitch: int

    def to_dict(self) -> dict:
        return asdict(self)


def draw_speaker(lang: str, r: random.Random, heldout: bool) -> Speaker:
    variants = VARIANTS_HELDOUT if heldout else VARIANTS
    base = ZH_VOICE if lang == "zh" else r.choice(EN_ACCENTS_HELDOUT + EN_ACCENTS if heldout else EN_ACCENTS)
    variant = r.choice(variants)
    return Speaker(f"{base}+{variant}" if variant else base,
                   r.choice(SPEEDS_HELDOUT if heldout else SPEEDS), r.choice(PITCHES_HELDOUT if heldout else PITCHES))


def synthesize(text: str, spk: Speaker) -> np.ndarray:
    """espeak-ng → float32 mono at 16 kHz."""
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        subprocess.run(["espeak-ng", "-v", spk.voice, "-s", str(spk.speed), "-p", str(spk.pitch), "-w", str(wav),
                        text], check=True, capture_output=True)
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    data = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        data = soxr.resample(data, rate, SAMPLE_RATE, quality="HQ")
    return data.astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    p = float(np.mean(x.astype(np.float64) ** 2)) or 1e-10
    return (x + rng.standard_normal(x.size) * np.sqrt(p / 10 ** (snr_db / 10))).astype(np.float32)
