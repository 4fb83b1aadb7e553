"""The demonstration model's data: seeded sentences and speakers, espeak-ng
audio, augmentation, and the committed held-out test sets.

Run:  python -m training.data               # write datasets/zh_heldout and datasets/en_heldout
      python -m training.data --check       # regenerate in memory, compare with the committed files

Needs espeak-ng on PATH (apt: espeak-ng); the committed sets were made with eSpeak NG 1.51.
Training audio is never committed: `python -m training.train` regenerates it from the same recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import corpus, speech

ROOT = Path(__file__).resolve().parent.parent
HELDOUT_DIRS = {"zh": ROOT / "datasets" / "zh_heldout", "en": ROOT / "datasets" / "en_heldout"}
HELDOUT_NOISY = 10  # the last N held-out utterances of each language get white noise
HELDOUT_SNR_DB = 20.0


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the data; stored in the checkpoint's config."""

    seed: int = 20261124
    train_per_lang: int = 3000
    heldout_per_lang: int = 50
    copies: int = 3  # augmented copies per training utterance (copy 0 is clean)
    snr_db: tuple[float, float] = (5.0, 35.0)  # white noise, drawn per copy
    noise_prob: float = 0.7
    gain_db: tuple[float, float] = (-12.0, 4.0)
    pad_s: float = 0.5  # up to this much silence before and after


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    text: str
    speaker: speech.Speaker


def committed_texts() -> set[str]:
    """Sentences of the other committed test sets (datasets/*/*.jsonl): never trained on."""
    out = set()
    for manifest in sorted((ROOT / "datasets").glob("*/*.jsonl")):
        if manifest.parent in HELDOUT_DIRS.values():
            continue
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.add(json.loads(line)["text"])
    return out


def items(recipe: Recipe) -> tuple[list[Item], list[Item]]:
    """(held-out, training) items of both languages."""
    exclude = committed_texts()
    heldout, train = [], []
    for lang in ("zh", "en"):
        test_s, train_s = corpus.split(lang, recipe.heldout_per_lang, recipe.train_per_lang, recipe.seed, exclude)
        r = random.Random(f"{recipe.seed}-{lang}-speakers")
        heldout += [Item(f"{lang}_heldout_{i:03d}", lang, s, speech.draw_speaker(lang, r, True))
                    for i, s in enumerate(test_s)]
        train += [Item(f"{lang}_train_{i:05d}", lang, s, speech.draw_speaker(lang, r, False))
                  for i, s in enumerate(train_s)]
    return heldout, train


def _synth(item: Item) -> np.ndarray:
    return speech.synthesize(item.text, item.speaker)


def synthesize_all(batch: list[Item], workers: int | None = None, progress: bool = True) -> list[np.ndarray]:
    workers = workers or os.cpu_count() or 1
    out = []
    with ProcessPoolExecutor(workers) as pool:
        for i, x in enumerate(pool.map(_synth, batch, chunksize=16)):
            out.append(x)
            if progress and (i + 1) % 500 == 0:
                print(f"espeak-ng: {i + 1}/{len(batch)}", file=sys.stderr, flush=True)
    return out


def augment(x: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Gain, leading/trailing silence and white noise, drawn from `rng`."""
    x = x * np.float32(10 ** (rng.uniform(*recipe.gain_db) / 20))
    pad = lambda: np.zeros(int(rng.uniform(0, recipe.pad_s) * speech.SAMPLE_RATE), np.float32)  # noqa: E731
    x = np.concatenate([pad(), x, pad()])
    if rng.uniform() < recipe.noise_prob:
        x = speech.add_noise(x, rng.uniform(*recipe.snr_db), rng)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def heldout_audio(recipe: Recipe, batch: list[Item], audio: list[np.ndarray]) -> list[tuple[Item, str, np.ndarray]]:
    """Held-out clips as committed: int16, the last HELDOUT_NOISY of each language with noise."""
    out = []
    for lang in ("zh", "en"):
        mine = [(it, x) for it, x in zip(batch, audio) if it.lang == lang]
        for k, (it, x) in enumerate(mine):
            noisy = k >= len(mine) - HELDOUT_NOISY
            if noisy:
                x = speech.add_noise(x, HELDOUT_SNR_DB, np.random.default_rng([recipe.seed, k, len(lang)]))
            out.append((it, "noise" if noisy else "clean", speech.to_int16(x)))
    return out


def manifest_line(it: Item, condition: str) -> dict:
    return {"id": it.id, "audio": f"{it.id}.flac", "text": it.text, "lang": it.lang, **it.speaker.to_dict(),
            "condition": condition}


def write_heldout(recipe: Recipe, check: bool) -> int:
    import soundfile as sf

    heldout, _ = items(recipe)
    differ, lines = 0, {lang: [] for lang in HELDOUT_DIRS}
    for it, condition, pcm in heldout_audio(recipe, heldout, synthesize_all(heldout, progress=False)):
        path = HELDOUT_DIRS[it.lang] / f"{it.id}.flac"
        lines[it.lang].append(json.dumps(manifest_line(it, condition), ensure_ascii=False))
        if check:
            same = path.exists() and np.array_equal(sf.read(str(path), dtype="int16")[0], pcm)
            differ += not same
            if not same:
                print(f"differs: {path}", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), pcm, speech.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    for lang, d in HELDOUT_DIRS.items():
        text = "\n".join(lines[lang]) + "\n"
        if check:
            differ += (d / "test.jsonl").read_text(encoding="utf-8") != text
        else:
            (d / "test.jsonl").write_text(text, encoding="utf-8")
    return differ


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write (or --check) the demonstration model's held-out test sets.")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    differ = write_heldout(Recipe(), args.check)
    if args.check:
        print("held-out sets: " + ("identical" if not differ else f"{differ} files differ"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
