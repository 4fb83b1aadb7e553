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
from .decoding import DecodeConfig, Decoded, Decoder, DecodeStats, decode_loop
from .prompt import AUDIO_SLOT, Prompt, encode, stop_ids
from .text import cer_text, strip_tags


def adaptor_start(query: QueryConfig, keep_query_frames: bool) -> int:
    """First encoder frame the adaptor sees. The real adaptor was trained on
    FunASR's encoder output with the 4 query frames kept (docs/model.md);
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

    def with_template(self, template: str | None) -> "LlmSetup":
        """The same tokenizer and decoding rules under another prompt (one call's, or one batch's:
        a Fun-ASR-Nano prompt with hotwords, a language, ITN off)."""
        if template is None or template == self.template:
            return self
        if not isinstance(template, str) or template.count(AUDIO_SLOT) != 1:
            raise ValueError(f"a template needs exactly one {AUDIO_SLOT} slot; got {template!r}")
        return replace(self, template=template, prompt=Prompt.build(template, self.tokenizer))

    @property
    def stop(self) -> list[int]:
        return [] if self.decode.ignore_eos else stop_ids(self.tokenizer)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def draft(self, ctc: CtcResult | None) -> "Draft | None":
        """The CTC transcript as LLM tokens, then the ending the LLM likely writes after it
        (the tokenizer's eos among the stop ids): what speculation verifies; None when this
        setup decodes one token per pass."""
        if not self.decode.speculative or ctc is None:  # no CTC head (Fun-ASR-Nano): nothing to draft from
            return None
        stop = self.stop  # none with ignore_eos: decoding runs to the cap
        eos = getattr(self.tokenizer, "eos_token_id", None)
        guess = eos if eos in stop else stop[0] if stop else None
        return Draft.build(strip_tags(ctc.text), self.tokenizer, stop=guess)

    def decoder(self, seconds: float, on_text=None) -> Decoder:
        """The rules one utterance of `seconds` is decoded under (a batch holds one per row)."""
        return Decoder(cap=self.decode.token_cap(seconds), stop=self.stop, cfg=self.decode, on_text=on_text,
                       tokenizer=self.tokenizer)

    def transcribe(self, tokens: Iterator[int], seconds: float, out: "Output", on_text=None, rec=None,
                   stats: DecodeStats | None = None) -> None:
        """Decode a path's token source for `seconds` of audio into `out`."""
        self.fill(out, self.decoder(seconds, on_text).run(tokens, stats), rec)

    def fill(self, out: "Output", decoded: Decoded, rec=None) -> None:
        """An utterance's decoded ids into `out`: text, timings, the tokens tap."""
        out.decoded = decoded
        out.timings["llm_prefill"], out.timings["llm_decode"] = decoded.prefill_s, decoded.decode_s
        out.text = self.text(out.decoded.ids)
        if rec is not None:
            rec.outputs[taps.LLM_TOKENS] = np.array(out.decoded.ids, dtype=np.int64)

    def complete(self, tokens: Iterator[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.text(decode_loop(tokens, cap=max_tokens, stop=self.stop, cfg=self.decode).ids)


# Characters (kana, CJK ideographs) after which a sentence ends in "。"; after others, ".".
_FULL_STOP_SCRIPTS = (("\u3040", "\u9fff"), ("\uf900", "\ufaff"))


@dataclass
class Draft:
    """A draft in LLM tokens, and where it goes on after each token of the LLM's own.

    The LLM writes what the CTC head heard, with punctuation and casing added and its own
    token boundaries ("：早上" for "早上", "My" for "m" "y"), so tokens are compared on their
    text as CER compares it (normalised: case, punctuation and spaces removed). A draft can
    end in guesses that have no such text: the punctuation that ends the sentence and the
    stop id (`stop`); verified with the text before them, they save the two passes that would
    otherwise produce them one at a time."""

    ids: list[int]
    tokenizer: object = field(repr=False)
    stop: int | None = None  # the draft's last id is this stop-id guess

    @classmethod
    def build(cls, text: str, tokenizer, stop: int | None = None) -> "Draft":
        """`text` in the LLM's tokens; with `stop`, followed by the punctuation the LLM ends a
        sentence with in the text's script (unless the text ends in punctuation), then `stop`.
        The two are tokenized with the text, so the LLM's merges ("度。") are kept."""
        if stop is None or not text:
            return cls(encode(tokenizer, text), tokenizer)
        last = text[-1]
        end = "" if not cer_text(last) else "。" if any(a <= last <= b for a, b in _FULL_STOP_SCRIPTS) else "."
        return cls([*encode(tokenizer, text + end), stop], tokenizer, stop)

    def ends_by(self, at: int) -> bool:
        """Whether the draft's stop guess lies at or before position `at`: a pass whose own
        token stands there likely ends decoding."""
        return self.stop is not None and at >= len(self.ids) - 1

    def _text(self, ids: list[int]) -> str:
        return cer_text(self.tokenizer.decode(ids))

    def after(self, own: int, at: int, reach: int = 3) -> int:
        """Where the draft goes on once the LLM's own token `own` stood against draft
        position `at`: after it when the two agree; still at `at` when `own` has no text of
        its own (inserted punctuation, a space); after the draft tokens whose text `own`
        spells (up to `reach` of them: "My" for "m" "y"); else after `at` (the LLM replaced
        that token). Draft tokens without text (punctuation, the stop guess) before the next
        one with text are passed over first; with none after them, the draft has run out: the
        LLM is writing text the draft lacks, and the guessed ending, offered again after each
        of its tokens, would be a miss each time."""
        if at >= len(self.ids):
            return len(self.ids)
        if self.ids[at] == own:
            return at + 1
        text = self._text([own])
        if not text:
            return at
        k = at
        while k < len(self.ids) and not self._text([self.ids[k]]):
            k += 1
        for j in range(k + 1, min(len(self.ids), k + reach) + 1):
            if self._text(self.ids[k:j]) == text:
                return j
        return min(k + 1, len(self.ids))


@dataclass
class Output:
    ctc: CtcResult | None  # None where the model has no CTC head (Fun-ASR-Nano)
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
