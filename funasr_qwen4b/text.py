"""Text as CER and WER score it: the normalisation (stated in every report as
NORMALISATION) and the edit counts, computed by jiwer."""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from dataclasses import dataclass
from importlib.metadata import version

import jiwer

TAG_RE = re.compile(r"<\|[^|<>]*\|>")  # SenseVoice's <|zh|>, <|NEUTRAL|>, <|Speech|>, <|woitn|>, ...
_APOSTROPHES = "'\u2019\u02bc"
NORMALISATION = (
    "SenseVoice tags <|...|> stripped; Unicode NFKC (full-width → half-width); lowercase; "
    "apostrophes deleted, other punctuation (Unicode P*, CJK and ASCII, and ASCII symbols) replaced by a space; "
    "CER: every whitespace removed, scored per character; WER (English utterances): whitespace collapsed, "
    "scored per word"
)


def strip_tags(text: str) -> str:
    return TAG_RE.sub("", text).strip()


@functools.cache  # called per character of every text scored or trained on
def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize(text: str) -> str:
    """Normalised text with single spaces between words (what WER scores)."""
    text = TAG_RE.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join("" if ch in _APOSTROPHES else " " if _is_punct(ch) else ch for ch in text)
    return " ".join(text.split())


def cer_text(text: str) -> str:
    """What CER scores: the normalised text without any whitespace."""
    return normalize(text).replace(" ", "")


@dataclass
class Counts:
    """Edit counts of a hypothesis against a reference (jiwer's alignment)."""

    sub: int = 0
    dele: int = 0
    ins: int = 0
    ref: int = 0  # reference length (characters or words)

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        """errors / reference length; an empty reference scores 0 if the hypothesis is empty too, else 1."""
        if self.ref == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.ref

    def __add__(self, o: "Counts") -> "Counts":
        return Counts(self.sub + o.sub, self.dele + o.dele, self.ins + o.ins, self.ref + o.ref)

    def to_dict(self) -> dict:
        return {"rate": self.rate, "errors": self.errors, "sub": self.sub, "del": self.dele,
                "ins": self.ins, "ref": self.ref}


def scoring() -> str:
    """What computes the counts, as reports state it."""
    return f"jiwer {version('jiwer')}"


def _counts(ref: list[str], hyp: list[str], process) -> Counts:
    # jiwer 3 refuses empty strings; against an empty side no alignment is needed:
    # each reference symbol is a deletion, each hypothesis symbol an insertion.
    if not ref or not hyp:
        return Counts(0, len(ref), len(hyp), len(ref))
    o = process()
    return Counts(o.substitutions, o.deletions, o.insertions, len(ref))


def char_counts(ref: str, hyp: str) -> Counts:
    """CER counts of raw texts (both normalised here)."""
    r, h = cer_text(ref), cer_text(hyp)
    return _counts(list(r), list(h), lambda: jiwer.process_characters(r, h))


def word_counts(ref: str, hyp: str) -> Counts:
    """WER counts of raw texts (both normalised here)."""
    r, h = normalize(ref), normalize(hyp)
    return _counts(r.split(), h.split(), lambda: jiwer.process_words(r, h))


def covered(ref: str, hyp: str) -> list[bool]:
    """For each character of `ref`, whether the edit-distance alignment (jiwer's, as CER counts
    it) matches it with the same character of `hyp`."""
    hits = [False] * len(ref)
    if not ref or not hyp:
        return hits
    for chunk in jiwer.process_characters(ref, hyp).alignments[0]:
        if chunk.type == "equal":
            hits[chunk.ref_start_idx:chunk.ref_end_idx] = [True] * (chunk.ref_end_idx - chunk.ref_start_idx)
    return hits
