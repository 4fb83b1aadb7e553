"""The Python API: load once, transcribe many, either backend.

    from funasr_qwen4b import Transcriber
    t = Transcriber.load("bundle/")                 # MLX; backend="reference" for PyTorch
    t = Transcriber.load("user/bundle", language="en")   # a hub id: from the local cache when there
    t.transcribe("a.wav")["text"]
    t.transcribe(samples, sample_rate=44100, language="en", on_text=print)   # streamed deltas
    t.transcribe(open("a.m4a", "rb"))               # bytes and file-likes too (ffmpeg for M4A, AAC, ...)
    for s in t.transcribe("a.wav")["segments"]: print(s["start"], s["end"], s["text"])
    for r in t.transcribe_files(paths): ...
    Transcriber.load("bundle/", ctc_only=True)      # SenseVoice's own CTC head

Long input is split at low-energy points (see `max_seconds`) and the texts are
joined. Segments carry times from the CTC alignment (ctc.timed_segments): a new
segment at each pause and after each sentence, with its words.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator


from .. import ctc
from ..audio import SAMPLE_RATE, read_audio, speech_regions, split_points
from ..bundle import Bundle, as_bundle
from ..config import Backend, QueryConfig
from ..decoding import DecodeConfig
from ..hub import resolve
from ..nospeech import no_speech
from ..prompt import TRANSLATE_TEMPLATE, encode
from .backends import load_pipeline

log = logging.getLogger(__name__)

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


class JoinedStream:
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


class OrderedStream:
    """One input's streamed text when its pieces may decode out of order (in a batch, longest
    first): a piece's deltas go out once every piece before it has ended, joined as
    join_texts joins them (JoinedStream)."""

    def __init__(self, on_text: Callable[[str], None], pieces: int):
        self.joined, self.held = JoinedStream(on_text), [[] for _ in range(pieces)]
        self.ended, self.at = [False] * pieces, 0  # the piece now streaming

    def piece(self, k: int) -> Callable[[str], None]:
        def feed(delta: str) -> None:
            if k == self.at:
                self.joined(delta)
            else:
                self.held[k].append(delta)
        return feed

    def done(self, k: int) -> None:
        self.ended[k] = True
        while self.at < len(self.ended) and self.ended[self.at]:
            self.at += 1
            if self.at < len(self.held):
                self.joined.new_chunk()
                for d in self.held[self.at]:
                    self.joined(d)


@dataclass
class Transcriber:
    pipeline: object  # mlx_port.pipeline.Pipeline or reference.pipeline.Pipeline: the same interface
    backend: Backend = Backend.MLX
    max_seconds: float = 30.0
    ctc_only: bool = False

    @classmethod
    def load(cls, bundle: str | Path | Bundle, backend: Backend | str = Backend.MLX, *, language: str | None = None,
             ctc_only: bool = False, template: str | None = None, query: QueryConfig | None = None,
             decode: DecodeConfig | None = None, max_seconds: float = 30.0, sources: dict | None = None,
             speculate: str | None = None, hub: str | None = None, revision: str | None = None) -> "Transcriber":
        """`bundle`: a directory or a hub id (`user/bundle`: from the local cache when there,
        else downloaded; `hub` "huggingface" or "modelscope" and `revision` as funasr_qwen4b.hub
        resolves them). `language`: the encoder's language query row for every call (a call's
        own `language=` wins); `template`: template text (default: the bundle's); `sources`:
        where the reference backend finds the original files ({"sensevoice", "adaptor", "llm"});
        `speculate`: "ctc" (the CTC transcript drafts, the LLM verifies: the same ids,
        fewer passes; MLX only) or "off" (default: the bundle's generation setting)."""
        if not isinstance(bundle, Bundle):
            bundle = resolve(bundle, hub=hub, revision=revision, what="bundle")
        b = as_bundle(bundle)
        if language is not None:
            query = replace(query or b.query, language=language)
        if not ctc_only:
            b.require("sensevoice", "adaptor", "llm",
                      why="LLM transcription needs all three; use --ctc for SenseVoice's own head")
        if not (max_seconds >= 0 and max_seconds != float("inf")):
            raise ValueError(f"max_seconds must be a finite number >= 0 (0 = never split), got {max_seconds}")
        backend = Backend.parse(backend)
        if speculate is not None:
            decode = replace(decode or b.decode, speculate=speculate)
        pipe = load_pipeline(b, backend, query=query, ctc_only=ctc_only, template=template, decode=decode,
                             sources=sources)
        if ctc_only and pipe.tokenizer is None:  # CTC ids without their pieces are no transcript
            raise ValueError(f"{b.root}/sensevoice has no tokenizer (its source had no .bpe.model): the CTC head's "
                             "text cannot be spelled; reconvert with the sentencepiece model beside model.pt")
        return cls(pipe, backend, max_seconds, ctc_only)

    def _settings(self, language: str | None) -> tuple[QueryConfig, DecodeConfig | None]:
        """This call's query rows and decoding rules; the pipeline's own stay as they are."""
        query = self.pipeline.query if language is None else replace(self.pipeline.query, language=language)
        decode = None if self.ctc_only else self.pipeline.setup.decode
        if decode is not None and query.language == "en" and decode.tokens_per_second < EN_TOKENS_PER_SECOND:
            decode = replace(decode, tokens_per_second=EN_TOKENS_PER_SECOND)
        return query, decode

    def transcribe(self, audio, sample_rate: int | None = None, *, language: str | None = None,
                   on_text: Callable[[str], None] | None = None, translate: bool = False) -> dict:
        """Audio (a path, samples with their `sample_rate`, bytes or a binary file-like: see
        read_audio) → text, segments with their times and words, tags, timings. `language`
        sets the encoder's language query row for this call (zh, en, ...)."""
        return self._transcribe([audio], sample_rate, language, [on_text], translate, batch_size=1)[0]

    def transcribe_batch(self, audios: list, sample_rate: int | None = None, *, language: str | None = None,
                         on_texts: list[Callable[[str], None] | None] | None = None, translate: bool = False,
                         batch_size: int = 16) -> list[dict]:
        """Several inputs, each result as `transcribe` gives it, in input order. Their pieces
        (long input split as `transcribe` splits it) go through the pipeline `batch_size` at a
        time, longest first so that a batch pads little: a batch decodes one token per pass
        per row, without speculation, and the reference backend runs it one utterance at a
        time. `on_texts[i]` streams input i's text in order. A bad input raises before any
        is transcribed; timings are the batches' (each piece carries its batch's)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if on_texts is not None and len(on_texts) != len(audios):
            raise ValueError(f"on_texts has {len(on_texts)} entries for {len(audios)} inputs")
        return self._transcribe(list(audios), sample_rate, language, on_texts or [None] * len(audios), translate,
                                batch_size)

    def _transcribe(self, audios: list, sample_rate: int | None, language: str | None, on_texts: list,
                    translate: bool, batch_size: int) -> list[dict]:
        t0 = time.perf_counter()
        samples, loaded = [], []
        for a in audios:
            t = time.perf_counter()
            samples.append(read_audio(a, sample_rate))
            loaded.append(time.perf_counter() - t)
        query, decode = self._settings(language)
        bounds = [[0, *(split_points(x, self.max_seconds) if self.max_seconds else []), x.size] for x in samples]
        streams = [OrderedStream(f, len(b) - 1) if f is not None else None for f, b in zip(on_texts, bounds)]
        # every piece with speech, as (input, piece); the others are silent with their reason
        pieces, silent = [], {}
        for i, (x, b) in enumerate(zip(samples, bounds)):
            for k in range(len(b) - 1):
                reason = no_speech(x[b[k]:b[k + 1]])  # the same rule for both backends: nothing is transcribed
                if reason is None:
                    pieces.append((i, k))
                else:
                    silent[i, k] = reason
                    if streams[i] is not None:
                        streams[i].done(k)
        outs, runs = {}, []  # each pipeline call's stage times
        runs_of = [set() for _ in samples]  # the calls each input's pieces were in
        if batch_size > 1:
            pieces.sort(key=lambda ik: bounds[ik[0]][ik[1]] - bounds[ik[0]][ik[1] + 1])
        for n in range(0, len(pieces), batch_size):
            group = pieces[n: n + batch_size]
            audio = [samples[i][bounds[i][k]: bounds[i][k + 1]] for i, k in group]
            feed = [None if self.ctc_only or streams[i] is None else streams[i].piece(k) for i, k in group]
            if len(group) == 1:  # one utterance: the pipeline's own path (speculation where it applies)
                got = [self.pipeline.run(audio[0], on_text=feed[0], query=query, decode=decode)]
            else:
                got = self.pipeline.run_batch(audio, feed, query=query, decode=decode)
            # a batch's stages are shared by its rows: their longest (the rows end one by one)
            runs.append({key: max(o.timings.get(key, 0.0) for o in got) for key in got[0].timings})
            for (i, k), out in zip(group, got):
                runs_of[i].add(len(runs) - 1)
                if self.ctc_only:
                    out.text = out.ctc.text.strip()
                    if streams[i] is not None:
                        streams[i].piece(k)(out.text)
                outs[i, k] = out
                if streams[i] is not None:
                    streams[i].done(k)
        results = []
        for i, x in enumerate(samples):
            timings = {}
            for n in sorted(runs_of[i]):
                for key, v in runs[n].items():
                    timings[key] = timings.get(key, 0.0) + v
            r = self._result(x, bounds[i], [outs.get((i, k)) for k in range(len(bounds[i]) - 1)],
                             [silent.get((i, k)) for k in range(len(bounds[i]) - 1)], query, translate, timings)
            results.append(r)
        total = round(time.perf_counter() - t0, 4)  # the call's: a batch's inputs end together
        for r, t in zip(results, loaded):
            r["timings"] = {"load_audio": round(t, 4), **r["timings"], "total": total}
        return results

    def _result(self, samples, bounds: list[int], outs: list, silent: list, query: QueryConfig,
                translate: bool, timings: dict[str, float]) -> dict:
        """One input's result from its pieces' outputs (None where a piece had no speech, with its
        reason) and the stage times of the pipeline calls they were in."""
        segments = []
        for a, b, out, reason in zip(bounds, bounds[1:], outs, silent):
            if out is None:
                segments.append({"start": round(a / SAMPLE_RATE, 3), "end": round(b / SAMPLE_RATE, 3),
                                 "text": "", "tokens": [], "words": [], "no_speech": reason})
                continue
            segments += self._segments(out, samples[a:b], a / SAMPLE_RATE)
        outs = [o for o in outs if o is not None]
        for i, s in enumerate(segments):
            s["id"] = i
        n_tokens = sum(len(o.decoded.ids if o.decoded else o.ctc.text_ids) for o in outs)
        stats = [o.decoded.stats for o in outs if o.decoded]
        result = {
            "text": join_texts([o.text for o in outs]),
            "segments": segments,
            "language": query.language,
            "tags": outs[0].ctc.tags if outs else [],
            "tag_ids": outs[0].ctc.tag_ids if outs else [],
            "ctc_text": join_texts([o.ctc.text for o in outs]),
            "ctc_ids": [i for o in outs for i in o.ctc.ids],
            "seconds": round(samples.size / SAMPLE_RATE, 3),
            "chunks": len(bounds) - 1,
            "tokens": n_tokens,
            "stop": [o.decoded.stop for o in outs] if not self.ctc_only else [],
            # LLM forward passes after each prefill; draft tokens verified and accepted
            "forwards": sum(st.forwards for st in stats),
            "drafted": sum(st.drafted for st in stats),
            "accepted": sum(st.accepted for st in stats),
            "backend": self.backend.value,
        }
        reasons = [r for r in silent if r is not None]
        if reasons and not outs:
            result["no_speech"] = reasons[0] if len(reasons) == 1 else "; ".join(sorted(set(reasons)))
        if translate:
            t1 = time.perf_counter()
            result["translation"] = self.translate(result["text"]) if result["text"] else ""
            timings["translate"] = time.perf_counter() - t1
        decode_s = timings.get("llm_decode", 0.0)
        result["tokens_per_s"] = round(max(n_tokens - len(outs), 0) / decode_s, 2) if decode_s else 0.0
        result["timings"] = {k: round(v, 4) for k, v in timings.items()}
        return result

    def _segments(self, out, samples, offset: float) -> list[dict]:
        """One piece's transcript as timed segments (seconds into the whole audio), each with
        its words and the ids that decode to it; the CTC alignment places them (ctc.timed_segments)."""
        if self.ctc_only:
            text, ids, tok = out.ctc.text, out.ctc.text_ids, self.pipeline.tokenizer
            decode = tok.decode if tok is not None else None
        else:
            text, ids, decode = out.text, out.decoded.ids, self.pipeline.setup.text
        found = ctc.timed_segments(text, out.ctc, self.pipeline.tokenizer, speech_regions(samples),
                                   samples.size / SAMPLE_RATE)
        if not found:  # speech without a transcript: the piece, untimed within
            return [{"start": round(offset, 3), "end": round(offset + samples.size / SAMPLE_RATE, 3), "text": "",
                     "tokens": list(ids), "words": []}]
        groups = [[] for _ in found]
        if decode is not None:  # each id to the segment where the text decoded up to it ends
            starts = [seg["span"][0] for seg in found]
            for k, i in enumerate(ids):
                groups[max(0, bisect.bisect_right(starts, len(decode(ids[:k + 1])) - 1) - 1)].append(i)
        else:
            groups[0] = list(ids)
        t = lambda x: round(offset + x, 3)  # noqa: E731
        return [{"start": t(seg["start"]), "end": t(seg["end"]), "text": seg["text"].strip(), "tokens": group,
                 "words": [{"word": w["word"], "start": t(w["start"]), "end": t(w["end"])} for w in seg["words"]]}
                for seg, group in zip(found, groups)]

    def translate(self, text: str) -> str:
        """A second, text-only pass: the transcript into English, thinking disabled."""
        if self.ctc_only:
            raise ValueError("translation needs the LLM; load the Transcriber without ctc_only")
        setup = self.pipeline.setup
        ids = encode(setup.tokenizer, TRANSLATE_TEMPLATE.replace("{text}", text))
        return self.pipeline.generate_text(ids, max_tokens=min(setup.decode.max_tokens, 2 * len(ids) + 32))

    def transcribe_files(self, paths: Iterable[str | Path], **kwargs) -> Iterator[dict]:
        """Each file's result, with its path under "audio"; progress is logged."""
        paths = list(paths)
        for i, p in enumerate(paths, 1):
            r = self.transcribe(p, **kwargs)
            log.info("[%d/%d] %s: %.1f s audio in %.2f s", i, len(paths), p, r["seconds"], r["timings"]["total"])
            yield {"audio": str(p), **r}
