"""The MLX pipeline: audio → frontend → SenseVoiceSmall (→ CTC text) →
adaptor → Qwen3 (→ text), the twin of reference/pipeline.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np

from funasr_qwen4b import ctc
from funasr_qwen4b.bundle import read_bundle, require_component
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.decoding import DecodeConfig
from funasr_qwen4b.prompt import load_tokenizer, template_text
from funasr_qwen4b.wiring import LlmSetup, Output, adaptor_start, timed

from .adaptor import AudioAdaptorQwen4B
from .encoder import SenseVoiceSmall
from .llm import Qwen3
from .taps import TapRecorder


@dataclass
class Pipeline:
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig
    adaptor: AudioAdaptorQwen4B | None = None
    keep_query_frames: bool = True
    llm: Qwen3 | None = None
    setup: LlmSetup | None = None

    @classmethod
    def from_bundle(cls, bundle: str | Path, query: QueryConfig | None = None, *, ctc_only: bool = False,
                    template: str | None = None, decode: DecodeConfig | None = None) -> "Pipeline":
        """`template`: template text (default: the bundle's default preset)."""
        sv_dir = require_component(bundle, "sensevoice")
        meta = read_bundle(bundle)
        components = meta["components"]
        if query is None:
            query = QueryConfig(**components["sensevoice"].get("query", {}))
        tok = sv_dir / "tokenizer.model"
        pipe = cls(SenseVoiceSmall.from_dir(sv_dir), ctc.CtcTokenizer(tok) if tok.is_file() else None, query)
        if ctc_only:
            return pipe
        if "adaptor" in components:
            pipe.adaptor = AudioAdaptorQwen4B.from_dir(Path(bundle) / "adaptor")
            pipe.keep_query_frames = components["adaptor"]["keep_query_frames"]
        if "llm" in components:
            llm_dir = Path(bundle) / "llm"
            pipe.llm = Qwen3.from_dir(llm_dir)
            decode = decode or DecodeConfig(**meta.get("generation", {}))
            pipe.setup = LlmSetup.build(load_tokenizer(llm_dir), template or template_text(bundle_meta=meta), decode)
        return pipe

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None,
            on_text: Callable[[str], None] | None = None, dither: float = 0.0) -> Output:
        """One utterance (16 kHz mono float) through every stage there is."""
        sv, t = self.sensevoice, {}
        with timed(t, "frontend", lambda: mx.eval(feats)):
            feats = sv.frontend(mx.array(samples), rec, dither)[None]
        with timed(t, "encoder"):
            enc, lengths = sv.encode(feats, mx.array([feats.shape[1]]), self.query, rec)
            frame_ids = np.array(sv.ctc_argmax(enc, rec))[0, : int(lengths[0])]
        out = Output(ctc.decode(frame_ids, sv.cfg.blank_id, len(self.query.ids), self.tokenizer), timings=t)
        if self.adaptor is None:
            return out
        with timed(t, "adaptor", lambda: mx.eval(audio)):
            audio = self.adaptor(enc[:, adaptor_start(self.query, self.keep_query_frames):], rec=rec)[0]
        out.audio_embeds = np.array(audio.astype(mx.float32))
        if self.llm is None:
            return out
        s, seconds = self.setup, samples.size / 16000
        embeds = self.llm.inputs_embeds(s.prompt, audio, rec)
        # mlx-lm's loop needs a count: one past the cap, so a stop token can still come
        s.transcribe(self.llm.tokens(embeds, s.decode, s.decode.token_cap(seconds) + 1, rec), seconds, out, on_text, rec)
        return out

    def generate_text(self, prompt_ids: list[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.setup.complete(self.llm.tokens(self.llm.embed(prompt_ids), self.setup.decode, max_tokens + 1),
                                   max_tokens)
