"""The reference pipeline: audio → frontend → SenseVoiceSmall (→ CTC text)
→ adaptor → Qwen3 (→ text). The twin of mlx_port/pipeline.py: the same
fields, loader, `run` and `Output`; it reads the original files a bundle
records (checked by sha256), in float32, with dither 0."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from funasr_qwen4b import ctc
from funasr_qwen4b.audio import SAMPLE_RATE
from funasr_qwen4b.bundle import Bundle, as_bundle
from funasr_qwen4b.config import AdaptorConfig, QueryConfig
from funasr_qwen4b.nano_sources import TRANSFORMERS, NanoSource, detect_layout
from funasr_qwen4b.decoding import DecodeConfig, DecodeStats
from funasr_qwen4b.prompt import PRESETS
from funasr_qwen4b.wiring import LlmSetup, Output, adaptor_start, timed

from .adaptor import AudioAdaptorQwen4B
from .encoder import SenseVoiceSmall
from .frontend import Frontend
from .funasr_nano import load_nano
from .llm import Qwen3, load_tokenizer
from .nano_adaptor import NanoAdaptor
from .taps import TapRecorder, to_numpy

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    sensevoice: SenseVoiceSmall
    tokenizer: ctc.CtcTokenizer | None
    query: QueryConfig
    adaptor: AudioAdaptorQwen4B | NanoAdaptor | None = None
    keep_query_frames: bool = True
    llm: Qwen3 | None = None
    setup: LlmSetup | None = None

    @classmethod
    def from_bundle(cls, bundle: str | Path | Bundle, query: QueryConfig | None = None, *, ctc_only: bool = False,
                    template: str | None = None, decode: DecodeConfig | None = None,
                    sources: dict[str, str | Path | None] | None = None) -> "Pipeline":
        """The reference twin of a bundle: the same stages, query, adaptor structure,
        template and decoding rules, loaded from the original files it records.
        `sources` overrides where they are: {"sensevoice": DIR, "adaptor": FILE, "llm": DIR}."""
        b = as_bundle(bundle)
        sources = sources or {}
        if b.kind == "funasr-nano":
            return cls._from_nano(b, query, ctc_only=ctc_only, template=template, decode=decode, sources=sources)
        sv_dir = b.source("sensevoice", sources.get("sensevoice"))
        log.info("reference: FunASR SenseVoiceSmall from %s (float32, dither 0)", sv_dir)
        pipe = cls.from_originals(sv_dir, query or b.query)
        if ctc_only:
            return pipe
        if b.has("adaptor"):
            pt, cfg = b.source("adaptor", sources.get("adaptor")), b.adaptor_config
            log.info("reference: adaptor from %s (%s)", pt, cfg)
            pipe.adaptor, pipe.keep_query_frames = AudioAdaptorQwen4B.load(pt, cfg), b.keep_query_frames
        if b.has("llm"):
            hf_dir = b.source("llm", sources.get("llm"))
            log.info("reference: Qwen3ForCausalLM from %s (float32)", hf_dir)
            pipe.llm = Qwen3.load(hf_dir)
            pipe.setup = LlmSetup.build(load_tokenizer(hf_dir), template or b.template(), decode or b.decode)
        return pipe

    @classmethod
    def _from_nano(cls, b: Bundle, query: QueryConfig | None, *, ctc_only: bool, template: str | None,
                   decode: DecodeConfig | None, sources: dict) -> "Pipeline":
        """Fun-ASR-Nano: FunASR's own FunASRNano from the one directory every component was
        converted from (`sources["sensevoice"]` when it is elsewhere), its parts run as
        FunASRNano.inference_prepare runs them."""
        if ctc_only:
            raise ValueError(f"{b.root} is a Fun-ASR-Nano bundle: it has no CTC head to transcribe with alone")
        root = b.source("sensevoice", sources.get("sensevoice"))
        for name in ("adaptor", "llm"):
            b.source(name, root if sources.get("sensevoice") else None)
        if detect_layout(root) == TRANSFORMERS:
            raise ValueError(f"{b.root} was converted from transformers' layout ({root}); FunASR's FunASRNano reads "
                             f"FunASR's: load it through funasr_qwen4b.app.backends.load_pipeline (it maps the -hf files onto "
                             f"FunASR's layout first) or convert FunASR's layout of the same model")
        log.info("reference: FunASR FunASRNano from %s (float32, dither 0)", root)
        return cls.from_nano_source(NanoSource.from_dir(root), query or b.query, template or b.template(),
                                    decode or b.decode)

    @classmethod
    def from_nano_source(cls, src: NanoSource, query: QueryConfig, template: str,
                         decode: DecodeConfig) -> "Pipeline":
        """FunASR's FunASRNano from a FunASR-layout directory, as read (its checks are the caller's)."""
        model, sv_cfg, ad_cfg = load_nano(src)
        frontend = Frontend(sv_cfg.frontend, src.cmvn_file, dither=0.0)
        pipe = cls(SenseVoiceSmall.nano(model.audio_encoder, sv_cfg, frontend), None, query,
                   NanoAdaptor(model.audio_adaptor, ad_cfg), True, Qwen3(model.llm))
        pipe.setup = LlmSetup.build(load_tokenizer(src.llm_dir), template, decode)
        return pipe

    @classmethod
    def from_originals(cls, sensevoice: str | Path, query: QueryConfig = QueryConfig(), *,
                       adaptor: str | Path | None = None, adaptor_cfg: AdaptorConfig | None = None,
                       keep_query_frames: bool = True, llm: str | Path | None = None,
                       template: str = PRESETS["raw"], decode: DecodeConfig = DecodeConfig()) -> "Pipeline":
        """The original files without a bundle; `adaptor_cfg` gives what shapes cannot
        (heads, norm order, activation, eps)."""
        sv = SenseVoiceSmall.load(sensevoice)
        tok = ctc.CtcTokenizer(sv.source.bpemodel) if sv.source.bpemodel else None
        ad = AudioAdaptorQwen4B.load(adaptor, adaptor_cfg or AdaptorConfig()) if adaptor is not None else None
        lm = setup = None
        if llm is not None:
            lm, setup = Qwen3.load(llm), LlmSetup.build(load_tokenizer(llm), template, decode)
        return cls(sv, tok, query, ad, keep_query_frames, lm, setup)

    @property
    def frontend(self) -> Frontend:
        return self.sensevoice.frontend

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None,
            on_text: Callable[[str], None] | None = None, *, query: QueryConfig | None = None,
            decode: DecodeConfig | None = None, template: str | None = None) -> Output:
        """One utterance (16 kHz mono float) through every stage there is; `query`, `decode`
        and `template` (template text: hotwords, language, ITN of a Fun-ASR-Nano prompt)
        override the pipeline's for this call."""
        query, t = query or self.query, {}
        with timed(t, "frontend"):
            feats = self.frontend(samples, rec)[None]
        with timed(t, "encoder"):
            enc, lengths = self.sensevoice.encode(feats, torch.tensor([feats.shape[1]]), query, rec)
            frame_ids = self.sensevoice.ctc_argmax(enc, rec)
        out = Output(None if frame_ids is None else ctc.decode(frame_ids[0, : int(lengths[0])],
                     self.sensevoice.cfg.blank_id, len(query.ids), self.tokenizer), timings=t)
        if self.adaptor is None:
            return out
        with timed(t, "adaptor"):
            enc = enc[:, adaptor_start(query, self.keep_query_frames):]
            audio = self.adaptor.run(enc, rec=rec)[0, : self.adaptor.cfg.audio_rows(enc.shape[1])]
        out.audio_embeds = to_numpy(audio)
        if self.llm is None:
            return out
        setup = self.setup.with_decode(decode).with_template(template)
        seconds = samples.size / SAMPLE_RATE
        embeds = self.llm.inputs_embeds(setup.prompt, audio, rec)
        stats = DecodeStats()  # plain greedy always: the reference is the oracle
        tokens = self.llm.tokens(embeds, setup.decode, setup.decode.token_cap(seconds) + 1, rec, stats=stats)
        setup.transcribe(tokens, seconds, out, on_text, rec, stats)
        return out

    def run_batch(self, batch: list[np.ndarray], on_texts: list[Callable[[str], None] | None] | None = None, *,
                  query: QueryConfig | None = None, decode: DecodeConfig | None = None,
                  template: str | None = None) -> list[Output]:
        """`run` on each utterance in turn: the reference is the oracle a batch is checked against,
        so it batches nothing."""
        return [self.run(x, on_text=f, query=query, decode=decode, template=template)
                for x, f in zip(batch, on_texts or [None] * len(batch))]

    def generate_text(self, prompt_ids: list[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.setup.complete(self.llm.tokens(self.llm.embed(prompt_ids)[None], self.setup.decode, max_tokens + 1),
                                   max_tokens)
