"""How the stages connect, the same in both paths."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from .config import QueryConfig
from .ctc import CtcResult
from . import taps
from .decoding import DecodeConfig, Decoded, DecodeStats, decode_loop
from .prompt import Prompt, encode, stop_ids
from .text import cer_text, strip_tags


def adaptor_start(query: QueryConfig, keep_query_frames: bool) -> int:
    """First encoder frame the adaptor sees. The real adaptor was trained on
    FunASR's encoder output with the 4 query frames kept (REFERENCE.md §3);
    whether training dropped them is unknown, so it is a bundle setting."""
    return 0 if keep_query_frames else len(query.ids)


@dataclass
class LlmSetup:
    """What both paths' LLM stages share: tokenizer, prompt, decoding rules."""

    tokenizer: object
    template: str
    prompt: Prompt
    decode: DecodeConfig

    @classmethod
    def build(cls, tokenizer, template: str, decode: DecodeConfig) -> "LlmSetup":
        return cls(tokenizer, template, Prompt.build(template, tokenizer), decode)

    def with_decode(self, decode: DecodeConfig | None) -> "LlmSetup":
        """The same tokenizer and prompt under other decoding rules (one call's)."""
        return self if decode is None or decode == self.decode else replace(self, decode=decode)

    @property
    def stop(self) -> list[int]:
        return [] if self.decode.ignore_eos else stop_ids(self.tokenizer)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def draft(self, ctc: CtcResult) -> "Draft | None":
        """The CTC transcript as LLM tokens: what speculation verifies; None when this
        setup decodes one token per pass."""
        return Draft.build(strip_tags(ctc.text), self.tokenizer) if self.decode.speculative else None

    def transcribe(self, tokens: Iterator[int], seconds: float, out: "Output", on_text=None, rec=None,
                   stats: DecodeStats | None = None) -> None:
        """Decode a path's token source for `seconds` of audio into `out`."""
        out.decoded = decode_loop(tokens, cap=self.decode.token_cap(seconds), stop=self.stop, cfg=self.decode,
                                  on_text=on_text, tokenizer=self.tokenizer, stats=stats)
        out.timings["llm_prefill"], out.timings["llm_decode"] = out.decoded.prefill_s, out.decoded.decode_s
        out.text = self.text(out.decoded.ids)
        if rec is not None:
            rec.outputs[taps.LLM_TOKENS] = np.array(out.decoded.ids, dtype=np.int64)

    def complete(self, tokens: Iterator[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.text(decode_loop(tokens, cap=max_tokens, stop=self.stop, cfg=self.decode).ids)


@dataclass
class Draft:
    """A draft in LLM tokens, and where it goes on after each token of the LLM's own.

    The LLM writes what the CTC head heard, with punctuation and casing added and its own
    token boundaries ("：早上" for "早上", "My" for "m" "y"), so tokens are compared on their
    text as CER compares it (normalised: case, punctuation and spaces removed)."""

    ids: list[int]
    tokenizer: object = field(repr=False)

    @classmethod
    def build(cls, text: str, tokenizer) -> "Draft":
        return cls(encode(tokenizer, text), tokenizer)

    def _text(self, ids: list[int]) -> str:
        return cer_text(self.tokenizer.decode(ids))

    def after(self, own: int, at: int, reach: int = 3) -> int:
        """Where the draft goes on once the LLM's own token `own` stood against draft
        position `at`: after it when the two agree; still at `at` when `own` has no text of
        its own (inserted punctuation, a space); after the draft tokens whose text `own`
        spells (up to `reach` of them: "My" for "m" "y"); else after `at` (the LLM replaced
        that token)."""
        if at >= len(self.ids):
            return len(self.ids)
        if self.ids[at] == own:
            return at + 1
        text = self._text([own])
        if not text:
            return at
        for j in range(at + 1, min(len(self.ids), at + reach) + 1):
            if self._text(self.ids[at:j]) == text:
                return j
        return at + 1


@dataclass
class Output:
    ctc: CtcResult
    audio_embeds: np.ndarray | None = None  # adaptor output [T, llm_dim], float32
    decoded: Decoded | None = None
    text: str | None = None  # the LLM's transcript
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    # peak memory so far at the end of each stage, bytes, where the backend can tell (MLX)
    memory: dict[str, int] = field(default_factory=dict)


@contextmanager
def timed(timings: dict[str, float], stage: str, sync=lambda: None):
    t = time.perf_counter()
    yield
    sync()
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t
