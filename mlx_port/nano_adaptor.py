"""Fun-ASR-Nano's audio adaptor in MLX, the twin of reference/nano_adaptor.py (FunASR's
`Transformer` adaptor): frames concatenated by `downsample_rate` → linear1 → ReLU → linear2 →
pre-norm Transformer blocks. Module names are FunASR's, so the weights load unchanged."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from funasr_qwen4b import nano_taps
from funasr_qwen4b.config import NanoAdaptorConfig

from .encoder import length_mask
from .taps import TapRecorder, record


class MultiHeadedAttention(nn.Module):
    def __init__(self, n_head: int, d: int):
        super().__init__()
        self.h, self.d_k = n_head, d // n_head
        self.linear_q = nn.Linear(d, d)
        self.linear_k = nn.Linear(d, d)
        self.linear_v = nn.Linear(d, d)
        self.linear_out = nn.Linear(d, d)

    def __call__(self, x: mx.array, mask: mx.array | None) -> mx.array:
        b, t, _ = x.shape
        q, k, v = (p(x).reshape(b, t, self.h, self.d_k).transpose(0, 2, 1, 3)
                   for p in (self.linear_q, self.linear_k, self.linear_v))
        att = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.d_k ** -0.5,
                                                   mask=None if mask is None else mask[:, None, None, :])
        return self.linear_out(att.transpose(0, 2, 1, 3).reshape(b, t, -1))


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(d, hidden)
        self.w_2 = nn.Linear(hidden, d)

    def __call__(self, x: mx.array) -> mx.array:
        return self.w_2(nn.relu(self.w_1(x)))


class EncoderLayer(nn.Module):
    """FunASR's transformer EncoderLayer as the adaptor builds it: pre-norm, no concat."""

    def __init__(self, cfg: NanoAdaptorConfig):
        super().__init__()
        self.self_attn = MultiHeadedAttention(cfg.attention_heads, cfg.llm_dim)
        self.feed_forward = PositionwiseFeedForward(cfg.llm_dim, cfg.block_ffn)
        self.norm1 = nn.LayerNorm(cfg.llm_dim, eps=cfg.eps)
        self.norm2 = nn.LayerNorm(cfg.llm_dim, eps=cfg.eps)

    def __call__(self, x: mx.array, mask: mx.array | None = None) -> mx.array:
        x = x + self.self_attn(self.norm1(x), mask)
        return x + self.feed_forward(self.norm2(x))


class NanoAdaptor(nn.Module):
    def __init__(self, cfg: NanoAdaptorConfig):
        super().__init__()
        self.cfg = cfg
        self.linear1 = nn.Linear(cfg.encoder_dim * cfg.downsample_rate, cfg.ffn_dim)
        self.linear2 = nn.Linear(cfg.ffn_dim, cfg.llm_dim)
        self.blocks = [EncoderLayer(cfg) for _ in range(cfg.n_layer)]

    @classmethod
    def load(cls, path: str | Path, cfg: NanoAdaptorConfig, quantization: dict | None = None) -> "NanoAdaptor":
        """A converted `BUNDLE/adaptor` directory of a Fun-ASR-Nano bundle."""
        model = cls(cfg)
        if quantization:
            nn.quantize(model, group_size=quantization["group_size"], bits=quantization["bits"])
        model.load_weights(str(Path(path) / "model.safetensors"), strict=True)
        model.eval()
        return model

    @property
    def dtype(self) -> mx.Dtype:
        return self.linear1.bias.dtype  # a quantized linear's weight is packed uint32

    def __call__(self, x: mx.array, mask: mx.array | None = None, rec: TapRecorder | None = None) -> mx.array:
        """x [B, T, encoder_dim]; mask [B, T], True on valid frames → [B, ceil(T / k), llm_dim]."""
        k = self.cfg.downsample_rate
        b, t, d = x.shape
        x = x.astype(self.dtype)
        if mask is not None:  # a shorter row's frames past its end are zeros, as alone it is padded
            x = x * mask[:, :, None].astype(x.dtype)
        chunks = (t - 1) // k + 1
        x = mx.pad(x, [(0, 0), (0, chunks * k - t), (0, 0)]).reshape(b, chunks, d * k)
        x = self.linear1(x)
        record(rec, nano_taps.NANO_LINEAR1, x)
        x = self.linear2(nn.relu(x))
        record(rec, nano_taps.NANO_LINEAR2, x)
        rows = None if mask is None else length_mask((mask.sum(axis=1) - 1) // k + 1, chunks)
        for i, block in enumerate(self.blocks):
            x = block(x, rows)
            record(rec, nano_taps.nano_block(i), x)
        return x
