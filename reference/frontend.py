"""FunASR's WavFrontend, step by step so that each step is a tap.

The steps are WavFrontend.forward's own calls (FunASR's fbank, apply_lfr,
apply_cmvn); tests check the result equals WavFrontend.forward exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from . import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
from funasr.frontends.wav_frontend import WavFrontend, apply_cmvn, apply_lfr
from funasr.utils import fbank as kaldi

from funasr_qwen4b import taps
from funasr_qwen4b.config import FrontendConfig

from .taps import TapRecorder


class Frontend:
    def __init__(self, cfg: FrontendConfig, cmvn_file: str | Path | None, dither: float | None = None):
        if cfg.cmvn and cmvn_file is None:
            raise ValueError("the frontend config asks for CMVN but no am.mvn was given")
        self.cfg = cfg
        self.dither = cfg.dither if dither is None else dither
        self.wav_frontend = WavFrontend(
            cmvn_file=str(cmvn_file) if cfg.cmvn else None, fs=cfg.fs, window=cfg.window,
            n_mels=cfg.n_mels, frame_length=cfg.frame_length, frame_shift=cfg.frame_shift,
            lfr_m=cfg.lfr_m, lfr_n=cfg.lfr_n, dither=self.dither, snip_edges=cfg.snip_edges,
            upsacle_samples=cfg.upscale_samples,
        )

    def __call__(self, samples: np.ndarray, rec: TapRecorder | None = None) -> torch.Tensor:
        """16 kHz mono float samples in [-1, 1] → features [T', n_mels * lfr_m]."""
        self.cfg.check_samples(samples.size)
        fe = self.wav_frontend
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        if fe.upsacle_samples:
            waveform = waveform * (1 << 15)
        fbank = kaldi.fbank(
            waveform[None], num_mel_bins=fe.n_mels, frame_length=fe.frame_length,
            frame_shift=fe.frame_shift, dither=fe.dither, energy_floor=0.0,
            window_type=fe.window, sample_frequency=fe.fs, snip_edges=fe.snip_edges,
        )
        lfr = apply_lfr(fbank, fe.lfr_m, fe.lfr_n) if (fe.lfr_m, fe.lfr_n) != (1, 1) else fbank
        # apply_cmvn works in place: give it a copy so the lfr tap survives.
        feats = apply_cmvn(lfr.clone(), fe.cmvn) if fe.cmvn is not None else lfr
        if rec is not None:
            rec.put(taps.FBANK, fbank)
            rec.put(taps.LFR, lfr, fbank)
            rec.put(taps.CMVN, feats, lfr)
        return feats
