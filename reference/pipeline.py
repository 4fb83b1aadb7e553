"""The reference pipeline: audio → frontend → SenseVoiceSmall → CTC text.
(The adaptor and the LLM join in later stages.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from funasr_qwen4b import ctc
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.sources import SenseVoiceSource

from .encoder import SenseVoiceSmall
from .frontend import Frontend
from .taps import TapRecorder


@dataclass
class Pipeline:
    frontend: Frontend
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig

    @classmethod
    def from_sensevoice_dir(cls, path: str | Path, query: QueryConfig = QueryConfig(),
                            dither: float = 0.0) -> "Pipeline":
        src = SenseVoiceSource.from_dir(path)
        sv = SenseVoiceSmall.from_source(src)
        tok = ctc.CtcTokenizer(src.bpemodel) if src.bpemodel else None
        return cls(Frontend(sv.cfg.frontend, src.cmvn_file, dither), sv, tok, query)

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None) -> ctc.CtcResult:
        """One utterance (16 kHz mono float) through every stage there is."""
        feats = self.frontend(samples, rec)[None]
        enc, lengths = self.sensevoice.encode(feats, torch.tensor([feats.shape[1]]), self.query, rec)
        frame_ids = self.sensevoice.ctc_argmax(enc, rec)[0, : int(lengths[0])]
        return ctc.decode(frame_ids, self.sensevoice.cfg.blank_id, len(self.query.ids), self.tokenizer)
