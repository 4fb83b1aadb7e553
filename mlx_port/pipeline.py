"""The MLX pipeline: audio → frontend → SenseVoiceSmall (→ CTC text) →
adaptor, the twin of reference/pipeline.py. (The LLM joins in a later stage.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from funasr_qwen4b import ctc
from funasr_qwen4b.bundle import read_bundle, require_component
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.wiring import Output, adaptor_start

from .adaptor import AudioAdaptorQwen4B
from .encoder import SenseVoiceSmall
from .taps import TapRecorder


@dataclass
class Pipeline:
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig
    adaptor: AudioAdaptorQwen4B | None = None
    keep_query_frames: bool = True

    @classmethod
    def from_bundle(cls, bundle: str | Path, query: QueryConfig | None = None, *,
                    with_adaptor: bool = True) -> "Pipeline":
        sv_dir = require_component(bundle, "sensevoice")
        components = read_bundle(bundle)["components"]
        if query is None:
            query = QueryConfig(**components["sensevoice"].get("query", {}))
        tok = sv_dir / "tokenizer.model"
        ad, keep = None, True
        if with_adaptor and "adaptor" in components:
            ad = AudioAdaptorQwen4B.from_dir(Path(bundle) / "adaptor")
            keep = components["adaptor"]["keep_query_frames"]
        return cls(SenseVoiceSmall.from_dir(sv_dir), ctc.CtcTokenizer(tok) if tok.is_file() else None,
                   query, ad, keep)

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None, dither: float = 0.0) -> Output:
        """One utterance (16 kHz mono float) through every stage there is."""
        sv = self.sensevoice
        feats = sv.frontend(mx.array(samples), rec, dither)[None]
        enc, lengths = sv.encode(feats, mx.array([feats.shape[1]]), self.query, rec)
        frame_ids = np.array(sv.ctc_argmax(enc, rec))[0, : int(lengths[0])]
        out = Output(ctc.decode(frame_ids, sv.cfg.blank_id, len(self.query.ids), self.tokenizer))
        if self.adaptor is not None:
            x = enc[:, adaptor_start(self.query, self.keep_query_frames):]
            out.audio_embeds = np.array(self.adaptor(x, rec=rec).astype(mx.float32))[0]
        return out
