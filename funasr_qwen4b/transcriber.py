"""The Python API: load once, transcribe many, either backend.

    from funasr_qwen4b.transcriber import Transcriber
    t = Transcriber.load("bundle/")                 # MLX; backend="reference" for PyTorch
    t.transcribe("a.wav")["text"]
    t.transcribe(samples, sample_rate=44100, on_text=print)   # streamed deltas
    for r in t.transcribe_files(paths): ...

Long input is split at low-energy points (see `max_seconds`) and the texts joined.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator


from .audio import SAMPLE_RATE, load_audio, split_long
from .config import QueryConfig
from .decoding import DecodeConfig
from .prompt import TRANSLATE_TEMPLATE, encode

# ~8 tokens/s of English speech against ~5 for Chinese (REFERENCE.md §5).
EN_TOKENS_PER_SECOND = 8.0


def _joinable(a: str, b: str) -> bool:
    return a.isascii() and a.isalnum() and b.isascii() and b.isalnum()


def join_texts(texts: list[str]) -> str:
    out = ""
    for t in texts:
        t = t.strip()
        if out and t and _joinable(out[-1], t[0]):
            out += " "
        out += t
    return out


class _JoinedStream:
    """Streams chunk texts exactly as join_texts joins them: each chunk
    stripped (whitespace is held back until text follows it), a space
    between two ASCII words across a chunk boundary."""

    def __init__(self, on_text: Callable[[str], None]):
        self.on_text, self.out, self.pending, self.chunk_started = on_text, "", "", False

    def new_chunk(self) -> None:
        self.pending, self.chunk_started = "", False

    def __call__(self, delta: str) -> None:
        text = self.pending + delta
        if not self.chunk_started:
            text = text.lstrip()
            if not text:
                return
            if self.out and _joinable(self.out[-1], text[0]):
                text = " " + text
            self.chunk_started = True
        body = text.rstrip()
        self.pending = text[len(body):]
        if body:
            self.out += body
            self.on_text(body)


@dataclass
class Transcriber:
    pipeline: object  # mlx_port.pipeline.Pipeline or reference.pipeline.Pipeline
    backend: str = "mlx"
    max_seconds: float = 30.0

    @classmethod
    def load(cls, bundle: str | Path, backend: str = "mlx", *, template: str | None = None,
             query: QueryConfig | None = None, decode: DecodeConfig | None = None, max_seconds: float = 30.0,
             sources: dict | None = None, log: Callable[[str], None] = lambda m: None) -> "Transcriber":
        """`template`: template text; `sources`: sensevoice_src / adaptor_src /
        llm_src overrides for the reference backend."""
        from .bundle import read_bundle
        from .prompt import template_text

        if backend not in ("mlx", "reference"):
            raise ValueError(f"unknown backend {backend!r}; use mlx or reference")
        meta = read_bundle(bundle)
        missing = [c for c in ("sensevoice", "adaptor", "llm") if c not in meta["components"]]
        if missing:
            raise ValueError(f"bundle {bundle} has no {', '.join(missing)}: LLM transcription needs all three "
                             f"(add them with `funasr-qwen4b convert`); use --ctc for SenseVoice's own head")
        q = query or QueryConfig(**meta["components"]["sensevoice"].get("query", {}))
        decode = decode or DecodeConfig(**meta.get("generation", {}))
        if q.language == "en" and decode.tokens_per_second < EN_TOKENS_PER_SECOND:
            decode = replace(decode, tokens_per_second=EN_TOKENS_PER_SECOND)
        template = template or template_text(bundle_meta=meta)
        if backend == "mlx":
            from mlx_port.pipeline import Pipeline

            pipe = Pipeline.from_bundle(bundle, q, template=template, decode=decode)
        else:
            from parity.harness import reference_pipeline

            pipe = reference_pipeline(bundle, q, template=template, decode=decode, log=log, **(sources or {}))
        return cls(pipe, backend, max_seconds)

    def transcribe(self, audio, sample_rate: int | None = None, *, on_text: Callable[[str], None] | None = None,
                   translate: bool = False) -> dict:
        """A path, or samples with their sample rate → text, tags, timings."""
        t0 = time.perf_counter()
        samples = load_audio(audio, sample_rate)
        timings = {"load_audio": time.perf_counter() - t0}
        pieces = split_long(samples, self.max_seconds) if self.max_seconds else [samples]
        stream = _JoinedStream(on_text) if on_text is not None else None
        outs = []
        for p in pieces:
            if stream is not None:
                stream.new_chunk()
            outs.append(self.pipeline.run(p, on_text=stream))
        for o in outs:
            for k, v in o.timings.items():
                timings[k] = timings.get(k, 0.0) + v
        n_tokens = sum(len(o.decoded.ids) for o in outs)
        result = {
            "text": join_texts([o.text for o in outs]),
            "tags": outs[0].ctc.tags,
            "ctc_text": join_texts([o.ctc.text for o in outs]),
            "seconds": round(samples.size / SAMPLE_RATE, 3),
            "chunks": len(pieces),
            "tokens": n_tokens,
            "stop": [o.decoded.stop for o in outs],
            "backend": self.backend,
        }
        if translate:
            t1 = time.perf_counter()
            result["translation"] = self.translate(result["text"])
            timings["translate"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        decode_s = timings.get("llm_decode", 0.0)
        result["tokens_per_s"] = round(max(n_tokens - len(outs), 0) / decode_s, 2) if decode_s else 0.0
        result["timings"] = {k: round(v, 4) for k, v in timings.items()}
        return result

    def translate(self, text: str) -> str:
        """A second, text-only pass: the transcript into English, thinking disabled."""
        setup = self.pipeline.setup
        ids = encode(setup.tokenizer, TRANSLATE_TEMPLATE.replace("{text}", text))
        return self.pipeline.generate_text(ids, max_tokens=min(setup.decode.max_tokens, 2 * len(ids) + 32))

    def transcribe_files(self, paths: Iterable[str | Path], *, progress: bool = True, **kwargs) -> Iterator[dict]:
        paths = list(paths)
        for i, p in enumerate(paths, 1):
            r = self.transcribe(p, **kwargs)
            if progress:
                print(f"[{i}/{len(paths)}] {p}: {r['seconds']:.1f} s audio, {r['timings']['total']:.2f} s",
                      file=sys.stderr, flush=True)
            yield {"audio": str(p), **r}
