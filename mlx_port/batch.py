"""Several utterances' greedy decoding at once in MLX: their prompts, of different lengths,
left-padded into one batch over mlx-lm's BatchKVCache, one token per row per forward pass,
each row under its own Decoder (stop ids, cap, loop guard, streaming). A row that has
ended leaves the batch, so the passes shrink as the batch drains.

Rows do not speculate: a verify pass over k draft tokens of B rows is a B·k-position
forward, compute-bound once B is large, and rows accept different numbers of tokens, which
one cache position per batch (BatchKVCache) cannot trim row by row. `bench --batch-sizes`
measures what a batch gains instead."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import BatchKVCache

from funasr_qwen4b.decoding import DecodeConfig, Decoder, DecodeStats, Stopped, process_logits

from .llm import Qwen3, greedy_picks


def left_padded(embeds: list[mx.array]) -> tuple[mx.array, list[int]]:
    """Rows [L_i, hidden] → [B, max L, hidden], zeros before each shorter row, and the padding."""
    n = max(e.shape[0] for e in embeds)
    pad = [n - e.shape[0] for e in embeds]
    return mx.stack([mx.pad(e, [(p, 0), (0, 0)]) for e, p in zip(embeds, pad)]), pad


def decode(llm: Qwen3, embeds: list[mx.array], decoders: list[Decoder], cfg: DecodeConfig) -> list[DecodeStats]:
    """Push each row's greedy ids into its decoder until every decoder has ended; `embeds`
    [L_i, hidden] per row. A row whose listener raises Stopped ends there; the others go on.
    Returns each row's forward passes after the prefill."""
    model = llm.model
    h, pad = left_padded(embeds)
    cache = [BatchKVCache(pad) for _ in model.layers]
    last = llm.prefill_into(cache, h)  # as one utterance prefills
    rows = list(range(len(embeds)))  # the decoders of the rows still in the batch
    stats = [DecodeStats() for _ in rows]

    def pick(logits: mx.array) -> tuple[mx.array, mx.array]:
        """Each row's next id and its log-probability, as the one-utterance path picks it
        (penalties need the ids so far)."""
        if cfg.penalised:
            logits = mx.array(np.stack([process_logits(decoders[r].ids, row, cfg) for r, row in
                                        zip(rows, np.array(logits.astype(mx.float32)))]))
        return greedy_picks(logits)

    y = pick(last)
    mx.async_eval(y)
    try:
        while True:
            # like mlx-lm's loop, the next pass is queued before this one's ids are read (not with
            # penalties: they need this pass's ids); a row that ends now wasted its row of it
            nxt = None if cfg.penalised else _queue(model, y, cache, pick)
            keep = [k for k, (r, tok, logprob) in enumerate(zip(rows, *(a.tolist() for a in y)))
                    if not _push(decoders[r], tok, logprob)]
            if not keep:
                return stats
            if len(keep) < len(rows):
                idx = mx.array(keep)
                for c in cache:
                    c.filter(idx)
                rows = [rows[k] for k in keep]
                y, nxt = [a[idx] for a in y], None if nxt is None else [a[idx] for a in nxt]
            for r in rows:
                stats[r].forwards += 1
            y = nxt if nxt is not None else _queue(model, y, cache, pick)
    finally:  # no pass left in flight holding the cache, however the loop ends
        mx.synchronize()


def _push(decoder: Decoder, tok: int, logprob: float) -> bool:
    """True once the row has ended, also when its listener stopped it (its decoder says "stopped")."""
    try:
        return decoder.push(tok, logprob)
    except Stopped:
        return True


def _queue(model, y: tuple[mx.array, mx.array], cache: list, pick) -> tuple[mx.array, mx.array]:
    nxt = pick(model(y[0][:, None], cache)[:, -1])
    mx.async_eval(nxt)
    return nxt
