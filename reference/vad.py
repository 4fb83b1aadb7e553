"""FunASR's FSMN VAD as AutoModel runs it: FsmnVADStreaming built from config.yaml and
loaded strictly from the original model.pt, with the WavFrontendOnline beside it. Segments
are FunASR's own (`inference`, offline, its state machine); the frame decisions are the ones
its GetFrameState returns on the way. FunASR is imported when a VAD is loaded: conversion
reads the checkpoint with torch alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import torch

from funasr_qwen4b.vad import (CHUNK_MS, NOT_EVALUATED, VAD_FEATS, VAD_SCORES, VadConfig, VadResult, VadSource,
                               check_vad_shapes, fbank_frames, vad_taps)

from .taps import TapRecorder
from .torch_load import check_finite, load_pt, state_dict_of


def load_vad_state(src: VadSource) -> tuple[VadConfig, dict[str, torch.Tensor]]:
    """Config and checked state_dict of an original FSMN VAD directory."""
    cfg = src.vad_config
    sd = state_dict_of(load_pt(src.model_pt), src.model_pt)
    check_vad_shapes({k: tuple(v.shape) for k, v in sd.items()}, cfg.encoder, str(src.model_pt))
    check_finite(sd, src.model_pt)
    return cfg, sd


class FsmnVad:
    """FunASR's FsmnVADStreaming and its WavFrontendOnline (dither 0)."""

    def __init__(self, model: torch.nn.Module, cfg: VadConfig, frontend, source: VadSource):
        self.model = model.eval()
        self.cfg, self.frontend, self.source = cfg, frontend, source

    @classmethod
    def load(cls, path: str | Path) -> FsmnVad:
        """An original FSMN VAD directory (model.pt, config.yaml, am.mvn)."""
        from . import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
        from funasr.frontends.wav_frontend import WavFrontendOnline
        from funasr.models.fsmn_vad_streaming import encoder  # noqa: F401  (registers FSMN)
        from funasr.models.fsmn_vad_streaming.model import FsmnVADStreaming

        src = VadSource.from_dir(path)
        cfg, sd = load_vad_state(src)
        # AutoModel passes model_conf and every top-level key of config.yaml.
        model = FsmnVADStreaming(**{**(src.config.get("model_conf") or {}), **src.config})
        model.load_state_dict(sd, strict=True)
        conf = {**(src.config.get("frontend_conf") or {}), "dither": 0.0}
        conf.pop("cmvn_file", None)
        frontend = WavFrontendOnline(cmvn_file=str(src.cmvn_file) if src.cmvn_file else None, **conf)
        return cls(model, cfg, frontend, src)

    @torch.no_grad()
    def features(self, samples: np.ndarray) -> torch.Tensor:
        """16 kHz samples → WavFrontendOnline's features of the whole clip, [1, T, input_dim]."""
        x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
        feats, _ = self.frontend(x, [x.shape[1]], cache={}, is_final=True)
        return feats

    @torch.no_grad()
    def scores(self, samples: np.ndarray, rec: TapRecorder | None = None) -> np.ndarray:
        """Per-frame output probabilities, [T, output_dim] float32 (T = fbank frames)."""
        if fbank_frames(samples.size, self.cfg.frontend) == 0:
            return np.zeros((0, self.cfg.encoder.output_dim), np.float32)
        feats = self.features(samples)
        if rec is None:
            return self.model.encoder(feats)[0].numpy()
        rec.put(VAD_FEATS, feats)
        names = [n for n in vad_taps(self.cfg.encoder.fsmn_layers) if n not in (VAD_FEATS, VAD_SCORES)]
        with rec.hooks(self.model, names, prefix="vad."):
            scores = self.model.encoder(feats)
        rec.put(VAD_SCORES, scores)
        return scores[0].numpy()

    @torch.no_grad()
    def detect(self, samples: np.ndarray, *, max_end_silence_ms: int | None = None,
               max_single_segment_ms: int | None = None, chunk_ms: int = CHUNK_MS) -> VadResult:
        """FunASR's `inference` on one utterance, offline, as AutoModel calls it (vad_kwargs'
        max_single_segment_time set on the model, max_end_silence_time passed to the call)."""
        model, opts = self.model, self.model.vad_opts
        saved = dict(vars(opts))  # inference keeps a max_end_silence_time it is given: restore after
        states = np.full(fbank_frames(samples.size, self.cfg.frontend), NOT_EVALUATED, np.int8)
        frame_state = model.GetFrameState

        def recording(t: int, cache: dict):
            state = frame_state(t, cache=cache)
            states[t + cache["stats"].last_drop_frames] = state.value
            return state

        kwargs = {"device": "cpu", "chunk_size": chunk_ms, "is_streaming_input": False}
        if max_end_silence_ms is not None:
            kwargs["max_end_silence_time"] = max_end_silence_ms
        if max_single_segment_ms is not None:
            opts.max_single_segment_time = max_single_segment_ms
        model.GetFrameState = recording
        printed = io.StringIO()  # FunASR prints its state machine's complaints: stdout is for results
        try:
            x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
            with contextlib.redirect_stdout(printed):
                results, _ = model.inference([x], key=["vad"], frontend=self.frontend, **kwargs)
        finally:
            del model.GetFrameState
            vars(opts).update(saved)
        for line in printed.getvalue().splitlines():
            if line.strip():
                logging.getLogger("funasr").debug(line.strip())
        return VadResult([(int(s), int(e)) for s, e in results[0]["value"]], states)
