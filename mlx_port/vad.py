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

from .frontend import Frontend, lfr_indices
from .taps import TapRecorder, record

# Scored a block at a time, as FunASR's 60 s chunks: long audio never sits whole in memory.
BLOCK_FRAMES = CHUNK_MS // 10


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


class FsmnVad(nn.Module):
    def __init__(self, cfg: VadConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = Frontend(cfg.frontend)
        self.encoder = FSMN(cfg.encoder)

    @classmethod
    def load(cls, path: str | Path) -> FsmnVad:
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

    def scores(self, samples: np.ndarray, rec: TapRecorder | None = None,
               block_frames: int = BLOCK_FRAMES) -> np.ndarray:
        """Per-frame output probabilities, [T, output_dim] float32 (T = fbank frames), computed
        `block_frames` at a time; taps hold the whole clip."""
        cfg = self.cfg
        total = fbank_frames(samples.size, cfg.frontend)
        if total == 0:
            return np.zeros((0, cfg.encoder.output_dim), np.float32)
        x = np.asarray(samples, np.float32)
        lfr = lfr_indices(total, cfg.frontend.lfr_m, 1)
        # A score looks back through every FSMN layer's memory: a block starts that far early.
        reach = cfg.encoder.fsmn_layers * (cfg.encoder.lorder - 1) * cfg.encoder.lstride
        parts, tapped = [], {}
        for start in range(0, total, block_frames):
            end = min(total, start + block_frames)
            first = max(0, start - reach)
            block_rec = None if rec is None else TapRecorder()
            scores = self._block(x, lfr[first:end], block_rec)
            parts.append(scores[start - first:])
            for name, value in (block_rec.outputs.items() if block_rec else ()):
                tapped.setdefault(name, []).append(value[start - first:])
        if rec is not None:
            rec.outputs.update({name: np.concatenate(values) for name, values in tapped.items()})
        return np.concatenate(parts)

    def _block(self, x: np.ndarray, lfr: np.ndarray, rec: TapRecorder | None) -> np.ndarray:
        """Scores of the frames whose LFR rows (global fbank frame indices) are `lfr`."""
        fe = self.cfg.frontend
        low, high = int(lfr.min()), int(lfr.max()) + 1
        fbank = self.frontend.fbank(mx.array(x[low * fe.frame_shift_samples:
                                               (high - 1) * fe.frame_shift_samples + fe.frame_length_samples]))
        feats = fbank[mx.array(lfr - low)].reshape(lfr.shape[0], -1)
        if fe.cmvn:
            feats = self.frontend.cmvn(feats)
        record(rec, VAD_FEATS, feats)
        dtype = self.encoder.in_linear1.linear.weight.dtype
        return np.array(self.encoder(feats[None].astype(dtype), rec)[0])

    def detect(self, samples: np.ndarray, *, max_end_silence_ms: int | None = None,
               max_single_segment_ms: int | None = None, chunk_ms: int = CHUNK_MS) -> VadResult:
        """Speech segments as FunASR's offline `inference` finds them (funasr_qwen4b.vad.detect)."""
        return detect(self.scores(samples), samples, self.cfg, max_end_silence_ms=max_end_silence_ms,
                      max_single_segment_ms=max_single_segment_ms, chunk_ms=chunk_ms)
