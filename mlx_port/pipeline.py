"""The MLX pipeline: audio → frontend → SenseVoiceSmall (→ CTC text) →
adaptor → Qwen3 (→ text). The twin of reference/pipeline.py: the same
fields, loader, `run` and `Output`; it reads the converted bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np

from funasr_qwen4b import ctc
from funasr_qwen4b.audio import SAMPLE_RATE
from funasr_qwen4b.bundle import Bundle, as_bundle
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.decoding import DecodeConfig, DecodeStats
from funasr_qwen4b.wiring import LlmSetup, Output, adaptor_start, timed

from .adaptor import AudioAdaptorQwen4B
from .batch import decode as batch_decode
from .encoder import SenseVoiceSmall, length_mask
from .frontend import Frontend
from .llm import Qwen3, load_tokenizer
from .nano_adaptor import NanoAdaptor
from .taps import TapRecorder

ADAPTORS = {"qwen4b": AudioAdaptorQwen4B, "funasr-nano": NanoAdaptor}  # by the bundle's kind


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
                    sources: dict | None = None) -> "Pipeline":
        """Every component the bundle has (SenseVoice alone with `ctc_only`).
        `template`: template text (default: the bundle's). `sources` is the
        reference twin's (where the originals are); the converted bundle needs none."""
        b = as_bundle(bundle)
        if ctc_only and b.kind == "funasr-nano":
            raise ValueError(f"{b.root} is a Fun-ASR-Nano bundle: it has no CTC head to transcribe with alone")
        sv_dir = b.dir("sensevoice")
        tok = sv_dir / "tokenizer.model"
        pipe = cls(SenseVoiceSmall.load(sv_dir, b.sensevoice_config), ctc.CtcTokenizer(tok) if tok.is_file() else None,
                   query or b.query)
        if ctc_only:
            return pipe
        if b.has("adaptor"):
            pipe.adaptor = ADAPTORS[b.kind].load(b.dir("adaptor"), b.adaptor_config, b.adaptor_quantization)
            pipe.keep_query_frames = b.keep_query_frames
        if b.has("llm"):
            pipe.llm = Qwen3.load(b.dir("llm"))
            pipe.setup = LlmSetup.build(load_tokenizer(b.dir("llm")), template or b.template(), decode or b.decode)
        return pipe

    @property
    def frontend(self) -> Frontend:
        return self.sensevoice.frontend

    def run(self, samples: np.ndarray, rec: TapRecorder | None = None,
            on_text: Callable[[str], None] | None = None, *, query: QueryConfig | None = None,
            decode: DecodeConfig | None = None, template: str | None = None) -> Output:
        """One utterance (16 kHz mono float) through every stage there is; `query`, `decode`
        and `template` (template text: hotwords, language, ITN of a Fun-ASR-Nano prompt)
        override the pipeline's for this call."""
        sv, query, t = self.sensevoice, query or self.query, {}
        with timed(t, "frontend", lambda: mx.eval(feats)):
            feats = self.frontend(mx.array(samples), rec)[None]
        with timed(t, "encoder", lambda: mx.eval(enc)):  # without a CTC head nothing else waits for it
            enc, lengths = sv.encode(feats, mx.array([feats.shape[1]]), query, rec)
            frame_ids = sv.ctc_argmax(enc, rec)
        out = Output(None if frame_ids is None else ctc.decode(frame_ids[0, : int(lengths[0])], sv.cfg.blank_id,
                                                               len(query.ids), self.tokenizer),
                     timings=t, memory={"frontend+encoder": mx.get_peak_memory()})
        if self.adaptor is None:
            return out
        with timed(t, "adaptor", lambda: mx.eval(audio)):
            enc = enc[:, adaptor_start(query, self.keep_query_frames):]
            audio = self.adaptor(enc, rec=rec)[0, : self.adaptor.cfg.audio_rows(enc.shape[1])]
        out.audio_embeds = np.array(audio.astype(mx.float32))
        out.memory["adaptor"] = mx.get_peak_memory()
        if self.llm is None:
            return out
        setup = self.setup.with_decode(decode).with_template(template)
        seconds = samples.size / SAMPLE_RATE
        embeds = self.llm.inputs_embeds(setup.prompt, audio, rec)
        stats = DecodeStats()
        # one past the cap, so a stop token can still come
        tokens = self.llm.tokens(embeds, setup.decode, setup.decode.token_cap(seconds) + 1, rec,
                                 draft=setup.draft(out.ctc), stats=stats)
        setup.transcribe(tokens, seconds, out, on_text, rec, stats)
        out.memory["llm"] = mx.get_peak_memory()
        return out

    def run_batch(self, batch: list[np.ndarray], on_texts: list[Callable[[str], None] | None] | None = None, *,
                  query: QueryConfig | None = None, decode: DecodeConfig | None = None,
                  template: str | None = None) -> list[Output]:
        """Several utterances at once, each `run`'s Output (`template`: one prompt for the whole
        batch): the frontend per item, then the
        encoder and the adaptor over the padded batch with their masks, and the LLM over the
        prompts left-padded (mlx_port.batch), each row stopping, and streaming to its
        `on_texts` entry, on its own. One token per pass (batch.py says why). A batch's stage
        times are the batch's; llm_decode is each row's own."""
        sv, query, t = self.sensevoice, query or self.query, {}
        with timed(t, "frontend", lambda: mx.eval(feats)):
            feats = [self.frontend(mx.array(x)) for x in batch]
        n = [f.shape[0] for f in feats]
        with timed(t, "encoder", lambda: mx.eval(enc)):
            padded = mx.stack([mx.pad(f, [(0, max(n) - k), (0, 0)]) for f, k in zip(feats, n)])
            enc, lengths = sv.encode(padded, mx.array(n), query)
            frame_ids = sv.ctc_argmax(enc)
        lengths = lengths.tolist()
        outs = [Output(None if frame_ids is None else ctc.decode(frame_ids[i, :k], sv.cfg.blank_id, len(query.ids),
                                                                 self.tokenizer))
                for i, k in enumerate(lengths)]
        memory = {"frontend+encoder": mx.get_peak_memory()}
        if self.adaptor is not None:
            start = adaptor_start(query, self.keep_query_frames)
            rows = [k - start for k in lengths]
            with timed(t, "adaptor", lambda: mx.eval(audio)):
                mask = length_mask(mx.array(rows), enc.shape[1] - start) if min(rows) < max(rows) else None
                audio = self.adaptor(enc[:, start:], mask)
            rows = [self.adaptor.cfg.audio_rows(k) for k in rows]
            for out, a, k in zip(outs, audio, rows):
                out.audio_embeds = np.array(a[:k].astype(mx.float32))
            memory["adaptor"] = mx.get_peak_memory()
        for out in outs:
            out.timings, out.memory = dict(t), dict(memory)
        if self.adaptor is None or self.llm is None:
            return outs
        setup = self.setup.with_decode(decode).with_template(template)
        embeds = [self.llm.inputs_embeds(setup.prompt, audio[i, :k])[0] for i, k in enumerate(rows)]
        decoders = [setup.decoder(x.size / SAMPLE_RATE, f) for x, f in zip(batch, on_texts or [None] * len(batch))]
        for out, decoder, stats in zip(outs, decoders, batch_decode(self.llm, embeds, decoders, setup.decode)):
            setup.fill(out, decoder.finish(stats))
            out.memory["llm"] = mx.get_peak_memory()
        return outs

    def generate_text(self, prompt_ids: list[int], max_tokens: int) -> str:
        """A text-only pass (translation)."""
        return self.setup.complete(self.llm.tokens(self.llm.embed(prompt_ids)[None], self.setup.decode, max_tokens + 1),
                                   max_tokens)
