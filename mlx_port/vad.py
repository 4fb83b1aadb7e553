"""FunASR's FSMN VAD in MLX, the twin of reference/vad.py: the shared frontend (with the
VAD's own CMVN and LFR 5/1), the FSMN encoder, and the decisions of funasr_qwen4b/vad.py.
Module names are FunASR's checkpoint keys, so the converted weights load with strict=True
and no renaming; the FSMN memory is a depthwise conv1d (weight (C, K, 1), fixed at conversion).
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from funasr_qwen4b.files import read_json
from funasr_qwen4b.vad import (
    CHUNK_MS, LAYOUT, VAD_FEATS, VAD_IN_LINEAR1, VAD_IN_LINEAR2, VAD_OUT_LINEAR1, VAD_OUT_LINEAR2, VAD_SCORES,
    FsmnConfig, VadConfig, VadResult, detect, fbank_frames, vad_fsmn_layer,
)

from .frontend import Frontend
from .taps import TapRecorder, record


class Linear(nn.Module):
    """FunASR's LinearTransform / AffineTransform: an nn.Linear under `.linear`."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear(x)


class FSMNBlock(nn.Module):
    """Memory over the past lorder frames (dilated by lstride), added to the frame itself."""

    def __init__(self, dim: int, lorder: int, lstride: int):
        super().__init__()
        self.left = (lorder - 1) * lstride
        self.conv_left = nn.Conv1d(dim, dim, lorder, dilation=lstride, groups=dim, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return x + self.conv_left(mx.pad(x, [(0, 0), (self.left, 0), (0, 0)]))


class BasicBlock(nn.Module):
    def __init__(self, cfg: FsmnConfig):
        super().__init__()
        self.linear = Linear(cfg.linear_dim, cfg.proj_dim, bias=False)
        self.fsmn_block = FSMNBlock(cfg.proj_dim, cfg.lorder, cfg.lstride)
        self.affine = Linear(cfg.proj_dim, cfg.linear_dim)

    def __call__(self, x: mx.array) -> mx.array:
        return nn.relu(self.affine(self.fsmn_block(self.linear(x))))


class FSMN(nn.Module):
    def __init__(self, cfg: FsmnConfig):
        super().__init__()
        self.in_linear1 = Linear(cfg.input_dim, cfg.input_affine_dim)
        self.in_linear2 = Linear(cfg.input_affine_dim, cfg.linear_dim)
        self.fsmn = [BasicBlock(cfg) for _ in range(cfg.fsmn_layers)]
        self.out_linear1 = Linear(cfg.linear_dim, cfg.output_affine_dim)
        self.out_linear2 = Linear(cfg.output_affine_dim, cfg.output_dim)

    def __call__(self, x: mx.array, rec: TapRecorder | None = None) -> mx.array:
        """[B, T, input_dim] → output probabilities [B, T, output_dim] (float32)."""
        x = self.in_linear1(x)
        record(rec, VAD_IN_LINEAR1, x)
        x = self.in_linear2(x)
        record(rec, VAD_IN_LINEAR2, x)
        x = nn.relu(x)
        for i, block in enumerate(self.fsmn):
            x = block(x)
            record(rec, vad_fsmn_layer(i), x)
        x = self.out_linear1(x)
        record(rec, VAD_OUT_LINEAR1, x)
        x = self.out_linear2(x)
        record(rec, VAD_OUT_LINEAR2, x)
        # float32 whatever the weights: the decisions compare probabilities with a threshold.
        scores = mx.softmax(x.astype(mx.float32), axis=-1)
        record(rec, VAD_SCORES, scores)
        return scores


class Vad(nn.Module):
    def __init__(self, cfg: VadConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = Frontend(cfg.frontend)
        self.encoder = FSMN(cfg.encoder)

    @classmethod
    def load(cls, path: str | Path) -> Vad:
        """A converted VAD component directory (`BUNDLE/vad`: config.json + model.safetensors)."""
        path = Path(path)
        data = read_json(path / "config.json", "reconvert the vad component")
        if data.get("layout") != LAYOUT:
            raise ValueError(f"{path / 'config.json'}: layout {data.get('layout')} is not {LAYOUT}; reconvert with "
                             f"this version")
        model = cls(VadConfig.from_dict(data.get("config"), f"{path / 'config.json'} config"))
        model.load_weights(str(path / "model.safetensors"), strict=True)
        model.eval()
        return model

    def scores(self, samples: np.ndarray, rec: TapRecorder | None = None) -> np.ndarray:
        """Per-frame output probabilities, [T, output_dim] float32 (T = fbank frames)."""
        if fbank_frames(samples.size, self.cfg.frontend) == 0:
            return np.zeros((0, self.cfg.encoder.output_dim), np.float32)
        feats = self.frontend(mx.array(np.asarray(samples, np.float32)))
        record(rec, VAD_FEATS, feats)
        dtype = self.encoder.in_linear1.linear.weight.dtype
        return np.array(self.encoder(feats[None].astype(dtype), rec)[0])

    def detect(self, samples: np.ndarray, *, max_end_silence_ms: int | None = None,
               max_single_segment_ms: int | None = None, chunk_ms: int = CHUNK_MS) -> VadResult:
        """Speech segments as FunASR's offline `inference` finds them (funasr_qwen4b.vad.detect)."""
        return detect(self.scores(samples), samples, self.cfg, max_end_silence_ms=max_end_silence_ms,
                      max_single_segment_ms=max_single_segment_ms, chunk_ms=chunk_ms)
