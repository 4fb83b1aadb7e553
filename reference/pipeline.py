"""The reference pipeline: audio → frontend → SenseVoiceSmall (→ CTC text)
→ adaptor. (The LLM joins in a later stage.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from funasr_qwen4b import ctc
from funasr_qwen4b.config import AdaptorConfig, QueryConfig
from funasr_qwen4b.sources import SenseVoiceSource
from funasr_qwen4b.wiring import Output, adaptor_start

from .adaptor import AudioAdaptorQwen4B
from .encoder import SenseVoiceSmall
from .frontend import Frontend
from .taps import TapRecorder, to_numpy


@dataclass
class Pipeline:
    frontend: Frontend
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig
    adaptor: AudioAdaptorQwen4B | None = None
    keep_query_frames: bool = True

    @classmethod
    def from_sources(cls, sensevoice: str | Path, query: QueryConfig = QueryConfig(), *, dither: float = 0.0,
                     adaptor: str | Path | None = None, adaptor_cfg: AdaptorConfig | None = None,
                     keep_query_frames: bool = True) -> "Pipeline":
        """The original files; `adaptor_cfg` gives what shapes cannot (heads, norm order, activation, eps)."""
        src = SenseVoiceSource.from_dir(sensevoice)
        sv = SenseVoiceSmall.from_source(src)
        tok = ctc.CtcTokenizer(src.bpemodel) if src.bpemodel else None
        ad = None
        if adaptor is not None:
            c = adaptor_cfg or AdaptorConfig()
            ad = AudioAdaptorQwen4B.from_pt(adaptor, nhead=c.nhead, norm_first=c.norm_first,
                                            activation=c.activation, eps=c.eps)
        return cls(Frontend(sv.cfg.frontend, src.cmvn_file, dither), sv, tok, query, ad, keep_query_frames)

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None) -> Output:
        """One utterance (16 kHz mono float) through every stage there is."""
        feats = self.frontend(samples, rec)[None]
        enc, lengths = self.sensevoice.encode(feats, torch.tensor([feats.shape[1]]), self.query, rec)
        frame_ids = self.sensevoice.ctc_argmax(enc, rec)[0, : int(lengths[0])]
        out = Output(ctc.decode(frame_ids, self.sensevoice.cfg.blank_id, len(self.query.ids), self.tokenizer))
        if self.adaptor is not None:
            x = enc[:, adaptor_start(self.query, self.keep_query_frames):]
            out.audio_embeds = to_numpy(self.adaptor.run(x, rec=rec))[0]
        return out
