"""The Python API: load once, transcribe many, either backend.

    from funasr_qwen4b import Transcriber
    t = Transcriber.load("bundle/")                 # MLX; backend="reference" for PyTorch
    t = Transcriber.load("user/bundle", language="en")   # a hub id: from the local cache when there
    t.transcribe("a.wav")["text"]
    t.transcribe(samples, sample_rate=44100, language="en", on_text=print)   # streamed deltas
    t.transcribe(open("a.m4a", "rb"))               # bytes and file-likes too (ffmpeg for M4A, AAC, ...)
    for s in t.transcribe("a.wav")["segments"]: print(s["start"], s["end"], s["text"])
    for r in t.transcribe_files(paths): ...
    for i, r in t.transcribe_each(paths, batch_size=8): ...   # r: input i's result, or its own exception
    Transcriber.load("bundle/", ctc_only=True)      # SenseVoice's own CTC head
    Transcriber.load("nano/").transcribe("a.wav", hotwords=["通义", "FunASR"])   # a Fun-ASR-Nano bundle

Audio longer than `max_segment_seconds` is cut into speech segments first (`vad`: the
bundle's FSMN VAD when it has one, else the energy rule; funasr_qwen4b.segments), each
decoded as its own utterance (`batch_size` at a time, as inputs are) and the texts joined
(join_texts); `vad="off"` splits only audio longer than `max_seconds`, at low-energy points.
SenseVoice's CTC transcript guards the LLM's text (app/ctc_guard.py: `warnings`, a retry
of what it left out), and `language` is the one set, else the one detected (funasr_qwen4b.language).
Segments carry times from the CTC alignment (ctc.timed_segments): a new
segment at each pause and after each sentence, with its words. A Fun-ASR-Nano
bundle (kind `funasr-nano`) has no CTC head: its results have no CTC fields
(ctc_text, ctc_ids, tags), its segments are each piece's speech span, untimed
within (no words), and `language` and `hotwords` make its prompt (prompt.nano_template).
"""

from __future__ import annotations

import bisect
import logging
import time
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .. import ctc, segments
from ..audio import MAX_AUDIO_SECONDS, SAMPLE_RATE, read_audio, speech_regions
from ..bundle import Bundle, as_bundle
from ..config import Backend, QueryConfig
from ..decoding import DecodeConfig
from ..hub import resolve
from ..language import from_tags, from_text, most_spoken
from ..nospeech import no_speech
from ..prompt import AUDIO_SLOT, NANO_LANGUAGES, PRESETS, TRANSLATE_TEMPLATE, encode, nano_template
from . import batching, checks, ctc_guard
from .backends import load_pipeline
from .batching import Job
from .ctc_guard import guard_mode

log = logging.getLogger(__name__)

# English speech has more tokens a second than Chinese: its cap on generated tokens is higher.
EN_TOKENS_PER_SECOND = 8.0
AS_LOADED = "as loaded"  # a call's max_audio_seconds when it gives none: the Transcriber's own
NANO = "funasr-nano"  # Bundle.kind of Fun-ASR-Nano: no CTC head, its prompt carries language and hotwords


# What may end a piece's text before a space (sentence and clause punctuation, closing marks)
# and what may begin the next one's after it (opening marks).
_ENDS, _BEGINS = set(".,!?;:…)]}\"'%"), set("([{\"'¿¡")


def _spaced(ch: str) -> bool:
    """A character of a script written with spaces between words: not Chinese or Japanese
    (wide or full-width: ideographs, kana, their punctuation); Korean's Hangul is spaced."""
    return unicodedata.east_asian_width(ch) not in ("W", "F") or unicodedata.name(ch, "").startswith("HANGUL")


def _joinable(a: str, b: str) -> bool:
    """A space between two pieces' texts ending in `a` and beginning with `b`: both in spaced
    scripts, `a` a letter, digit or closing punctuation, `b` a letter, digit or opening mark."""
    return _spaced(a) and _spaced(b) and (a.isalnum() or a in _ENDS) and (b.isalnum() or b in _BEGINS)


