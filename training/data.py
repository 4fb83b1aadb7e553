"""The demonstration model's data: seeded sentences, speakers and non-speech sounds,
espeak-ng audio, augmentation, and the committed held-out test sets.

Run:  python -m training.data               # write the held-out sets (datasets/{zh,en}_heldout, datasets/{zh,en}_open)
      python -m training.data --check       # regenerate in memory, compare with the committed files

Two kinds of held-out set:
- zh_heldout/en_heldout: template sentences never trained on (the first model's sets, unchanged);
- zh_open/en_open: compositions of numbers, dates, domain words and word runs whose every
  adjacent pair of pieces occurs in no training sentence (test.jsonl), and non-speech clips
  whose transcript is empty (nospeech.jsonl).
Both are spoken with voice variants, speeds and pitches that training never uses.

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
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import corpus, speech

ROOT = Path(__file__).resolve().parent.parent
LANGS = ("zh", "en")
HELDOUT_DIRS = {lang: ROOT / "datasets" / f"{lang}_heldout" for lang in LANGS}
OPEN_DIRS = {lang: ROOT / "datasets" / f"{lang}_open" for lang in LANGS}
HELDOUT_NOISY = 10  # the last N speech utterances of each held-out set get white noise
HELDOUT_SNR_DB = 20.0
# The training mix (template share, word-sequence share) the open sets' candidates were checked
# against when they were committed (corpus.open_heldout's probe). Fixed here, so that changing
# the training mix changes the training text only, never the committed open sets.
OPEN_PROBE_SHARES = (0.25, 0.45)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the data; stored in the checkpoint's config."""

    seed: int = 20261124
    # speech utterances: about what a GPU machine's CPUs make during a fitted run's two calls
    # (training/RUN.md); a fitted run trains on those made by each epoch's start
    train_per_lang: int = 190000
    heldout_per_lang: int = 50
    open_per_lang: int = 60
    open_nospeech: int = 7  # non-speech clips per open set: one of each kind
    # Of training sentences: templates (learnt early, and the old held-out sets are theirs), word
    # sequences, and the rest compositions (what the open sets are made of).
    # Templates are learnt (0 % on their held-out sets), so fewer of them and more word sequences.
    template_share: float = 0.08
    broad_share: float = 0.46
    # Mandarin: this share of the sentences, taken from the word sequences', strings one-character
    # words together: their tones alone tell them apart (a model trained without them wrote one
    # character for both 方 and 放).
    one_char_share: float = 0.10
    # Listed words in training text drawn ∝ count**word_exponent; the held-out sets draw ∝
    # count**0.6 (corpus.WORD_EXPONENT). At 0.6 a run named the open sets' words it had heard
    # under 80 times wrong three times as often as the others (training/RUN.md); a flatter draw
    # says the rarer words more often and the frequent ones still hundreds of times.
    word_exponent: float = 0.3
    nonspeech_share: float = 0.05  # non-speech clips per speech utterance
    copies: int = 1  # augmented copies per training clip (training.features makes one)
    snr_db: tuple[float, float] = (5.0, 35.0)  # white noise, drawn per copy
    noise_prob: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 4.0)
    pad_s: float = 1.0  # up to this much silence before and after
    # Training speakers: this share get one of the first N generated voice variants
    # (speech.variant_text), the others one of espeak-ng's named ones.
    generated_voices: int = speech.GENERATED_MAX
    generated_share: float = 0.6

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """The recipe as a checkpoint or training log records it (lists for tuples); ValueError
        naming the fields it lacks (written by an older trainer)."""
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"recipe has no {', '.join(missing)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def shares(self, lang: str) -> tuple[float, float, float]:
        """corpus.train_sentence's (template, word sequence, one-character sequence) shares."""
        one_char = self.one_char_share if lang == "zh" else 0.0
        return self.template_share, self.broad_share - one_char, one_char


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    text: str  # "" for a non-speech clip
    speaker: speech.Speaker | speech.Sound


def committed_texts() -> set[str]:
    """Sentences of the other committed test sets (datasets/*/test.jsonl): never trained on."""
    out = set()
    for manifest in sorted((ROOT / "datasets").glob("*/*.jsonl")):
        if manifest.parent in (*HELDOUT_DIRS.values(), *OPEN_DIRS.values()):
            continue
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.add(json.loads(line)["text"])
    return out


@lru_cache(maxsize=4)
def texts(recipe: Recipe) -> dict[str, dict[str, list[str]]]:
    """Per language: the template held-out sentences ("heldout"), the open ones ("open") and the
    training sentences ("train"), which share no sentence with any held-out or committed set
    and hold no adjacent pair of an open sentence's pieces, nor (English) the two words that meet
    where two of its pieces do."""
    exclude = committed_texts()
    out = {}
    for lang in LANGS:
        old = corpus.heldout(lang, recipe.heldout_per_lang, recipe.seed, exclude)
        pieces, pairs = corpus.open_pieces(lang, recipe.open_per_lang, recipe.seed, OPEN_PROBE_SHARES,
                                           exclude=exclude | set(old))
        opened = [corpus.join(lang, parts) for parts in pieces]
        train = corpus.training(lang, recipe.train_per_lang, recipe.seed, recipe.shares(lang),
                                exclude | set(old) | set(opened),
                                corpus.Pairs(lang, pairs | corpus.junction_words(lang, pieces)), recipe.word_exponent)
        out[lang] = {"heldout": old, "open": opened, "train": train}
    return out


