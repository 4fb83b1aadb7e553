"""The audio adaptor in MLX, the twin of reference/adaptor.py. Module names
are PyTorch's, except that `self_attn.in_proj_*` was split into
q_proj/k_proj/v_proj at conversion."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from funasr_qwen4b import taps
from funasr_qwen4b.config import AdaptorConfig

from .taps import TapRecorder, record

ACTIVATIONS = {"gelu": nn.gelu, "relu": nn.relu}  # nn.gelu is the exact (erf) GELU


class MultiheadAttention(nn.Module):
    def __init__(self, d: int, nhead: int):
        super().__init__()
        self.nhead, self.head_dim = nhead, d // nhead
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def __call__(self, x: mx.array, mask: mx.array | None) -> mx.array:
        b, t, _ = x.shape
        q, k, v = (p(x).reshape(b, t, self.nhead, self.head_dim).transpose(0, 2, 1, 3)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        att = mx.fast.scaled_dot_product_attention(
            q, k, v, scale=self.head_dim ** -0.5, mask=None if mask is None else mask[:, None, None, :])
        return self.out_proj(att.transpose(0, 2, 1, 3).reshape(b, t, -1))


class TransformerEncoderLayer(nn.Module):
    def __init__(self, cfg: AdaptorConfig):
        super().__init__()
        self.self_attn = MultiheadAttention(cfg.d_model, cfg.nhead)
        self.linear1 = nn.Linear(cfg.d_model, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, cfg.d_model)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.norm_first = cfg.norm_first
        self.activation = ACTIVATIONS[cfg.activation]

    def _ff(self, x: mx.array) -> mx.array:
        return self.linear2(self.activation(self.linear1(x)))

    def __call__(self, x: mx.array, mask: mx.array | None = None) -> mx.array:
        if self.norm_first:
            x = x + self.self_attn(self.norm1(x), mask)
            return x + self._ff(self.norm2(x))
        # PyTorch's default, what was trained: post-norm.
        x = self.norm1(x + self.self_attn(x, mask))
        return self.norm2(x + self._ff(x))


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: AdaptorConfig):
        super().__init__()
        self.layers = [TransformerEncoderLayer(cfg) for _ in range(cfg.num_layers)]


class AudioAdaptorQwen4B(nn.Module):
    def __init__(self, cfg: AdaptorConfig):
        super().__init__()
        self.cfg = cfg
        self.input_proj = nn.Linear(cfg.encoder_dim, cfg.d_model)
        self.transformer = TransformerEncoder(cfg)
        self.output_proj = nn.Linear(cfg.d_model, cfg.llm_dim)
        self.norm = nn.LayerNorm(cfg.llm_dim, eps=cfg.eps)

    @classmethod
    def load(cls, path: str | Path, cfg: AdaptorConfig, quantization: dict | None = None) -> "AudioAdaptorQwen4B":
        """A converted `BUNDLE/adaptor` directory (its config and quantization from the Bundle)."""
        path = Path(path)
        model = cls(cfg)
        if quantization:  # the linear layers were quantized at conversion
            nn.quantize(model, group_size=quantization["group_size"], bits=quantization["bits"])
        model.load_weights(str(path / "model.safetensors"), strict=True)
        model.eval()
        return model

    @property
    def dtype(self) -> mx.Dtype:
        return self.norm.weight.dtype  # a quantized linear's weight is packed uint32

    def __call__(self, x: mx.array, mask: mx.array | None = None, rec: TapRecorder | None = None) -> mx.array:
        """x [B, T, encoder_dim]; mask [B, T], True on valid frames → [B, T, llm_dim]."""
        x = self.input_proj(x.astype(self.dtype))
        record(rec, taps.ADAPTOR_INPUT_PROJ, x)
        for i, layer in enumerate(self.transformer.layers):
            x = layer(x, mask)
            record(rec, taps.adaptor_layer(i), x)
        x = self.output_proj(x)
        record(rec, taps.ADAPTOR_OUTPUT_PROJ, x)
        x = self.norm(x)
        record(rec, taps.ADAPTOR_NORM, x)
        return x
