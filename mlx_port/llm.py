"""Qwen3 in MLX: mlx-lm's own model, KV cache and generation loop, with the
audio rows passed as `input_embeddings`. The twin of reference/llm.py."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Iterator

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.generate import generate_step
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
from mlx_lm.utils import load_model
from transformers import AutoTokenizer

from funasr_qwen4b import pass_costs, taps
from funasr_qwen4b.decoding import Acceptance, DecodeConfig, DecodeStats, draft_size, process_logits
from funasr_qwen4b.prompt import Prompt
from funasr_qwen4b.wiring import Draft

from .taps import TapRecorder, record


def load_tokenizer(path: str | Path):
    """The LLM's own tokenizer, read from its Hugging Face files by transformers (both twins alike)."""
    return AutoTokenizer.from_pretrained(str(path))


class Qwen3:
    # Positions prefilled per forward pass. mlx-lm's default, 2048, takes a 30 s clip (~500
    # positions) in one pass, and the prefill's peak memory grows with the positions of a pass
    # while fewer positions a pass cost prefill time. Memory is what a Mac runs out of first,
    # so a small step (docs/performance.md has the measured sweep).
    prefill_step = 128
    # Speculation queues its next pass before this one's ids are read (mlx-lm's pipelining) only
    # where this one verifies at most this many draft tokens. A failed bet costs a whole pass,
    # not betting only the wait for the ids, so a bet pays only where it is likely to hold
    # (docs/decoding.md gives the measured costs and the threshold they imply). A draft right
    # at each token with probability p keeps all k with about p^k: at the demonstration
    # model's per-token rate, that is likely enough up to 3.
    bet_tokens = 3
    # Cache positions before a pass whose cost is measured: a 10 s clip's prompt and some text.
    calibration_context = 200

    def __init__(self, model):
        self.model = model
        fold_batches(model)
        # Seconds of one pass over 1, 2, ... new positions on this machine, looked up in the
        # user's cache on the first speculation and measured there where none are cached
        # (`costs`); () where none are to be measured.
        self.pass_costs: list[float] | tuple | None = None

    @classmethod
    def load(cls, path: str | Path) -> "Qwen3":
        """A `BUNDLE/llm` directory (what `mlx_lm.load` reads). The model alone: our tokenizer
        is loaded once beside it, and mlx-lm's own would cost RSS on every load."""
        return cls(load_model(Path(path))[0])

    @property
    def num_layers(self) -> int:
        return len(self.model.model.layers)

    @property
    def dtype(self) -> mx.Dtype:
        return self.model.model.norm.weight.dtype

    def identity(self) -> dict:
        """What a pass's cost depends on: the shapes, the dtype, the quantization (bits, group)."""
        a = self.model.args
        shape = {k: getattr(a, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size",
                                                  "num_attention_heads", "num_key_value_heads", "head_dim",
                                                  "vocab_size", "tie_word_embeddings")}
        quant = sorted({(m.bits, m.group_size) for _, m in self.model.named_modules() if hasattr(m, "bits")})
        return {**shape, "dtype": str(self.dtype), "quantized": [list(q) for q in quant]}

    def costs(self, positions: int) -> list[float] | tuple:
        """This machine's pass costs for this model at 1..`positions` new positions: the cached
        ones (`bench --calibrate`, or an earlier first use), else measured now, once, and cached
        (`measure_pass_costs`, a few seconds); () where the user turned that off
        (pass_costs.measure_on_first_use)."""
        if self.pass_costs is None:
            self.pass_costs = pass_costs.cached_or_measured(
                device_name(), self.identity(), positions, self.calibration_context,
                lambda blocks: self.measure_pass_costs(positions, blocks))
        return self.pass_costs

    def measure_pass_costs(self, positions: int, blocks: int, warmup: int = 1) -> list[float]:
        """Seconds of one pass over 1..`positions` new positions, as speculation runs it (k new
        positions on a `calibration_context`-position cache and the argmax of each, then trimmed
        away again): every size once a block, in turn (reversed on every other block, so that a
        drifting clock favours none), after `warmup` untimed rounds; each size's median over blocks."""
        cache = make_prompt_cache(self.model)
        mx.eval(self.model(mx.zeros((1, self.calibration_context), dtype=mx.int32), cache))
        sizes = list(range(1, positions + 1))
        seconds: dict[int, list[float]] = {k: [] for k in sizes}
        for i in range(warmup + blocks):
            for k in sizes if i % 2 == 0 else sizes[::-1]:
                x = mx.ones((1, k), dtype=mx.uint32)
                t = time.perf_counter()
                mx.eval(greedy_ids(self.model(x, cache)[0]))
                if i >= warmup:
                    seconds[k].append(time.perf_counter() - t)
                trim_prompt_cache(cache, k)
        return [float(np.median(seconds[k])) for k in sizes]

    def embed(self, ids: list[int]) -> mx.array:
        """[len(ids), hidden]"""
        return self.model.model.embed_tokens(mx.array(ids, dtype=mx.int32))

    def inputs_embeds(self, prompt: Prompt, audio: mx.array | None, rec: TapRecorder | None = None) -> mx.array:
        """[1, L, hidden]: prefix text, audio rows [T, hidden], suffix text."""
        parts = [self.embed(prompt.prefix_ids) if prompt.prefix_ids else None,
                 audio.astype(self.dtype) if audio is not None else None,
                 self.embed(prompt.suffix_ids) if prompt.suffix_ids else None]
        embeds = mx.concatenate([p for p in parts if p is not None])[None]
        record(rec, taps.LLM_INPUTS_EMBEDS, embeds)
        return embeds

    def logits(self, h: mx.array) -> mx.array:
        """The LM head on [..., hidden] (a single vector too: quantized matmuls want rows)."""
        m = self.model
        x = h[None] if h.ndim == 1 else h
        out = m.model.embed_tokens.as_linear(x) if m.args.tie_word_embeddings else m.lm_head(x)
        return out[0] if h.ndim == 1 else out

    def prefill_taps(self, inputs_embeds: mx.array, rec: TapRecorder) -> None:
        """The prefill once more, layer by layer through mlx-lm's own layers, to record taps."""
        h = inputs_embeds
        mask = create_attention_mask(h, None)
        for i, layer in enumerate(self.model.model.layers):
            h = layer(h, mask, None)
            record(rec, taps.llm_layer(i), h)
        h = self.model.model.norm(h)
        record(rec, taps.LLM_NORM, h)
        record(rec, taps.LLM_LOGITS, self.logits(h[0, -1]))

    def tokens(self, inputs_embeds: mx.array, cfg: DecodeConfig, max_tokens: int,
               rec: TapRecorder | None = None, *, draft: Draft | None = None,
               stats: DecodeStats | None = None) -> Iterator[tuple[int, float]]:
        """Greedy ids from `inputs_embeds` [1, L, hidden], at most `max_tokens`, each with its
        log-probability: with a `draft`, several per forward pass (`speculate`); else one at a
        time by mlx-lm's generate_step. `stats` counts the forward passes after the prefill."""
        if rec is not None:
            self.prefill_taps(inputs_embeds, rec)
        stats = stats if stats is not None else DecodeStats()
        if draft is not None:
            yield from self.speculate(inputs_embeds, draft, cfg.draft_tokens, max_tokens, stats)
            return
        processors = None
        if cfg.penalised:
            # the shared numpy rule, so both paths penalise identically
            processors = [lambda toks, logits: mx.array(
                process_logits(np.array(toks).tolist(), np.array(logits[0].astype(mx.float32)), cfg))[None]]
        picked = collections.deque()  # each pass's id's log-probability, in the order of the passes

        def sampler(logprobs: mx.array) -> mx.array:
            """mlx-lm's greedy sampler, and the chosen id's log-probability computed with the pass:
            generate_step queues the next pass before it yields an id, so one read afterwards
            would wait for that pass too."""
            ids = mx.argmax(logprobs, axis=-1)
            logprob = log_softmax_at(logprobs, ids)
            mx.async_eval(logprob)
            picked.append(logprob)
            return ids

        # the prefill's last pass gives the first id; mlx-lm's loop goes on from it on the same cache
        cache, logits = self.prefill(inputs_embeds)
        first, logprob = greedy_picks(logits)
        yield first.item(), logprob.item()
        if max_tokens <= 1:
            return
        steps = generate_step(first, self.model, max_tokens=max_tokens - 1, sampler=sampler, prompt_cache=cache,
                              logits_processors=processors)
        for n, (tok, _) in enumerate(steps, 1):
            stats.forwards = n
            yield int(tok), picked.popleft().item()

    def prefill(self, inputs_embeds: mx.array) -> tuple[list, mx.array]:
        """A fresh KV cache filled with `inputs_embeds` [1, L, hidden] (prefill_into), and the last
        position's logits [1, vocab]."""
        cache = make_prompt_cache(self.model)
        return cache, self.prefill_into(cache, inputs_embeds)

    def prefill_into(self, cache: list, inputs_embeds: mx.array) -> mx.array:
        """Fill `cache` with `inputs_embeds` [B, L, hidden], prefill_step positions a pass, the
        last position in the last pass (mlx-lm's loop gives it a pass of its own: on a GPU, where
        a short prompt's pass costs what a decoding step costs, one pass more); the logits
        [B, vocab] of the last position, the LM head applied to it alone."""
        h = inputs_embeds
        for i in range(0, h.shape[1], self.prefill_step):
            if i:
                mx.eval([c.state for c in cache])
            out = self.model.model(None, cache, input_embeddings=h[:, i: i + self.prefill_step])
        return self.logits(out[:, -1])

    def speculate(self, inputs_embeds: mx.array, draft: Draft, window: int, max_tokens: int,
                  stats: DecodeStats) -> Iterator[tuple[int, float]]:
        """Greedy decoding that verifies the draft: each pass feeds the last token and up to
        `window` next draft tokens, keeps the longest prefix the LLM's own argmax agrees with
        plus the LLM's token after it, and trims the rejected positions from the KV cache.
        Every id is the argmax given exactly the ids before it: the ids of plain greedy
        decoding, each with its log-probability at the position that verified it.

        How many draft tokens a pass verifies: with this machine's measured pass costs
        (`costs`), the number that gives the most expected tokens per second at the draft's
        running acceptance rate (`decoding.draft_size`); without them, the whole window, or
        one token after a pass that kept none (the draft is likely lost there).

        Like mlx-lm's loop, the next pass may be queued before this one's ids are read, on the
        bet that this pass accepts all it verifies: it is fed this pass's last argmax still on
        the device, then the draft after it. A bet that fails costs a whole pass, computed and
        thrown away (`stats.voided`), so it is made only where it is likely to hold: when this
        pass verifies at most `bet_tokens` draft tokens and does not reach the draft's stop
        guess (after which decoding likely ends), or verifies none."""
        model = self.model
        cache, logits = self.prefill(inputs_embeds)
        ids, logprobs = greedy_picks(logits)
        y = ids[-1].item()
        yield y, logprobs[-1].item()
        out = [y]

        def launch(first: mx.array, ahead: list[int]) -> tuple[mx.array, mx.array]:
            """The pass's argmaxes and their log-probabilities, queued."""
            preds = greedy_picks(model(mx.concatenate([first, mx.array(ahead, dtype=first.dtype)])[None], cache)[0])
            mx.async_eval(preds)
            return preds

        costs, acceptance = self.costs(window + 1), Acceptance()

        def size(missed_all: bool) -> int:
            if costs:
                return draft_size(costs, acceptance.rate, window)
            return 1 if missed_all else window

        at = draft.after(y, 0)  # where in the draft the text after `out` is expected
        ahead = draft.ids[at: at + min(size(False), max_tokens - len(out) - 1)]
        preds = launch(mx.array([y], dtype=mx.uint32), ahead)
        try:
            while True:
                room = max_tokens - len(out) - len(ahead) - 1  # ids still to come after this pass
                bet = None
                likely = not ahead or len(ahead) <= self.bet_tokens and not draft.ends_by(at + len(ahead))
                if room > 0 and likely:
                    # the bet: all of `ahead` accepted, so the next pass starts at its last argmax
                    bet_at = at + len(ahead) + 1
                    bet = draft.ids[bet_at: bet_at + min(size(False), room - 1)]
                    nxt = launch(preds[0][len(ahead):], bet)
                got, scores = preds[0].tolist(), preds[1].tolist()
                stats.forwards += 1  # passes whose ids are used
                ok = 0
                while ok < len(ahead) and got[ok] == ahead[ok]:
                    ok += 1
                stats.drafted += len(ahead)
                stats.accepted += ok
                y = got[ok]
                # y stood against the draft's token after the kept ones too, verified or not: seen
                # free of charge, so a pass that verifies none still keeps the rate current
                told = at + ok < len(draft.ids)
                acceptance.update(ok + (told and draft.ids[at + ok] == y), ok + told)
                for tok, logprob in zip([*ahead[:ok], y], scores):  # an accepted draft token is the argmax there
                    out.append(tok)
                    yield tok, logprob
                if len(out) >= max_tokens:
                    return
                if bet is not None and ok == len(ahead):  # the bet holds: the next pass is already queued
                    draft.after(y, at + ok)  # told of every token of the LLM's own (a simulated draft re-aligns)
                    at, ahead, preds = bet_at, bet, nxt
                    continue
                stats.voided += bet is not None
                # rejected positions of this pass, and a voided next pass, leave the cache
                trim_prompt_cache(cache, len(ahead) - ok + (1 + len(bet) if bet is not None else 0))
                at = draft.after(y, at + ok)  # the LLM's own token stood against draft position at + ok
                ahead = draft.ids[at: at + min(size(ok == 0 < len(ahead)), max_tokens - len(out) - 1)]
                preds = launch(mx.array([y], dtype=mx.uint32), ahead)
        finally:  # a caller that stops early (a cancelled request) leaves no pass in flight holding the cache
            mx.synchronize()


