"""espeak-ng speech for the demonstration model, the speaker settings that separate
training from the held-out test sets, and the non-speech sounds (silence, noise, hum,
beeps, clicks) it learns to answer with nothing.

Held-out utterances use voice variants, speeds and pitches that never occur in
training, so a held-out CER measures more than memorised sentences.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
# espeak-ng's plain `cmn` voice reads its pinyin through English rules; this one speaks Mandarin.
ZH_VOICE = "cmn-latn-pinyin"
EN_ACCENTS = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan"]
EN_ACCENTS_HELDOUT = ["en-gb-x-gbcwmd"]
# Training variants: the first model's 24, then most of espeak-ng's others (not the whispering,
# croaking and robot ones, nor those held out).
VARIANTS = ["", "m1", "m2", "m4", "m6", "m7", "f1", "f3", "f5", "klatt", "klatt2", "klatt4", "adam",
            "Andrea", "benjamin", "caleb", "david", "ed", "linda", "max", "paul", "steph", "john", "iven",
            "m5", "m8", "klatt5", "Alicia", "Andy", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique",
            "Hugo", "Jacky", "Marco", "Mario", "Michael", "Mike", "Nguyen", "RicishayMax", "anika", "announcer",
            "antonio", "aunty", "belinda", "boris", "edward", "grandma", "grandpa", "gustave", "iven2", "iven3",
            "iven4", "kaukovalta", "marcelo", "michel", "miguel", "pablo", "pedro", "quincy", "rob", "sandro",
            "shelby", "steph2", "steph3", "travis", "victor", "zac"]
VARIANTS_HELDOUT = ["m3", "f2", "f4", "klatt3", "Alex", "robert"]
VARIANTS_OPEN = VARIANTS_HELDOUT + ["Annie", "Lee", "norbert", "edward2"]  # the open sets' voices
SPEEDS = [120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230]  # words per minute
SPEEDS_HELDOUT = [145, 175, 205]
PITCHES = [25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75]
PITCHES_HELDOUT = [42, 52, 62]
# Generated voice variants (training only), drawn per name: vocal-tract length (all formants
# together), now and then one formant moved or weakened on its own, the spectrum's tilt (tone),
# pitch range, intonation, voicing, breath and roughness. On the open sets two held-out voices that
# move single formants and reshape the spectrum made about half the Mandarin errors and two
# thirds of the English ones (training/analysis.json, by_voice): training must hear such voices.
# Their settings are drawn broadly, never copied from a held-out voice. Named fq0000, fq0001, ...
GENERATED_PREFIX = "fq"
GENERATED_MAX = 200  # espeak-ng's list of voices holds 349; its own take about 111 of them
VARIANT_PITCH_RANGE = (15, 100)  # Hz from a variant's lowest pitch to its highest


@cache  # drawn from for every training clip
def generated_variants(n: int) -> tuple[str, ...]:
    if not 0 <= n <= GENERATED_MAX:
        raise ValueError(f"generated voices: {n} is not within 0..{GENERATED_MAX}")
    return tuple(f"{GENERATED_PREFIX}{i:04d}" for i in range(n))


def variant_text(name: str) -> str:
    """A generated variant's espeak-ng voice file, drawn from its name alone."""
    r = random.Random(f"espeak-variant-{name}")
    female = r.random() < 0.5
    base = r.randint(130, 210) if female else r.randint(65, 135)
    tract = r.uniform(1.0, 1.16) if female else r.uniform(0.86, 1.03)
    lines = ["language variant", f"name {name}", f"gender {'female' if female else 'male'}",
             f"pitch {base} {base + r.randint(*VARIANT_PITCH_RANGE)}"]
    for k in range(9):
        freq = 100.0
        if 1 <= k <= 5:
            freq = 100 * tract * (r.uniform(0.7, 1.5) if k > 1 and r.random() < 0.2 else r.uniform(0.94, 1.06))
        height = r.randint(0, 60) if k > 2 and r.random() < 0.15 else r.randint(65, 135)
        lines.append(f"formant {k} {round(freq)} {height} {r.randint(60, 170)}")
    lines += [f"voicing {r.randint(55, 115)}", f"consonants {r.randint(75, 135)} {r.randint(75, 135)}",
              f"flutter {r.randint(0, 40)}", f"roughness {r.choice([0, 0, 0, 1, 2, 3])}"]
    if r.random() < 0.4:  # bass, middle and treble: frequency and level of each
        lines.append(f"tone {r.randint(300, 800)} {r.randint(30, 255)} {r.randint(900, 1600)} {r.randint(30, 255)} "
                     f"{r.randint(2000, 5000)} {r.randint(30, 255)}")
    if r.random() < 0.3:
        lines.append(f"intonation {r.randint(1, 4)}")
    if r.random() < 0.3:
        lines.append("breath " + " ".join(str(r.randint(0, 4)) for _ in range(8)))
    return "\n".join(lines) + "\n"


