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
from .decoding import DecodeConfig, Decoded, decode_loop
from .prompt import Prompt, stop_ids


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

    def transcribe(self, tokens: Iterator[int], seconds: float, out: "Output", on_text=None, rec=None) -> None:
        """Decode a path's token source for `seconds` of audio into `out`."""
        out.decoded = decode_loop(tokens, cap=self.decode.token_cap(seconds), stop=self.stop, cfg=self.decode,
                                  on_text=on_text, tokenizer=self.tokenizer)
        out.timings["llm_prefill"], out.timings["llm_decode"] = out.decoded.prefill_s, out.decoded.decode_s
        out.text = self.text(out.decoded.ids)
        if rec is not None:
            rec.outputs[taps.LLM_TOKENS] = np.array(out.decoded.ids, dtype=np.int64)

    def complete(self, tokens: Iterator[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.text(decode_loop(tokens, cap=max_tokens, stop=self.stop, cfg=self.decode).ids)


@dataclass
class Output:
    ctc: CtcResult
    audio_embeds: np.ndarray | None = None  # adaptor output [T, llm_dim], float32
    decoded: Decoded | None = None
    text: str | None = None  # the LLM's transcript
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


@contextmanager
def timed(timings: dict[str, float], stage: str, sync=lambda: None):
    t = time.perf_counter()
    yield
    sync()
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t
