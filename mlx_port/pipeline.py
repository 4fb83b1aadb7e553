"""The MLX pipeline: audio → frontend → SenseVoiceSmall → CTC text, the twin
of reference/pipeline.py. (The adaptor and the LLM join in later stages.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from funasr_qwen4b import ctc
from funasr_qwen4b.bundle import read_bundle, require_component
from funasr_qwen4b.config import QueryConfig

from .encoder import SenseVoiceSmall
from .taps import TapRecorder


@dataclass
class Pipeline:
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig

    @classmethod
    def from_bundle(cls, bundle: str | Path, query: QueryConfig | None = None) -> "Pipeline":
        sv_dir = require_component(bundle, "sensevoice")
        if query is None:
            query = QueryConfig(**read_bundle(bundle)["components"]["sensevoice"].get("query", {}))
        tok = sv_dir / "tokenizer.model"
        return cls(SenseVoiceSmall.from_dir(sv_dir), ctc.CtcTokenizer(tok) if tok.is_file() else None, query)

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None, dither: float = 0.0) -> ctc.CtcResult:
        """One utterance (16 kHz mono float) through every stage there is."""
        sv = self.sensevoice
        feats = sv.frontend(mx.array(samples), rec, dither)[None]
        enc, lengths = sv.encode(feats, mx.array([feats.shape[1]]), self.query, rec)
        frame_ids = np.array(sv.ctc_argmax(enc, rec))[0, : int(lengths[0])]
        return ctc.decode(frame_ids, sv.cfg.blank_id, len(self.query.ids), self.tokenizer)
