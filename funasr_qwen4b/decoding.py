"""Decoding rules both paths share: token cap, stop ids, the repetition
guard, optional penalties, and UTF-8-safe streaming."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .config import from_dict


@dataclass(frozen=True)
class DecodeConfig:
    # Token cap from the audio's duration: about 5 tokens a second of Mandarin speech (the
    # Transcriber raises it to 8 for English), clamped to 30..400 (docs/decoding.md).
    tokens_per_second: float = 5.0
    min_tokens: int = 30
    max_tokens: int = 400
    # Repetition guard: stop when the output ends in an n-gram (n <= loop_max_ngram)
    # repeated loop_repeats times, and keep one copy of it.
    loop_guard: bool = True
    loop_max_ngram: int = 10
    loop_repeats: int = 4
    repetition_penalty: float | None = None  # Hugging Face semantics, over generated ids
    no_repeat_ngram: int | None = None
    ignore_eos: bool = False  # benchmarks: always decode to the cap
    # Speculative decoding (MLX): the CTC transcript drafts, the LLM verifies up to
    # draft_tokens of it per forward pass; the ids are those of plain greedy decoding.
    speculate: str = "ctc"  # "ctc" or "off"
    draft_tokens: int = 16

    def __post_init__(self):
        if not (math.isfinite(self.tokens_per_second) and self.tokens_per_second > 0):
            raise ValueError(f"generation.tokens_per_second must be a positive number, got {self.tokens_per_second}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"generation needs 1 <= min_tokens <= max_tokens, got {self.min_tokens}, {self.max_tokens}")
        if self.loop_max_ngram < 1 or self.loop_repeats < 2:
            raise ValueError(f"generation needs loop_max_ngram >= 1 and loop_repeats >= 2, "
                             f"got {self.loop_max_ngram}, {self.loop_repeats}")
        if self.speculate not in SPECULATE:
            raise ValueError(f"generation.speculate must be one of {SPECULATE}, got {self.speculate!r}")
        if not 1 <= self.draft_tokens <= 128:
            raise ValueError(f"generation.draft_tokens must be 1..128, got {self.draft_tokens}")
        p = self.repetition_penalty
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0):
            raise ValueError(f"repetition_penalty must be a positive number, got {p!r}")
        n = self.no_repeat_ngram
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"no_repeat_ngram must be a positive integer, got {n!r}")

    @classmethod
    def from_dict(cls, data: dict, what: str = "generation") -> "DecodeConfig":
        return from_dict(cls, data, what)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty is not None or bool(self.no_repeat_ngram)

    @property
    def speculative(self) -> bool:
        """Speculation verifies greedy argmaxes; penalties change the logits per position, so
        with them decoding stays one token per pass."""
        return self.speculate == "ctc" and not self.penalised

    def token_cap(self, seconds: float) -> int:
        return int(min(self.max_tokens, max(self.min_tokens, math.ceil(self.tokens_per_second * seconds))))


SPECULATE = ("ctc", "off")


@dataclass
class DecodeStats:
    """What a token source did: LLM forward passes after the prefill, draft tokens offered
    and accepted, and passes queued on a bet that failed, computed and thrown away
    (speculation only)."""

    forwards: int = 0
    drafted: int = 0
    accepted: int = 0
    voided: int = 0


@dataclass
class Acceptance:
    """The draft's running acceptance rate in one utterance: each draft token the LLM's own
    tokens stood against was kept or was the first one missed (those after it were not tried),
    counted under a uniform prior, so a draft with no record yet stands at 1/2. The token after
    a pass's last kept one is seen whether the pass verified it or not, so a rate that once
    fell low enough to verify nothing still rises again where the draft comes right."""

    kept: int = 0
    rejected: int = 0

    def update(self, kept: int, offered: int) -> None:
        self.kept += kept
        self.rejected += kept < offered

    @property
    def rate(self) -> float:
        return (self.kept + 1) / (self.kept + self.rejected + 2)


def draft_size(costs: list[float], rate: float, window: int) -> int:
    """How many draft tokens (0..window) the next pass verifies: the most expected tokens per
    second, where a pass over 1 + n positions costs `costs[n]` (measured: pass_costs) and yields
    its own token and each draft token while all before it are kept, each with probability
    `rate`: 1 + rate + ... + rate^n tokens. Sizes beyond the measured ones are not chosen."""
    best, size = 0.0, 0
    for n in range(min(window, len(costs) - 1) + 1):
        per_s = sum(rate ** i for i in range(n + 1)) / costs[n]
        if per_s > best:
            best, size = per_s, n
    return size


def loop_start(ids: list[int], cfg: DecodeConfig) -> int | None:
    """If `ids` ends in a loop, the index where its repeats begin (after the first copy)."""
    for n in range(1, cfg.loop_max_ngram + 1):
        # single tokens repeat legitimately ("哈哈哈"): ask twice as many
        reps = cfg.loop_repeats * (2 if n == 1 else 1)
        if len(ids) < n * reps:
            continue
        gram = ids[-n:]
        if all(ids[-(k + 1) * n: len(ids) - k * n] == gram for k in range(reps)):
            return len(ids) - (reps - 1) * n
    return None


def process_logits(generated: list[int], logits: np.ndarray, cfg: DecodeConfig) -> np.ndarray:
    """Optional penalties, applied to one step's logits [vocab] (float32)."""
    if cfg.repetition_penalty is None and not cfg.no_repeat_ngram:
        return logits
    logits = logits.astype(np.float32).copy()
    if cfg.repetition_penalty is not None and generated:
        seen = np.unique(np.asarray(generated))
        s = logits[seen]
        logits[seen] = np.where(s < 0, s * cfg.repetition_penalty, s / cfg.repetition_penalty)
    n = cfg.no_repeat_ngram
    if n and len(generated) >= n:
        prefix = tuple(generated[len(generated) - n + 1:]) if n > 1 else ()
        banned = [generated[i + n - 1] for i in range(len(generated) - n + 1)
                  if tuple(generated[i:i + n - 1]) == prefix]
        logits[banned] = -np.inf
    return logits