class RowsQuantizedLinear(nn.QuantizedLinear):
    """A quantized linear layer that hands MLX one product over all its input's rows. MLX's CUDA
    backend takes a [B, L, K] input as B products of L rows, each reading the whole weight (a
    batch decoding one position a row: B matrix-vector products); as [1, B·L, K] the weight is
    read once for all rows. MLX's Metal backend folds the rows so itself: there, nothing changes."""

    def __call__(self, x: mx.array) -> mx.array:
        return super().__call__(x.reshape(1, -1, x.shape[-1])).reshape(*x.shape[:-1], -1)


class RowsQuantizedEmbedding(nn.QuantizedEmbedding):
    """The tied LM head's product, as RowsQuantizedLinear's."""

    def as_linear(self, x: mx.array) -> mx.array:
        return super().as_linear(x.reshape(1, -1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def fold_batches(model) -> None:
    """Every quantized layer of `model` (as loaded or quantized) made its Rows twin in place."""
    for _, m in model.named_modules():
        if type(m) is nn.QuantizedLinear:
            m.__class__ = RowsQuantizedLinear
        elif type(m) is nn.QuantizedEmbedding:
            m.__class__ = RowsQuantizedEmbedding


def device_name() -> str:
    """The device MLX computes on, by name, and MLX's version (its kernels set a pass's cost)."""
    info = mx.device_info() if hasattr(mx, "device_info") else {}
    return f"{mx.default_device()} {info.get('device_name', '')}, MLX {mx.__version__}"


def greedy_picks(logits: mx.array) -> tuple[mx.array, mx.array]:
    """Each row's argmax exactly as mlx-lm's greedy sampler takes it: of the log-probabilities,
    in the logits' dtype (in bfloat16 the subtraction can make two values tie, and the argmax
    is then the lower id), so the ids are plain greedy decoding's; and its log-probability,
    from those log-probabilities as the plain path takes it from generate_step's (log_softmax_at).
    Left on the device."""
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    ids = mx.argmax(logprobs, axis=-1).astype(mx.uint32)
    return ids, log_softmax_at(logprobs, ids)


# Vocabulary entries summed at a time by log_softmax_at, before the blocks' sums are added.
SUM_BLOCK = 128


def log_softmax_at(logits: mx.array, ids: mx.array) -> mx.array:
    """Each row's log-softmax at `ids` (float32; `logits` [..., vocab], `ids` [...]). MLX's CPU
    reduction adds the vocabulary's 152k terms one after another in float32, which leaves a
    log-probability up to ~2e-4 off where the distribution is flat; summed in blocks of
    SUM_BLOCK, then the blocks, it is within ~1e-6, as torch's float32 log_softmax is."""
    x = logits.astype(mx.float32)
    top = mx.max(x, axis=-1, keepdims=True)
    e = mx.exp(x - top)
    e = mx.pad(e, [(0, 0)] * (e.ndim - 1) + [(0, -e.shape[-1] % SUM_BLOCK)])
    total = e.reshape(*e.shape[:-1], -1, SUM_BLOCK).sum(axis=-1).sum(axis=-1)
    picked = mx.take_along_axis(x, ids.astype(mx.int32)[..., None], axis=-1)[..., 0]
    return picked - top[..., 0] - mx.log(total)


def greedy_ids(logits: mx.array) -> mx.array:
    """Each row's greedy id (greedy_picks), left on the device."""
    return greedy_picks(logits)[0]


def greedy(logits: mx.array) -> list[int]:
    return greedy_ids(logits).tolist()