def join_texts(texts: list[str]) -> str:
    """Pieces' texts in order, each stripped; a space between two where _joinable says so
    ("nine." + "It" → "nine. It"), none in Chinese or Japanese ("点。" + "今天" → "点。今天")."""
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
    across a chunk boundary where join_texts puts one."""

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
        # characters of each piece taken, those its current run has given, and those to drop from it
        self.taken, self.given, self.skip = [0] * pieces, [0] * pieces, [0] * pieces

    def run_feed(self, k: int) -> Callable[[str], None]:
        """Piece k's feed for a run of it. A piece runs again when its batch failed: the text the
        failed run gave (the same ids, the same text) goes out once."""
        self.skip[k], self.given[k] = self.taken[k], 0
        return self.piece(k)

    def piece(self, k: int) -> Callable[[str], None]:
        def feed(delta: str) -> None:
            new = delta[max(0, self.skip[k] - self.given[k]):]
            self.given[k] += len(delta)
            if not new:
                return
            self.taken[k] = self.given[k]
            if k == self.at:
                self.joined(new)
            else:
                self.held[k].append(new)
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
    max_audio_seconds: float | None = MAX_AUDIO_SECONDS
    kind: str = "qwen4b"  # the bundle's model kind (Bundle.kind)
    language: str | None = None  # load's language= (Fun-ASR-Nano: the prompt's for every call; None: auto)
    fixed_template: bool = False  # Fun-ASR-Nano: load's `template=` holds the prompt; calls cannot make one
    vad: str = "auto"  # the segmenter (segments.VAD_MODES)
    max_segment_seconds: float = segments.MAX_SEGMENT_SECONDS["qwen4b"]
    vad_dir: Path | None = None  # the bundle's converted VAD, if it has one
    ctc_guard: str = "warn"  # the CTC transcript checks the LLM's text (app/ctc_guard.py): off, warn, retry
    _vad_model: object = field(default=None, repr=False, compare=False)  # loaded at its first use

    @classmethod
    def load(cls, bundle: str | Path | Bundle, backend: Backend | str = Backend.MLX, *, language: str | None = None,
             ctc_only: bool = False, template: str | None = None, query: QueryConfig | None = None,
             decode: DecodeConfig | None = None, max_seconds: float = 30.0, sources: dict | None = None,
             speculate: str | None = None, hub: str | None = None, revision: str | None = None,
             max_audio_seconds: float | None = MAX_AUDIO_SECONDS, vad: str = "auto",
             max_segment_seconds: float | None = None, ctc_guard: str | None = None) -> "Transcriber":
        """`bundle`: a directory or a hub id (`user/bundle`: from the local cache when there,
        else downloaded; `hub` "huggingface" or "modelscope" and `revision` as funasr_qwen4b.hub
        resolves them). `language`: the encoder's language query row for every call (a call's
        own `language=` wins; for Fun-ASR-Nano the prompt's language: zh, en, ja or a language
        name as FunASR takes it); `template`: template text (default: the bundle's); `sources`:
        where the reference backend finds the original files ({"sensevoice", "adaptor", "llm"});
        `speculate`: "ctc" (the CTC transcript drafts, the LLM verifies: the same ids,
        fewer passes; MLX only) or "off" (default: the bundle's generation setting);
        `max_seconds`: no piece is longer (0: no bound; else at least 0.2 s,
        checks.MIN_SPLIT_SECONDS); with vad="off" the only cut, at the quietest points;
        `max_audio_seconds`: longer audio is refused
        from its header before it is decoded (default 4 h; None: no bound; each call may give its own);
        `vad`: how audio is cut into utterances before the LLM: "auto" (the bundle's FSMN VAD if it
        has one, else "energy"), "fsmn", "energy" (loud stretches between pauses) or "off" (only
        `max_seconds` pieces); `max_segment_seconds`: the longest segment (default: the bundle's,
        Bundle.max_segment_seconds). Each call may give its own `vad` and `max_segment_seconds`.
        `ctc_guard`: when the LLM's text covers clearly less of SenseVoice's CTC transcript than
        it should, "warn" (the default) adds to the result's `warnings` and logs it, "retry" also
        decodes the uncovered end again as its own piece, "off" checks nothing; a bundle without
        a CTC head (Fun-ASR-Nano) and ctc_only have no guard."""
        checks.max_seconds(max_seconds)
        segments.vad_mode(vad)
        if max_segment_seconds is not None:
            segments.max_segment_seconds(max_segment_seconds)
        _max_audio_seconds(max_audio_seconds)
        llm_only = {"template": template, "decode": decode, "speculate": speculate}
        if ctc_only and any(v is not None for v in llm_only.values()):
            given = ", ".join(k for k, v in llm_only.items() if v is not None)
            raise ValueError(f"{given} set{'s' if ',' not in given else ''} how the LLM decodes; ctc_only=True "
                             "uses SenseVoice's CTC head and no LLM: drop one or the other")
        if not isinstance(bundle, Bundle):
            bundle = resolve(bundle, hub=hub, revision=revision, what="bundle")
        b = as_bundle(bundle)
        nano = b.kind == NANO
        if nano and query is not None:
            raise ValueError(f"{b.root} is a Fun-ASR-Nano bundle: its encoder has no query rows; give language= "
                             "(its prompt names the language)")
        if nano and language is not None:
            nano_template(language=language)  # a bad one refused now, not at the first call
        elif language is not None:
            query = replace(query or b.query, language=language)
        if not ctc_only:
            b.require("sensevoice", "adaptor", "llm",
                      why="LLM transcription needs all three; use --ctc for SenseVoice's own head")
        if ctc_guard is not None:
            guard_mode(ctc_guard)
        if ctc_guard not in (None, "off") and (nano or ctc_only):
            log.info("the CTC guard is off: %s", "a Fun-ASR-Nano bundle has no CTC head" if nano
                     else "ctc_only transcribes with the CTC head itself")
        guard = "off" if nano or ctc_only else ctc_guard or "warn"
        if vad == "fsmn":
            b.require("vad", why="vad='fsmn' (--vad fsmn) runs it; use 'auto' or 'energy' without one")
        if template is not None:
            template = _template_text(template, b)
        backend = Backend.parse(backend)
        if speculate is not None:
            decode = replace(decode or b.decode, speculate=speculate)
        pipe = load_pipeline(b, backend, query=query, ctc_only=ctc_only, template=template, decode=decode,
                             sources=sources)
        if ctc_only and pipe.tokenizer is None:  # CTC ids without their pieces are no transcript
            raise ValueError(f"{b.root}/sensevoice has no tokenizer (its source had no .bpe.model): the CTC head's "
                             "text cannot be spelled; reconvert with the sentencepiece model beside model.pt")
        if nano and speculate == "ctc":
            log.warning("%s is a Fun-ASR-Nano bundle: it has no CTC head, so no CTC draft; decoding plain", b.root)
        return cls(pipe, backend, max_seconds, ctc_only, max_audio_seconds, b.kind, language,
                   nano and template is not None, vad,
                   b.max_segment_seconds if max_segment_seconds is None else float(max_segment_seconds),
                   b.dir("vad") if b.has("vad") else None, guard)

    def _template(self, language: str | None, hotwords) -> str | None:
        """This call's prompt template: for Fun-ASR-Nano, its language and hotwords (None: the
        pipeline's own); a hotword for a model without hotword training is refused."""
        if hotwords is not None and (isinstance(hotwords, str) or not all(isinstance(w, str) for w in hotwords)):
            raise TypeError(f"hotwords is a list of words, got {hotwords!r}")
        hotwords = list(hotwords or [])
        if self.kind != NANO:
            if hotwords:
                raise ValueError(f"hotwords: this model ({self.kind}) has no hotword training; hotwords work with a "
                                 "Fun-ASR-Nano bundle")
            return None
        language = self.language if language is None else language
        if not hotwords and language is None:
            return None
        if self.fixed_template:
            raise ValueError("this Transcriber was loaded with template=, which holds the whole prompt: hotwords "
                             "and language cannot be added to it; load it without template=")
        return nano_template(hotwords, language)

    def _settings(self, language: str | None) -> tuple[QueryConfig, DecodeConfig | None]:
        """This call's query rows and decoding rules; the pipeline's own stay as they are (a
        Fun-ASR-Nano language goes into its prompt, not the query)."""
        nano = self.kind == NANO
        query = self.pipeline.query if language is None or nano else replace(self.pipeline.query, language=language)
        english = (self.language if language is None else language) in ("en", NANO_LANGUAGES["en"]) if nano \
            else query.language == "en"
        decode = None if self.ctc_only else self.pipeline.setup.decode
        if decode is not None and english and decode.tokens_per_second < EN_TOKENS_PER_SECOND:
            decode = replace(decode, tokens_per_second=EN_TOKENS_PER_SECOND)
        return query, decode

    def transcribe(self, audio, sample_rate: int | None = None, *, language: str | None = None,
                   on_text: Callable[[str], None] | None = None, translate: bool = False,
                   hotwords: list[str] | None = None, max_audio_seconds: float | None = AS_LOADED,
                   vad: str | None = None, max_segment_seconds: float | None = None) -> dict:
        """Audio (a path, samples with their `sample_rate`, bytes or a binary file-like: see
        read_audio) → text, segments with their times and words, tags, timings. `language`
        sets the encoder's language query row for this call (zh, en, ...; Fun-ASR-Nano: its
        prompt's language); `hotwords` (Fun-ASR-Nano only: a ValueError for a model without
        hotword training) the words its prompt lists; `max_audio_seconds` the longest audio
        this call accepts (default: as loaded; None: no bound); `vad` and `max_segment_seconds`
        how it is cut into utterances (default: as loaded)."""
        return _raising(self.transcribe_each([audio], sample_rate, language=language, on_texts=[on_text],
                                             translate=translate, hotwords=hotwords,
                                             max_audio_seconds=max_audio_seconds, vad=vad,
                                             max_segment_seconds=max_segment_seconds))[0]

    def transcribe_batch(self, audios: list, sample_rate: int | None = None, *, language: str | None = None,
                         on_texts: list[Callable[[str], None] | None] | None = None, translate: bool = False,
                         hotwords: list[str] | None = None, batch_size: int = 16,
                         max_audio_seconds: float | None = AS_LOADED, vad: str | None = None,
                         max_segment_seconds: float | None = None) -> list[dict]:
        """Several inputs, each result as `transcribe` gives it, in input order. Their pieces
        (long input split as `transcribe` splits it) go through the pipeline `batch_size` at a
        time, longest first so that a batch pads little: a batch decodes one token per pass
        per row, without speculation, and the reference backend runs it one utterance at a
        time. `on_texts[i]` streams input i's text in order. An input that fails raises its own
        error (the first in input order) once the others have run; `transcribe_each` gives each
        input's outcome instead. Timings are the batches' (each piece carries its batch's)."""
        return _raising(self.transcribe_each(_inputs(audios, "transcribe_batch"), sample_rate, language=language,
                                             on_texts=on_texts, translate=translate, hotwords=hotwords,
                                             batch_size=batch_size, max_audio_seconds=max_audio_seconds,
                                             vad=vad, max_segment_seconds=max_segment_seconds))

    def transcribe_each(self, audios: Iterable, sample_rate: int | None = None, *, language: str | None = None,
                        on_texts: list[Callable[[str], None] | None] | None = None, translate: bool = False,
                        hotwords: list[str] | None = None, batch_size: int = 1, window: int | None = None,
                        max_audio_seconds: float | None = AS_LOADED, vad: str | None = None,
                        max_segment_seconds: float | None = None,
                        progress: Callable[[int, float], object] | None = None,
                        ) -> Iterator[tuple[int, dict | Exception]]:
        """(position, result or the exception raised for that input alone) for each input, in
        input order, by the batching policy (funasr_qwen4b.app.batching): pieces `batch_size` at
        a time, longest first; a batch that fails runs again one piece at a time, so that only
        the input at fault gets an error, its own; inputs are read `window` at a time (default:
        all), a window's outcomes given once it is done. Arguments as for transcribe_batch: one
        language and one hotword list, so one prompt, for every input of a call. `progress(i,
        seconds)`: input i's progress bar (an object with update(seconds) and close(), or None),
        made once the input is read and advanced by each piece's seconds as it is decoded."""
        audios = _inputs(audios, "transcribe_each")
        if sample_rate is not None:
            checks.sample_rate(sample_rate)
        bound = self.max_audio_seconds if max_audio_seconds is AS_LOADED else _max_audio_seconds(max_audio_seconds)
        for name, n in (("batch_size", batch_size), ("window", 1 if window is None else window)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{name} must be a positive integer, got {n!r}")
        if on_texts is not None and len(on_texts) != len(audios):
            raise ValueError(f"on_texts has {len(on_texts)} entries for {len(audios)} inputs")
        on_texts = on_texts or [None] * len(audios)
        used, cut = self._segmenter(vad, max_segment_seconds)
        template = self._template(language, hotwords)
        query, decode = self._settings(language)
        chosen = language or self.language
        chosen = None if chosen == "auto" else chosen  # auto: the one detected is reported
        return batching.each(audios, prepare=lambda audio, i: self._prepare(audio, sample_rate, on_texts[i], bound, cut,
                                                                    progress and (lambda s: progress(i, s))),
                             run=lambda pieces: self._run(pieces, query, decode, template), took=self._took,
                             finish=lambda job: self._result(job, chosen, translate, used,
                                                             (query, decode, template)), batch_size=batch_size,
                             window=window)

    def _segmenter(self, vad: str | None, max_segment_seconds: float | None) -> tuple[str, Callable]:
        """A call's segmenter (auto resolved) and its cut: samples → the pieces' [start, end)
        spans (funasr_qwen4b.segments)."""
        mode = self.vad if vad is None else segments.vad_mode(vad)
        limit = self.max_segment_seconds if max_segment_seconds is None \
            else segments.max_segment_seconds(max_segment_seconds)
        if mode == "off":
            return mode, lambda samples: segments.contiguous(samples, self.max_seconds)
        limit = min(limit, self.max_seconds or limit)  # max_seconds bounds every piece
        if mode == "fsmn" and self.vad_dir is None:
            raise ValueError("vad='fsmn': the bundle has no vad component; add one (funasr-qwen4b convert vad SRC "
                             "-o BUNDLE) or use vad='auto' or 'energy'")
        if mode == "energy" or self.vad_dir is None:
            return "energy", lambda samples: segments.cut(samples, limit, segments.energy_spans)
        model = self._vad()
        return "fsmn", lambda samples: segments.cut(samples, limit, lambda x, limit: segments.ms_spans(
            model.detect(x, max_single_segment_ms=int(limit * 1000)).segments, x, limit))

    def _vad(self):
        """The bundle's FSMN VAD, loaded at its first use. It runs on MLX whichever backend decodes:
        the component is its converted weights (its parity with FunASR's: tests/test_vad.py)."""
        if self._vad_model is None:
            try:
                from funasr_qwen4b.mlx_port.vad import FsmnVad
            except ModuleNotFoundError as e:
                raise ValueError(f"the FSMN VAD runs on MLX ({e.name} is not installed): pip install "
                                 "'funasr-qwen4b-mlx[mlx]', or use vad='energy'") from None
            self._vad_model = FsmnVad.load(self.vad_dir)
        return self._vad_model

    def _prepare(self, audio, sample_rate: int | None, on_text: Callable[[str], None] | None,
                 max_audio_seconds: float | None, cut: Callable, progress: Callable | None = None) -> Job:
        """One input read (refused from its header when longer than `max_audio_seconds`) and cut
        into pieces (`cut`: the call's segmenter); a piece without speech is not transcribed (the
        same rule for both backends), its reason kept. Where a segmenter finds no speech at all,
        the whole audio is one piece, for the no-speech rule to judge."""
        t = time.perf_counter()
        samples = read_audio(audio, sample_rate, max_seconds=max_audio_seconds)
        read_s = time.perf_counter() - t
        spans = cut(samples) or [(0, samples.size)]
        stream = OrderedStream(on_text, len(spans)) if on_text is not None else None
        job = Job(samples, stream=stream, read_s=read_s, spans=spans,
                  progress=progress(samples.size / SAMPLE_RATE) if progress else None)
        for k, (a, b) in enumerate(spans):
            reason = no_speech(samples[a:b])
            if reason is None:
                job.pieces[k] = samples[a:b]
                continue
            job.silent[k] = reason
            if stream is not None:
                stream.done(k)
        return job

    def _run(self, pieces: list[batching.Piece], query: QueryConfig, decode: DecodeConfig | None,
             template: str | None) -> list:
        """One pipeline call over pieces; a piece alone takes the pipeline's own path (speculation
        where it applies). The LLM's text streams as it is decoded; CTC text once it is there (_took)."""
        audio = [job.pieces[k] for job, k in pieces]
        log.debug("decoding %d piece(s), %.1f s of audio", len(audio), sum(a.size for a in audio) / SAMPLE_RATE)
        feeds = [job.stream.run_feed(k) if job.stream is not None and not self.ctc_only else None
                 for job, k in pieces]
        if len(pieces) == 1:
            return [self.pipeline.run(audio[0], on_text=feeds[0], query=query, decode=decode, template=template)]
        return self.pipeline.run_batch(audio, feeds, query=query, decode=decode, template=template)

    def _took(self, job: Job, k: int, out) -> None:
        if job.progress is not None:
            a, b = job.spans[k]
            job.progress.update((b - a) / SAMPLE_RATE)
        if self.ctc_only:
            out.text = out.ctc.text.strip()
            if job.stream is not None:
                job.stream.piece(k)(out.text)
        if job.stream is not None:
            job.stream.done(k)

    def _guard(self, job: Job, query: QueryConfig, decode: DecodeConfig | None, template: str | None) -> list[str]:
        """The CTC guard over a done job's pieces: a warning (logged) for each whose LLM text covers
        too little of its CTC transcript; with "retry", the uncovered end is cut off the piece and
        decoded as a piece of its own (the job's spans and outputs renumbered)."""
        if self.ctc_guard == "off":
            return []
        warnings, spans, outs, silent = [], [], {}, {}
        for k, (a, b) in enumerate(job.spans):
            out = job.outs.get(k)
            if k in job.silent:
                silent[len(spans)] = job.silent[k]
            if out is None or out.ctc is None:
                spans.append((a, b))
                if out is not None:
                    outs[len(spans) - 1] = out
                continue
            c = ctc_guard.check(out.text, out.ctc, self.pipeline.tokenizer)
            outs[len(spans)] = out
            spans.append((a, b))
            if not c.fired:
                continue
            said = ctc_guard.warning(c, a / SAMPLE_RATE, b / SAMPLE_RATE)
            retried = []
            # each tail decoded again is guarded in turn: a decoder that stopped early once may again
            while self.ctc_guard == "retry" and c.fired and c.tail is not None \
                    and len(retried) < ctc_guard.MAX_RETRIES:
                t = spans[-1][0] + int(c.tail * SAMPLE_RATE)
                if t <= spans[-1][0] or b - t < ctc_guard.MIN_RETRY_SECONDS * SAMPLE_RATE:
                    break
                again = self.pipeline.run(job.samples[t:b], query=query, decode=decode, template=template)
                job.runs.append(again.timings)
                spans[-1] = (spans[-1][0], t)
                outs[len(spans)] = again
                spans.append((t, b))
                retried.append(f"{t / SAMPLE_RATE:.2f}-{b / SAMPLE_RATE:.2f} s")
                c = ctc_guard.check(again.text, again.ctc, self.pipeline.tokenizer)
            if retried:
                said += f"; decoded again: {', '.join(retried)}"
            log.warning("%s", said)
            warnings.append(said)
        job.spans, job.outs, job.silent = spans, outs, silent
        return warnings

    def _result(self, job: Job, language: str | None, translate: bool, vad: str, settings: tuple) -> dict:
        """One input's result from its pieces' outputs and the stage times of the pipeline calls
        they were in; its `language` the one set (`language`), else the one detected
        (funasr_qwen4b.language; None where nothing tells: no speech); the CTC guard's warnings,
        its retries among the pieces (`settings`: the call's query, decoding and template)."""
        if job.progress is not None:  # the silence between the pieces, then done
            job.progress.update((job.samples.size - sum(b - a for k, (a, b) in enumerate(job.spans)
                                                         if k in job.outs)) / SAMPLE_RATE)
            job.progress.close()
        ctc_fields = {} if self.kind == NANO else _ctc_fields([job.outs[k] for k in sorted(job.outs)])
        warnings = self._guard(job, *settings)  # after the CTC fields: a retried tail is not spelled twice
        outs = [job.outs[k] for k in sorted(job.outs)]
        if language is None:
            language = most_spoken([((b - a) / SAMPLE_RATE, from_tags(o.ctc.tags) if o.ctc is not None
                                     else from_text(o.text)) for (a, b), o in
                                    ((job.spans[k], job.outs[k]) for k in sorted(job.outs))])
        seconds = round(job.samples.size / SAMPLE_RATE, 3)
        result = {"text": join_texts([o.text for o in outs]), "segments": self._all_segments(job),
                  "language": language, **ctc_fields, "seconds": seconds,
                  "chunks": len(job.spans), "vad": vad,
                  **self._decoded_fields(outs), "backend": self.backend.value, "warnings": warnings}
        if job.silent and not outs:
            reasons = list(job.silent.values())
            result["no_speech"] = reasons[0] if len(reasons) == 1 else "; ".join(sorted(set(reasons)))
        timings = job.timings()
        if translate:
            t1 = time.perf_counter()
            result["translation"] = self.translate(result["text"]) if result["text"] else ""
            timings["translate"] = time.perf_counter() - t1
        decode_s = timings.get("llm_decode", 0.0)
        tokens = max(result["tokens"] - len(outs), 0)  # those after each piece's first
        result["tokens_per_s"] = round(tokens / decode_s, 2) if decode_s else 0.0
        result["timings"] = {k: round(v, 4) for k, v in timings.items()}
        return result

    def _decoded_fields(self, outs: list) -> dict:
        """Tokens (the LLM's, or the CTC head's), each piece's stop, and the LLM's forward passes
        after each prefill with the draft tokens verified and accepted."""
        stats = [o.decoded.stats for o in outs if o.decoded]
        return {"tokens": sum(len(o.decoded.ids if o.decoded else o.ctc.text_ids) for o in outs),
                "stop": [] if self.ctc_only else [o.decoded.stop for o in outs],
                "forwards": sum(st.forwards for st in stats), "drafted": sum(st.drafted for st in stats),
                "accepted": sum(st.accepted for st in stats)}

    def _all_segments(self, job: Job) -> list[dict]:
        """Every piece's segments in order, numbered; a piece without speech is one empty segment with its reason."""
        segments = []
        for k, (a, b) in enumerate(job.spans):
            if k in job.silent:
                segments.append({"start": round(a / SAMPLE_RATE, 3), "end": round(b / SAMPLE_RATE, 3),
                                 "text": "", "tokens": [], "words": [], "no_speech": job.silent[k]})
            else:
                segments += self._segments(job.outs[k], job.samples[a:b], a / SAMPLE_RATE)
        for i, s in enumerate(segments):
            s["id"] = i
        return segments

    def _segments(self, out, samples, offset: float) -> list[dict]:
        """One piece's transcript as timed segments (seconds into the whole audio), each with
        its words and the ids that decode to it (and, from the LLM, their log-probabilities); the
        CTC alignment places them (ctc.timed_segments). Without a CTC head (Fun-ASR-Nano) the
        piece's speech is one segment, untimed within."""
        if self.ctc_only:
            text, ids, tok = out.ctc.text, out.ctc.text_ids, self.pipeline.tokenizer
            decode, logprobs = tok.decode if tok is not None else None, None
        else:
            text, ids, decode = out.text, out.decoded.ids, self.pipeline.setup.text
            logprobs = out.decoded.logprobs
        tokenizer = None if out.ctc is None else self.pipeline.tokenizer  # nothing to align with
        found = ctc.timed_segments(text, out.ctc, tokenizer, speech_regions(samples),
                                   samples.size / SAMPLE_RATE)
        if not found:  # speech without a transcript: the piece, untimed within
            return [{"start": round(offset, 3), "end": round(offset + samples.size / SAMPLE_RATE, 3), "text": "",
                     "tokens": list(ids), "words": [], **_logprobs(logprobs, range(len(ids)))}]
        groups = [[] for _ in found]  # positions in `ids`
        if decode is not None:  # each id to the segment where the text decoded up to it ends
            starts = [seg["span"][0] for seg in found]
            for k in range(len(ids)):
                groups[max(0, bisect.bisect_right(starts, len(decode(ids[:k + 1])) - 1) - 1)].append(k)
        else:
            groups[0] = list(range(len(ids)))
        t = lambda x: round(offset + x, 3)  # noqa: E731
        return [{"start": t(seg["start"]), "end": t(seg["end"]), "text": seg["text"].strip(),
                 "tokens": [ids[k] for k in group], **_logprobs(logprobs, group),
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
        paths = _inputs(paths, "transcribe_files")
        for i, p in enumerate(paths, 1):
            r = self.transcribe(p, **kwargs)
            log.info("[%d/%d] %s: %.1f s audio in %.2f s", i, len(paths), p, r["seconds"], r["timings"]["total"])
            yield {"audio": str(p), **r}


def _template_text(template, bundle: Bundle) -> str:
    """`template=` of Transcriber.load: template text with one {audio} slot, or a preset's name."""
    names = sorted({*PRESETS, *bundle.presets})
    if isinstance(template, str) and template in names:
        return bundle.template(template)
    if not isinstance(template, str) or template.count(AUDIO_SLOT) != 1:
        raise ValueError(f"template must be a preset name ({', '.join(names)}) or template text with exactly one "
                         f"{AUDIO_SLOT} slot, got {template!r}")
    return template


def _max_audio_seconds(value: float | None) -> float | None:
    """A bound on audio length: a positive number of seconds, or None (no bound)."""
    return None if value is None else checks.number(value, "max_audio_seconds", above=0)


def _inputs(audios, method: str) -> list:
    """The inputs of a call that takes several, as a list; one path, bytes or array is refused,
    not read as a sequence of characters, bytes or rows."""
    if isinstance(audios, (str, Path, bytes, bytearray, memoryview)) or hasattr(audios, "read") \
            or hasattr(audios, "ndim"):
        raise TypeError(f"{method} takes a list of inputs, got one {type(audios).__name__}: pass [audio] "
                        f"(or use transcribe for one input)")
    try:
        return list(audios)
    except TypeError:
        raise TypeError(f"{method} takes a list of inputs, got {type(audios).__name__}") from None


def _logprobs(logprobs: list[float] | None, positions) -> dict:
    """A segment's `logprobs`, those of its ids at `positions`, where the decoding gave them (the LLM's)."""
    return {} if logprobs is None else {"logprobs": [logprobs[k] for k in positions]}


def _ctc_fields(outs: list) -> dict:
    """The first piece's tags, and every piece's CTC text and ids."""
    first = outs[0].ctc if outs else None
    return {"tags": first.tags if first else [], "tag_ids": first.tag_ids if first else [],
            "ctc_text": join_texts([o.ctc.text for o in outs]), "ctc_ids": [i for o in outs for i in o.ctc.ids]}


def _raising(outcomes: Iterable[tuple[int, dict | Exception]]) -> list[dict]:
    """The results, in order; the first input that failed raises its error."""
    results = []
    for _, r in outcomes:
        if isinstance(r, Exception):
            raise r
        results.append(r)
    return results