@cache
def espeak_data() -> str:
    """A data directory (--path) that holds espeak-ng's own data and the generated variants:
    made once a machine, beside espeak-ng's data as `espeak-ng --version` names it (the staged
    copy exports ESPEAK_DATA_PATH, which that line follows)."""
    line = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True).stdout
    src = Path(line.split("Data at:", 1)[1].strip())
    texts = [(name, variant_text(name)) for name in generated_variants(GENERATED_MAX)]
    key = hashlib.sha256(f"{src}\n".encode() + "".join(t for _, t in texts).encode()).hexdigest()[:12]
    dest = Path(tempfile.gettempdir()) / f"fq-espeak-{key}"
    if dest.is_dir():
        return str(dest)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    data = tmp / "espeak-ng-data"
    data.mkdir()
    for entry in src.iterdir():
        if entry.name not in ("voices", "lang"):
            (data / entry.name).symlink_to(entry)
    # espeak-ng lists at most 349 voices and variants: only the two languages' voices go in.
    for voice in [*(src / "lang").glob("gmw/en*"), *(src / "lang").glob("sit/cmn*")]:
        (data / "lang" / voice.parent.name).mkdir(parents=True, exist_ok=True)
        (data / "lang" / voice.parent.name / voice.name).symlink_to(voice)
    (data / "voices" / "!v").mkdir(parents=True)
    for variant in (src / "voices" / "!v").iterdir():
        (data / "voices" / "!v" / variant.name).symlink_to(variant)
    for name, text in texts:
        (data / "voices" / "!v" / name).write_text(text, encoding="utf-8")
    try:
        os.rename(tmp, dest)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


@dataclass(frozen=True)
class Speaker:
    voice: str  # espeak-ng voice[+variant]
    speed: int
    pitch: int

    def to_dict(self) -> dict:
        return asdict(self)


def draw_speaker(lang: str, r: random.Random, heldout: bool, variants: list[str] | None = None,
                 generated: tuple[int, float] = (0, 0.0)) -> Speaker:
    """A speaker; `generated` (count, share): that share of training speakers get one of the
    first `count` generated variants instead of a named one."""
    variants = variants or (VARIANTS_HELDOUT if heldout else VARIANTS)
    base = ZH_VOICE if lang == "zh" else r.choice(EN_ACCENTS_HELDOUT + EN_ACCENTS if heldout else EN_ACCENTS)
    count, share = generated
    variant = r.choice(generated_variants(count)) if count and r.random() < share else r.choice(variants)
    return Speaker(f"{base}+{variant}" if variant else base,
                   r.choice(SPEEDS_HELDOUT if heldout else SPEEDS), r.choice(PITCHES_HELDOUT if heldout else PITCHES))


def synthesize(text: str, spk: Speaker) -> np.ndarray:
    """espeak-ng → float32 mono at 16 kHz."""
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        path = [f"--path={espeak_data()}"] if spk.voice.partition("+")[2].startswith(GENERATED_PREFIX) else []
        subprocess.run(["espeak-ng", *path, "-v", spk.voice, "-s", str(spk.speed), "-p", str(spk.pitch), "-w", str(wav),
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


NONSPEECH = ("silence", "white", "pink", "brown", "hum", "beeps", "clicks")


@dataclass(frozen=True)
class Sound:
    """A clip with no speech in it, made from its fields alone."""

    kind: str  # one of NONSPEECH
    seconds: float
    level_db: float  # RMS in dBFS (silence is digital zero)
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def draw_sound(r: random.Random, kind: str | None = None) -> Sound:
    return Sound(kind or r.choice(NONSPEECH), round(r.uniform(0.5, 6.0), 2), round(r.uniform(-60.0, -15.0), 1),
                 r.randrange(2**31))


def nonspeech(s: Sound) -> np.ndarray:
    """float32 mono at 16 kHz."""
    rng = np.random.default_rng(s.seed)
    n = int(s.seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if s.kind == "silence":
        return np.zeros(n, np.float32)
    if s.kind in ("white", "pink", "brown"):
        x = rng.standard_normal(n)
        if s.kind != "white":  # power falling as 1/f (pink) or 1/f^2 (brown)
            spec = np.fft.rfft(x)
            f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 10.0)
            x = np.fft.irfft(spec / f ** (0.5 if s.kind == "pink" else 1.0), n)
    elif s.kind == "hum":  # mains hum: 50 or 60 Hz and a few harmonics
        base = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.1, 1.0) * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
                for k in range(1, 6))
    elif s.kind == "beeps":  # a tone switched on and off
        gate = np.repeat(rng.uniform(size=max(1, n // 1600) + 1) < 0.5, 1600)[:n]
        x = np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * gate
    else:  # clicks: sparse decaying impulses
        x = np.zeros(n)
        for at in rng.integers(0, n, max(1, int(s.seconds * rng.uniform(1, 8)))):
            m = min(400, n - at)
            x[at:at + m] += rng.uniform(-1, 1) * np.exp(-np.arange(m) / 40.0)
    rms = float(np.sqrt(np.mean(x ** 2))) or 1.0
    return (x * (10 ** (s.level_db / 20) / rms)).astype(np.float32)
