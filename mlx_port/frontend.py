"""Kaldi fbank → LFR → CMVN in MLX, the twin of reference/frontend.py.

numpy only builds constants (window, mel banks, frame and LFR indices);
every per-utterance computation is MLX.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from funasr_qwen4b import taps
from funasr_qwen4b.config import FrontendConfig

from .taps import TapRecorder, record

LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi: log(max(E, FLT_EPSILON))
PREEMPH = 0.97
LOW_FREQ = 20.0


def window(kind: str, n: int) -> np.ndarray:
    """Kaldi's symmetric windows (feature-window.cc)."""
    a = 2 * math.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    if kind == "hamming":
        w = 0.54 - 0.46 * np.cos(a * i)
    elif kind == "hanning":
        w = 0.5 - 0.5 * np.cos(a * i)
    elif kind == "povey":
        w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    else:  # rectangular
        w = np.ones(n)
    return w.astype(np.float32)


def mel_banks(n_mels: int, fft_size: int, fs: int) -> np.ndarray:
    """Kaldi's mel triangles (mel-computations.cc), [fft_size // 2 + 1, n_mels].

    Triangles are linear in the mel domain, 20 Hz to Nyquist; the Nyquist bin
    gets weight 0 (Kaldi only sums the first fft_size / 2 bins).
    """
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(LOW_FREQ), mel(fs / 2)
    delta = (hi - lo) / (n_mels + 1)
    m = mel(np.arange(fft_size // 2) * fs / fft_size)[:, None]
    left = lo + np.arange(n_mels) * delta
    center, right = left + delta, left + 2 * delta
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    w = np.where((m > left) & (m < right), np.where(m <= center, up, down), 0.0)
    return np.concatenate([w, np.zeros((1, n_mels))]).astype(np.float32)


def lfr_indices(t: int, m: int, n: int) -> np.ndarray:
    """Frame i of LFR stacks fbank frames clamp(n*i + j - (m-1)//2, 0, t-1), j < m."""
    t_lfr = -(-t // n)
    idx = n * np.arange(t_lfr)[:, None] + np.arange(m)[None, :] - (m - 1) // 2
    return np.clip(idx, 0, t - 1).astype(np.int32)


class CMVN(nn.Module):
    """am.mvn as arrays: x = (x + shift) * scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.shift = mx.zeros((dim,))
        self.scale = mx.ones((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        return (x + self.shift) * self.scale


class Frontend(nn.Module):
    def __init__(self, cfg: FrontendConfig, dither: float | None = None):
        super().__init__()
        self.cfg = cfg
        self.dither = cfg.dither if dither is None else dither
        if cfg.cmvn:
            self.cmvn = CMVN(cfg.feature_dim)
        self._window = mx.array(window(cfg.window, cfg.frame_length_samples))
        self._mel = mx.array(mel_banks(cfg.n_mels, cfg.fft_size, cfg.fs))
        self.freeze()

    def fbank(self, samples: mx.array) -> mx.array:
        """[N] samples in [-1, 1] → [T, n_mels] log-mel, T = 1 + (N - 400) // 160."""
        cfg = self.cfg
        size, shift = cfg.frame_length_samples, cfg.frame_shift_samples
        cfg.check_samples(samples.size)
        x = samples.astype(mx.float32)
        if cfg.upscale_samples:
            x = x * 32768.0
        t = 1 + (x.size - size) // shift
        frames = x[mx.array(np.arange(t)[:, None] * shift + np.arange(size)[None, :])]
        if self.dither:
            frames = frames + self.dither * mx.random.normal(frames.shape)
        frames = frames - mx.mean(frames, axis=1, keepdims=True)
        # Pre-emphasis; the first sample is emphasised against itself.
        frames = mx.concatenate([frames[:, :1] * (1 - PREEMPH), frames[:, 1:] - PREEMPH * frames[:, :-1]], axis=1)
        frames = frames * self._window
        spec = mx.fft.rfft(frames, n=cfg.fft_size, axis=1)
        power = mx.square(mx.real(spec)) + mx.square(mx.imag(spec))
        return mx.log(mx.maximum(power @ self._mel, LOG_FLOOR))

    def lfr(self, fbank: mx.array) -> mx.array:
        cfg = self.cfg
        if (cfg.lfr_m, cfg.lfr_n) == (1, 1):
            return fbank
        idx = lfr_indices(fbank.shape[0], cfg.lfr_m, cfg.lfr_n)
        return fbank[mx.array(idx)].reshape(idx.shape[0], -1)

    def __call__(self, samples: mx.array, rec: TapRecorder | None = None) -> mx.array:
        """16 kHz mono float samples in [-1, 1] → features [T', n_mels * lfr_m]."""
        fbank = self.fbank(samples)
        record(rec, taps.FBANK, fbank)
        lfr = self.lfr(fbank)
        record(rec, taps.LFR, lfr)
        feats = self.cmvn(lfr) if self.cfg.cmvn else lfr
        record(rec, taps.CMVN, feats)
        return feats

