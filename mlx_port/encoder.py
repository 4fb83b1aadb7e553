"""SenseVoiceSmall in MLX: query embedding, SAN-M encoder, CTC head; the twin
of reference/encoder.py. Module names are FunASR's checkpoint keys, so the
converted weights load with strict=True and no renaming.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from funasr_qwen4b import taps
from funasr_qwen4b.config import EMBED_ROWS, EncoderConfig, QueryConfig, SenseVoiceConfig

from .frontend import Frontend
from .taps import TapRecorder, record


def position_encoding(t: int, d: int, dtype: mx.Dtype) -> mx.array:
    """SinusoidalPositionEncoder: positions start at 1; sin half then cos half."""
    increment = math.log(10000.0) / (d / 2 - 1)
    inv = mx.exp(mx.arange(d // 2, dtype=mx.float32) * -increment)
    scaled = mx.arange(1, t + 1, dtype=mx.float32)[:, None] * inv[None, :]
    return mx.concatenate([mx.sin(scaled), mx.cos(scaled)], axis=1).astype(dtype)


class MultiHeadedAttentionSANM(nn.Module):
    def __init__(self, n_head: int, in_feat: int, n_feat: int, kernel_size: int, padding: tuple[int, int]):
        super().__init__()
        self.h, self.d_k = n_head, n_feat // n_head
        self.linear_q_k_v = nn.Linear(in_feat, 3 * n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        # Depthwise; weight (C_out, K, 1), fixed at conversion.
        self.fsmn_block = nn.Conv1d(n_feat, n_feat, kernel_size, groups=n_feat, bias=False)
        self.padding = padding

    def forward_fsmn(self, v: mx.array, mask: mx.array | None) -> mx.array:
        """FSMN memory on v (not on the attention output), masked before and after."""
        if mask is not None:
            v = v * mask
        x = self.fsmn_block(mx.pad(v, [(0, 0), self.padding, (0, 0)])) + v
        return x if mask is None else x * mask

    def __call__(self, x: mx.array, mask: mx.array | None) -> mx.array:
        """`mask` [B, T], True on valid frames; None when no frame is padding (one
        utterance): the masking is then the identity, and its kernels are skipped."""
        b, t, _ = x.shape
        q, k, v = mx.split(self.linear_q_k_v(x), 3, axis=-1)
        fsmn_memory = self.forward_fsmn(v, None if mask is None else mask[:, :, None].astype(v.dtype))
        q, k, v = (a.reshape(b, t, self.h, self.d_k).transpose(0, 2, 1, 3) for a in (q, k, v))
        att = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.d_k ** -0.5,
                                                   mask=None if mask is None else mask[:, None, None, :])
        return self.linear_out(att.transpose(0, 2, 1, 3).reshape(b, t, -1)) + fsmn_memory


class PositionwiseFeedForward(nn.Module):
    def __init__(self, idim: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden)
        self.w_2 = nn.Linear(hidden, idim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.w_2(nn.relu(self.w_1(x)))


class EncoderLayerSANM(nn.Module):
    """Pre-norm SAN-M layer. FunASR's LayerNorm computes in fp32 whatever the dtype;
    mx.fast.layer_norm does too (fp32 accumulation, one rounding at the end), so float16
    needs no casts around it, which would cost two kernels a norm (docs/performance.md)."""

    def __init__(self, in_size: int, cfg: EncoderConfig):
        super().__init__()
        size = cfg.output_size
        self.in_size, self.size = in_size, size
        self.self_attn = MultiHeadedAttentionSANM(cfg.attention_heads, in_size, size, cfg.kernel_size, cfg.fsmn_padding)
        self.feed_forward = PositionwiseFeedForward(size, cfg.linear_units)
        self.norm1 = nn.LayerNorm(in_size, eps=cfg.eps)
        self.norm2 = nn.LayerNorm(size, eps=cfg.eps)

    def __call__(self, x: mx.array, mask: mx.array | None) -> mx.array:
        if self.in_size != self.size:
            # encoders0 sees the scaled features, whose rows can sit far from zero (without CMVN,
            # as Fun-ASR-Nano runs: means near 90, spreads near 100). mx.fast.layer_norm's one-pass
            # variance then loses digits PyTorch's does not; centring first keeps them (the same
            # norm in exact arithmetic).
            x = x - x.mean(axis=-1, keepdims=True)
        attn = self.self_attn(self.norm1(x), mask)
        # encoders0 maps 560 → 512: no residual can be added there.
        x = x + attn if self.in_size == self.size else attn
        return x + self.feed_forward(self.norm2(x))


class SenseVoiceEncoderSmall(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.output_size = cfg.output_size
        self.encoders0 = [EncoderLayerSANM(cfg.input_size, cfg)]
        self.encoders = [EncoderLayerSANM(cfg.output_size, cfg) for _ in range(cfg.num_blocks - 1)]
        self.after_norm = nn.LayerNorm(cfg.output_size, eps=cfg.eps)
        self.tp_encoders = [EncoderLayerSANM(cfg.output_size, cfg) for _ in range(cfg.tp_blocks)]
        self.tp_norm = nn.LayerNorm(cfg.output_size, eps=cfg.eps)

    def __call__(self, xs: mx.array, mask: mx.array | None, rec: TapRecorder | None = None) -> mx.array:
        """xs [B, T, input_size], mask [B, T] (True on valid frames, None: all) → [B, T, output_size]."""
        xs = xs * self.output_size ** 0.5  # on the 560-d input, query rows included
        xs = xs + position_encoding(xs.shape[1], xs.shape[2], xs.dtype)
        xs = self.encoders0[0](xs, mask)
        record(rec, taps.ENCODERS0, xs)
        for i, layer in enumerate(self.encoders):
            xs = layer(xs, mask)
            record(rec, taps.encoder_layer(i), xs)
        xs = self.after_norm(xs)
        record(rec, taps.AFTER_NORM, xs)
        for i, layer in enumerate(self.tp_encoders):
            xs = layer(xs, mask)
            record(rec, taps.tp_layer(i), xs)
        xs = self.tp_norm(xs)
        record(rec, taps.TP_NORM, xs)
        return xs


class CTC(nn.Module):
    def __init__(self, d: int, vocab_size: int):
        super().__init__()
        self.ctc_lo = nn.Linear(d, vocab_size)


def length_mask(lengths: mx.array, t: int) -> mx.array:
    return mx.arange(t)[None, :] < lengths[:, None]


class SenseVoiceSmall(nn.Module):
    """SenseVoiceSmall; Fun-ASR-Nano's encoder is the same without query table (`cfg.embed`)
    or CTC head (`cfg.vocab_size` None)."""

    def __init__(self, cfg: SenseVoiceConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = Frontend(cfg.frontend)
        if cfg.embed:
            self.embed = nn.Embedding(EMBED_ROWS, cfg.encoder.input_size)
        self.encoder = SenseVoiceEncoderSmall(cfg.encoder)
        if cfg.vocab_size is not None:
            self.ctc = CTC(cfg.encoder.output_size, cfg.vocab_size)

    @classmethod
    def load(cls, path: str | Path, cfg: SenseVoiceConfig) -> "SenseVoiceSmall":
        """A converted `BUNDLE/sensevoice` directory (its config from the Bundle)."""
        path = Path(path)
        model = cls(cfg)
        model.load_weights(str(path / "model.safetensors"), strict=True)
        model.eval()
        return model

    @property
    def dtype(self) -> mx.Dtype:
        return self.encoder.after_norm.weight.dtype

    def query_rows(self, query: QueryConfig, batch: int) -> mx.array:
        if not self.cfg.embed:
            raise ValueError("this encoder takes no query rows (Fun-ASR-Nano feeds it the features alone); "
                             "its language goes into the prompt")
        rows = self.embed(mx.array([query.ids]))
        return mx.broadcast_to(rows, (batch, *rows.shape[1:]))

    def encode(self, feats: mx.array, lengths: mx.array, query: QueryConfig,
               rec: TapRecorder | None = None) -> tuple[mx.array, mx.array]:
        """feats [B, T, D] (float32) → encoder output [B, 4 + T, d] and its lengths."""
        speech = feats.astype(self.dtype)
        if query.enabled:
            speech = mx.concatenate([self.query_rows(query, feats.shape[0]), speech], axis=1)
            lengths = lengths + len(query.ids)
        record(rec, taps.ENCODER_INPUT, speech)
        padded = bool(mx.any(lengths < speech.shape[1]))
        return self.encoder(speech, length_mask(lengths, speech.shape[1]) if padded else None, rec), lengths

    def ctc_argmax(self, enc: mx.array, rec: TapRecorder | None = None) -> np.ndarray | None:
        """Per-frame argmax of the CTC logits, [B, T] (log-softmax keeps the argmax); None
        without a CTC head."""
        if self.cfg.vocab_size is None:
            return None
        logits = self.ctc.ctc_lo(enc)
        record(rec, taps.CTC_LOGITS, logits)
        return np.array(mx.argmax(logits, axis=-1))