def items(recipe: Recipe) -> tuple[list[Item], list[Item]]:
    """(template held-out, training) items of both languages; training ends with its non-speech clips."""
    heldout, train, quiet = [], [], []
    for lang, t in texts(recipe).items():
        r = random.Random(f"{recipe.seed}-{lang}-speakers")
        heldout += [Item(f"{lang}_heldout_{i:03d}", lang, s, speech.draw_speaker(lang, r, True))
                    for i, s in enumerate(t["heldout"])]
        generated = (recipe.generated_voices, recipe.generated_share)
        train += [Item(f"{lang}_train_{i:05d}", lang, s, speech.draw_speaker(lang, r, False, generated=generated))
                  for i, s in enumerate(t["train"])]
        rs = random.Random(f"{recipe.seed}-{lang}-nonspeech")
        quiet += [Item(f"{lang}_nonspeech_{i:05d}", lang, "", speech.draw_sound(rs))
                  for i in range(round(recipe.nonspeech_share * recipe.train_per_lang))]
    return heldout, train + quiet


def open_items(recipe: Recipe) -> list[Item]:
    """The open sets' items: per language its speech utterances, then one non-speech clip of each kind."""
    out = []
    for lang, t in texts(recipe).items():
        r = random.Random(f"{recipe.seed}-{lang}-open-speakers")
        out += [Item(f"{lang}_open_{i:03d}", lang, s, speech.draw_speaker(lang, r, True, speech.VARIANTS_OPEN))
                for i, s in enumerate(t["open"])]
        rs = random.Random(f"{recipe.seed}-{lang}-open-nonspeech")
        out += [Item(f"{lang}_open_nospeech_{i:02d}", lang, "",
                     speech.draw_sound(rs, speech.NONSPEECH[i % len(speech.NONSPEECH)]))
                for i in range(recipe.open_nospeech)]
    return out


def synthesize(item: Item) -> np.ndarray:
    """The item's audio: espeak-ng speaking its text, or its non-speech sound."""
    if isinstance(item.speaker, speech.Sound):
        return speech.nonspeech(item.speaker)
    return speech.synthesize(item.text, item.speaker)


def synthesize_all(batch: list[Item], workers: int | None = None) -> list[np.ndarray]:
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(pool.map(synthesize, batch, chunksize=16))


def augment(x: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Gain, leading/trailing silence and white noise, drawn from `rng`."""
    x = x * np.float32(10 ** (rng.uniform(*recipe.gain_db) / 20))
    pad = lambda: np.zeros(int(rng.uniform(0, recipe.pad_s) * speech.SAMPLE_RATE), np.float32)  # noqa: E731
    x = np.concatenate([pad(), x, pad()])
    if rng.uniform() < recipe.noise_prob:
        x = speech.add_noise(x, rng.uniform(*recipe.snr_db), rng)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def heldout_audio(recipe: Recipe, batch: list[Item], audio: list[np.ndarray],
                  salt: tuple[int, ...] = ()) -> list[tuple[Item, str, np.ndarray]]:
    """Held-out clips as committed: int16, the last HELDOUT_NOISY speech clips of each language
    with noise (drawn from the seed, the clip's place and `salt`), then the non-speech clips."""
    out = []
    for lang in LANGS:
        mine = [(it, x) for it, x in zip(batch, audio) if it.lang == lang and it.text]
        for k, (it, x) in enumerate(mine):
            noisy = k >= len(mine) - HELDOUT_NOISY
            if noisy:
                x = speech.add_noise(x, HELDOUT_SNR_DB, np.random.default_rng([recipe.seed, k, len(lang), *salt]))
            out.append((it, "noise" if noisy else "clean", speech.to_int16(x)))
        out += [(it, "nonspeech", speech.to_int16(x)) for it, x in zip(batch, audio) if it.lang == lang and not it.text]
    return out


def manifest_line(it: Item, condition: str) -> dict:
    return {"id": it.id, "audio": f"{it.id}.flac", "text": it.text, "lang": it.lang, **it.speaker.to_dict(),
            "condition": condition}


def write_sets(recipe: Recipe, check: bool) -> int:
    """Write every held-out set (FLAC, test.jsonl, nospeech.jsonl), or count the files that differ."""
    import soundfile as sf

    heldout, _ = items(recipe)
    differ = 0
    for batch, dirs, salt in ((heldout, HELDOUT_DIRS, ()), (open_items(recipe), OPEN_DIRS, (1,))):
        lines: dict[Path, list[str]] = {}
        for it, condition, pcm in heldout_audio(recipe, batch, synthesize_all(batch), salt):
            path = dirs[it.lang] / f"{it.id}.flac"
            manifest = dirs[it.lang] / ("test.jsonl" if it.text else "nospeech.jsonl")
            lines.setdefault(manifest, []).append(json.dumps(manifest_line(it, condition), ensure_ascii=False))
            if check:
                same = path.exists() and np.array_equal(sf.read(str(path), dtype="int16")[0], pcm)
                differ += not same
                if not same:
                    print(f"differs: {path}", file=sys.stderr)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), pcm, speech.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        for manifest, rows in lines.items():
            text = "\n".join(rows) + "\n"
            if check:
                same = manifest.is_file() and manifest.read_text(encoding="utf-8") == text
                differ += not same
                if not same:
                    print(f"differs: {manifest}", file=sys.stderr)
            else:
                manifest.write_text(text, encoding="utf-8")
    return differ


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write (or --check) the demonstration model's held-out test sets.")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    differ = write_sets(Recipe(), args.check)
    if args.check:
        print("held-out sets: " + ("identical" if not differ else f"{differ} files differ"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
