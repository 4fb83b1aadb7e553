"""Mandarin text as the syllables espeak-ng says, each with its tone ("fang2"): the targets of the
trainer's tone head (`train.Settings.tone_weight`), a CTC head on the encoder that training alone
uses, so that every Mandarin syllable, not only a one-character word's, asks the encoder for its
tone (training/RUN.md: the open sets' Mandarin errors are mostly the right syllable in another
tone).

pypinyin gives each character its dictionary tone (5: neutral); two rules then make them what
espeak-ng says, which does not apply pypinyin's: 一 keeps its first tone, and a third tone before
another third tone in the same clause is said as a second (你好: ni2 hao3). On the training text
they agree with `espeak-ng -x` on 98 % of the syllables (`tests/test_training.py`).
"""

from __future__ import annotations

import re

CLAUSE = re.compile(r"[，。：、；！？,.:;!?]")


def _clause(text: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    han = "".join(ch for ch in text if "\u4e00" <= ch <= "\u9fff")
    said = [p if ch != "一" else "yi1" for ch, p in
            zip(han, lazy_pinyin(han, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda x: ["?"] * len(x)))]
    return [p[:-1] + "2" if p[-1] == "3" and k + 1 < len(said) and said[k + 1][-1] == "3" else p
            for k, p in enumerate(said) if p[-1].isdigit()]


def syllables(text: str) -> list[str]:
    """The toned syllables of `text`'s Chinese characters, clause by clause."""
    return [p for clause in CLAUSE.split(text) for p in _clause(clause)]


def targets(texts: list[str]) -> tuple[list[list[int]], list[str]]:
    """Per text its syllables as ids from 1 (0 is CTC's blank), and the syllables in id order
    (sorted: the same texts give the same ids); an empty text has none."""
    said = {t: syllables(t) for t in set(texts) if t}
    vocab = sorted({p for ps in said.values() for p in ps})
    ids = {p: k + 1 for k, p in enumerate(vocab)}
    return [[ids[p] for p in said[t]] if t else [] for t in texts], vocab
