"""The reference pipeline: audio → frontend → SenseVoiceSmall (→ CTC text)
→ adaptor → Qwen3 (→ text). The twin of mlx_port/pipeline.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from funasr_qwen4b import ctc
from funasr_qwen4b.config import AdaptorConfig, QueryConfig
from funasr_qwen4b.decoding import DecodeConfig
from funasr_qwen4b.prompt import PRESETS, load_tokenizer
from funasr_qwen4b.sources import SenseVoiceSource
from funasr_qwen4b.wiring import LlmSetup, Output, adaptor_start, timed

from .adaptor import AudioAdaptorQwen4B
from .encoder import SenseVoiceSmall
from .frontend import Frontend
from .llm import Qwen3
from .taps import TapRecorder, to_numpy


@dataclass
class Pipeline:
    frontend: Frontend
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig
    adaptor: AudioAdaptorQwen4B | None = None
    keep_query_frames: bool = True
    llm: Qwen3 | None = None
    setup: LlmSetup | None = None

    @classmethod
    def from_sources(cls, sensevoice: str | Path, query: QueryConfig = QueryConfig(), *, dither: float = 0.0,
                     adaptor: str | Path | None = None, adaptor_cfg: AdaptorConfig | None = None,
                     keep_query_frames: bool = True, llm: str | Path | None = None,
                     template: str = PRESETS["raw"], decode: DecodeConfig = DecodeConfig()) -> "Pipeline":
        """The original files; `adaptor_cfg` gives what shapes cannot (heads, norm order, activation, eps)."""
        src = SenseVoiceSource.from_dir(sensevoice)
        sv = SenseVoiceSmall.from_source(src)
        tok = ctc.CtcTokenizer(src.bpemodel) if src.bpemodel else None
        ad = None
        if adaptor is not None:
            c = adaptor_cfg or AdaptorConfig()
            ad = AudioAdaptorQwen4B.from_pt(adaptor, nhead=c.nhead, norm_first=c.norm_first,
                                            activation=c.activation, eps=c.eps)
        lm = setup = None
        if llm is not None:
            lm, setup = Qwen3.from_dir(llm), LlmSetup.build(load_tokenizer(llm), template, decode)
        return cls(Frontend(sv.cfg.frontend, src.cmvn_file, dither), sv, tok, query, ad, keep_query_frames, lm, setup)

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None,
            on_text: Callable[[str], None] | None = None) -> Output:
        """One utterance (16 kHz mono float) through every stage there is."""
        t: dict[str, float] = {}
        with timed(t, "frontend"):
            feats = self.frontend(samples, rec)[None]
        with timed(t, "encoder"):
            enc, lengths = self.sensevoice.encode(feats, torch.tensor([feats.shape[1]]), self.query, rec)
            frame_ids = self.sensevoice.ctc_argmax(enc, rec)[0, : int(lengths[0])]
        out = Output(ctc.decode(frame_ids, self.sensevoice.cfg.blank_id, len(self.query.ids), self.tokenizer), timings=t)
        if self.adaptor is None:
            return out
        with timed(t, "adaptor"):
            audio = self.adaptor.run(enc[:, adaptor_start(self.query, self.keep_query_frames):], rec=rec)[0]
        out.audio_embeds = to_numpy(audio)
        if self.llm is None:
            return out
        embeds = self.llm.inputs_embeds(self.setup.prompt, audio, rec)
        self.setup.transcribe(self.llm.tokens(embeds, self.setup.decode, rec), samples.size / 16000, out, on_text, rec)
        return out

    def generate_text(self, prompt_ids: list[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.setup.complete(self.llm.tokens(self.llm.embed(prompt_ids)[None], self.setup.decode), max_tokens)
