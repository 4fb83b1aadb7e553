"""Isolated parity: each MLX stage fed the reference input of that stage, so a
local bug shows where it is instead of where its error has grown.

Module taps resolve by name: MLX modules carry the reference module names.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_lm.models.base import create_attention_mask

from funasr_qwen4b import taps

from funasr_qwen4b.mlx_port.adaptor import TransformerEncoderLayer
from funasr_qwen4b.mlx_port.encoder import EncoderLayerSANM
from funasr_qwen4b.mlx_port.nano_adaptor import EncoderLayer as NanoEncoderLayer
from funasr_qwen4b.mlx_port.pipeline import Pipeline


def resolve(model: nn.Module, dotted: str) -> nn.Module:
    obj = model
    for part in dotted.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else getattr(obj, part)
    return obj


def _call(module: nn.Module, x: mx.array) -> mx.array:
    if isinstance(module, EncoderLayerSANM):  # one whole utterance: nothing masked
        return module(x, mx.ones(x.shape[:2], dtype=mx.bool_))
    if isinstance(module, (TransformerEncoderLayer, NanoEncoderLayer)):
        return module(x, None)
    return module(x)


def run_isolated(pipe: Pipeline, samples: np.ndarray, ref_inputs: dict[str, np.ndarray],
                 names: list[str]) -> dict[str, np.ndarray]:
    sv, query = pipe.sensevoice, pipe.query
    fe = pipe.frontend
    special: dict[str, Callable[[mx.array], mx.array]] = {
        taps.LFR: fe.lfr,
        taps.CMVN: fe.cmvn if fe.cfg.cmvn else (lambda x: x),
        taps.ENCODER_INPUT: lambda x: (mx.concatenate([sv.query_rows(query, 1), x[None].astype(sv.dtype)], axis=1)
                                       if query.enabled else x[None].astype(sv.dtype)),
    }
    out = {taps.FBANK: np.array(fe.fbank(mx.array(samples)))}
    for name in names:
        if name == taps.FBANK:
            continue
        x = mx.array(ref_inputs[name])
        if name in special:
            y = special[name](x)
        elif name.startswith(taps.ADAPTOR):
            y = _call(resolve(pipe.adaptor, name.removeprefix(taps.ADAPTOR)), x[None].astype(pipe.adaptor.dtype))
        elif name == taps.LLM_INPUTS_EMBEDS:
            y = pipe.llm.inputs_embeds(pipe.setup.prompt, x)
        elif name == taps.LLM_LOGITS:
            y = pipe.llm.logits(x.astype(pipe.llm.dtype))
        elif name.startswith(taps.LLM):
            h = x[None].astype(pipe.llm.dtype)
            module = resolve(pipe.llm.model, name.removeprefix(taps.LLM))
            y = module(h) if name == taps.LLM_NORM else module(h, create_attention_mask(h, None), None)
        else:
            y = _call(resolve(sv, name), x[None].astype(sv.dtype))
        a = np.array(y.astype(mx.float32))
        out[name] = a[0] if a.ndim == 3 else a
    return out
