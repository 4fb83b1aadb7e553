"""The CTC guard: SenseVoice's CTC transcript of a piece checks the LLM's text of it.

An LLM decoder can stop early (given more speech than it was trained on) while the CTC head,
which reads every frame, still spells the rest. Both texts are reduced to their letters and
digits, lowercased (ctc.letters), and aligned by edit distance (text.covered); when the LLM's
text covers less than COVERAGE of the CTC transcript's characters, the piece is flagged. The
characters it leaves out at the end, with their CTC frame times (ctc.spike_times), say where
the speech it did not transcribe begins: when that end is long enough to say the decoder
stopped early (TAIL_SHARE), `retry` decodes that span again as its own piece,
which is guarded in turn (at most MAX_RETRIES times a piece).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ctc
from ..text import covered

GUARD_MODES = ("off", "warn", "retry")
COVERAGE = 0.75  # below this share of the CTC transcript's characters the LLM's text is flagged
MIN_CHARS = 6  # a CTC transcript shorter than this is too short to judge
MIN_RETRY_SECONDS = 0.3  # a shorter tail is not worth a decoding
# The end left uncovered, as a share of the CTC transcript's characters, that says the decoder
# stopped early; below it the texts disagree along the way (both models' errors, measured on the
# demonstration model's open sets), which a second decoding does not mend.
TAIL_SHARE = 0.4
MAX_RETRIES = 4  # tails decoded again for one piece, each guarded in turn


def guard_mode(value) -> str:
    if value not in GUARD_MODES:
        raise ValueError(f"ctc_guard must be one of {', '.join(GUARD_MODES)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Check:
    coverage: float  # the share of the CTC transcript's characters the LLM's text covers
    chars: int  # the CTC transcript's letters and digits
    fired: bool
    tail: float | None  # seconds into the piece where its uncovered end begins, when the decoder stopped early


def check(llm_text: str, result: ctc.CtcResult, tokenizer: ctc.CtcTokenizer | None) -> Check:
    """How much of the CTC transcript (`result`) the LLM's text covers, and where its uncovered
    end begins when that end is at least TAIL_SHARE of it (else None; None without times: no
    tokenizer)."""
    if tokenizer is not None:
        chars, times = ctc.spike_times(result, tokenizer)
    else:
        chars, times = ctc.letters(result.text)[0], []
    if not chars:
        return Check(1.0, 0, False, None)
    hits = covered(chars, ctc.letters(llm_text)[0])
    coverage = sum(hits) / len(chars)
    fired = len(chars) >= MIN_CHARS and coverage < COVERAGE
    tail = None
    last = max((i for i, h in enumerate(hits) if h), default=-1)
    # nothing covered is no early stop (the same audio decoded again gives the same text)
    if fired and times and last >= 0 and len(chars) - 1 - last >= TAIL_SHARE * len(chars):
        # from the last covered character's spike (a CTC spike comes late in its sound), so that
        # the first uncovered one is whole: halfway to it cut into it (measured on zh_10s.wav)
        tail = times[last]
    return Check(coverage, len(chars), fired, tail)


def warning(check: Check, start: float, end: float) -> str:
    return (f"the LLM's text covers {check.coverage:.0%} of the CTC transcript of {start:.2f}-{end:.2f} s "
            f"({check.chars} characters; under {COVERAGE:.0%}): words may be missing")