class TextStream:
    """Text deltas as ids arrive; holds back a character whose bytes are split
    across byte-level tokens (it decodes to U+FFFD until complete)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        return self._emit(text)

    def finish(self) -> str:
        return self._emit(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _emit(self, text: str) -> str:
        # Byte-level BPE decoding only ever grows at the end once complete.
        delta = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted = text if text.startswith(self.emitted) else self.emitted
        return delta


def _byte_of_char() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's, Qwen's): each byte written as a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + k): b for k, b in enumerate(rest)}}


_BYTE_OF_CHAR = _byte_of_char()


def token_bytes(tokenizer, ids: list[int]) -> list[bytes]:
    """The bytes each id of a byte-level BPE tokenizer stands for: together, the UTF-8 of the
    decoded text, a character split across ids split as its bytes are. A piece outside the
    byte alphabet (an added token) is its own UTF-8."""
    return [piece.encode() if any(c not in _BYTE_OF_CHAR for c in piece) else bytes(_BYTE_OF_CHAR[c] for c in piece)
            for piece in tokenizer.convert_ids_to_tokens([int(i) for i in ids])]


@dataclass
class Decoded:
    ids: list[int]
    stop: str  # "eos", "cap", "loop", "stopped" (Stopped) or "end" (the token source ran out)
    # each id's log-probability under the distribution it was picked from (penalties applied)
    logprobs: list[float] = field(default_factory=list)
    prefill_s: float = 0.0  # until the first token
    decode_s: float = 0.0  # the tokens after it
    stats: DecodeStats = field(default_factory=DecodeStats)


def repeating_tail(ids: list[int], cfg: DecodeConfig) -> int:
    """How many trailing ids a loop cut could still remove: for each period n, the run of
    trailing ids equal to the id n before them (a cut keeps one copy and removes what
    follows it, and every id it removes lies in such a run when it is emitted)."""
    longest = 0
    for n in range(1, cfg.loop_max_ngram + 1):
        run = 0
        while run < len(ids) - n and ids[-1 - run] == ids[-1 - run - n]:
            run += 1
        longest = max(longest, run)
    return longest


class Stopped(Exception):
    """Raised by an `on_text` callback to end its utterance's decoding (a client that has gone).
    One utterance's decoding raises it on; in a batch, that row alone ends."""


class Decoder:
    """The shared rules applied to one utterance's ids as they come, pushed one at a time:
    what decode_loop runs over a token source, and what a batch runs for each of its rows.
    With `on_text`, text deltas are streamed; only a tail that is actually repeating is
    held back (a loop cut could still remove it), so the streamed text always equals the
    final text and arrives as it is decoded."""

    def __init__(self, *, cap: int, stop: list[int], cfg: DecodeConfig, on_text=None, tokenizer=None):
        self.cap, self.stop, self.cfg, self.on_text = cap, stop, cfg, on_text
        self.ids: list[int] = []
        self.logprobs: list[float] = []
        self.stream = TextStream(tokenizer) if on_text is not None else None
        self.reason: str | None = None  # set once decoding has ended
        self.t0 = time.perf_counter()
        self.t_first: float | None = None

    def push(self, tok: int, logprob: float) -> bool:
        """One more id and its log-probability; True once decoding has ended (stop id, loop, cap)."""
        self.t_first = self.t_first or time.perf_counter()
        tok, ids, cfg = int(tok), self.ids, self.cfg
        if tok in self.stop:
            self.reason = "eos"
            return True
        ids.append(tok)
        self.logprobs.append(float(logprob))
        if cfg.loop_guard and (cut := loop_start(ids, cfg)) is not None:
            del ids[cut:], self.logprobs[cut:]
            self.reason = "loop"
            return True
        if self.stream is not None:
            hold = repeating_tail(ids, cfg) if cfg.loop_guard else 0
            if len(ids) - hold > len(self.stream.ids):
                try:
                    _push(self.stream, ids[len(self.stream.ids): len(ids) - hold], self.on_text)
                except Stopped:
                    self.stream, self.reason = None, "stopped"  # nothing more is streamed to it
                    raise
        if len(ids) >= self.cap:
            self.reason = "cap"
            return True
        return False

    def run(self, tokens, stats: DecodeStats | None = None) -> Decoded:
        """Push a path's token source until decoding ends. `tokens` yields the next id and its
        log-probability given everything so far (each path's own model and cache; `stats` is what
        it reports of its work)."""
        for tok, logprob in tokens:
            if self.push(tok, logprob):
                break
        return self.finish(stats)

    def finish(self, stats: DecodeStats | None = None) -> Decoded:
        """What was decoded; "end" when the token source ran out first."""
        if self.stream is not None:
            _push(self.stream, self.ids[len(self.stream.ids):], self.on_text)
            if tail := self.stream.finish():
                self.on_text(tail)
        end = time.perf_counter()
        t_first = self.t_first or end
        return Decoded(self.ids, self.reason or "end", self.logprobs, t_first - self.t0, end - t_first,
                       stats or DecodeStats())


def decode_loop(tokens, *, cap: int, stop: list[int], cfg: DecodeConfig, on_text=None, tokenizer=None,
                stats: DecodeStats | None = None) -> Decoded:
    """Run a path's greedy token source, (id, log-probability) pairs, under the shared rules (Decoder)."""
    return Decoder(cap=cap, stop=stop, cfg=cfg, on_text=on_text, tokenizer=tokenizer).run(tokens, stats)


def _push(stream: TextStream, new_ids: list[int], on_text) -> None:
    for i in new_ids:
        if delta := stream.push(i):
            on_text(delta)
