"""`transcribe`: audio → text on stdout (one line, or one JSON object, per input) and,
like whisper tools, files: --output-dir D --output-format txt|srt|vtt|tsv|json|all."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import stat
import sys
from dataclasses import replace
from pathlib import Path

from ...audio import AudioError
from ...files import refuse_overwriting
from ...prompt import NANO_LANGUAGES, nano_instruction
from ..checks import MIN_SPLIT_SECONDS
from ..outputs import FORMATS, write_outputs
from .args import (MAX_SECONDS, add_backend_arg, add_ctc_guard_arg, add_max_audio_seconds_arg, add_model_arg,
                   add_query_args, add_segment_args, add_source_args, add_speculate_arg, add_template_args,
                   bundle_from, finite, integer, query_conflict, query_from, sources_from, template_from)

log = logging.getLogger(__name__)

# What a directory argument contributes: the files that look like audio (read directly,
# or through ffmpeg when it is installed).
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".mp4",
                  ".webm", ".mkv", ".wma"}
STDIN = "-"


def expand(args_audio: list[str]) -> list[str]:
    """Files as given, `-` (stdin) once, and each directory's audio files in name order."""
    inputs = []
    for a in args_audio:
        p = Path(a)
        if a != STDIN and p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"no audio files in directory {a} (looked for "
                                        f"{', '.join(sorted(AUDIO_SUFFIXES))})")
            inputs += found
        else:
            inputs.append(a)
    if inputs.count(STDIN) > 1:
        raise ValueError("`-` (standard input) can be given once")
    return inputs


class Stream:
    """An input path that is no file but a stream (a FIFO, /dev/fd/N of a shell's `<(...)`): read
    once, whole, when its turn comes, as standard input is."""

    def __init__(self, path: str):
        self.name = path

    def read(self) -> bytes:
        with open(self.name, "rb") as f:
            return f.read()


def source(name: str):
    """What the Transcriber reads for an input: standard input, a stream, or the path itself."""
    if name == STDIN:
        return sys.stdin.buffer
    with contextlib.suppress(OSError):
        mode = os.stat(name).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
            return Stream(name)
    return name


def stems(inputs: list[str]) -> list[str]:
    """Output file names without the format: the input's stem (`stdin` for `-`), or its whole
    name where two inputs share a stem (a.wav and a.flac), so no run overwrites its own output."""
    base = ["stdin" if i == STDIN else Path(i).stem for i in inputs]
    return [b if base.count(b) == 1 else ("stdin" if i == STDIN else Path(i).name) for i, b in zip(inputs, base)]


def output_formats(args) -> tuple[str, ...]:
    if args.output_format is None and args.output_dir is None:
        return ()
    fmt = args.output_format or "all"
    return FORMATS if fmt == "all" else (fmt,)


# A bad input, when there are several: reported, and the others go on.
INPUT_ERRORS = (AudioError, ValueError, OSError)


class Printed:
    """One input's text printed on stdout as it is decoded, after its prefix (`NAME<tab>` with
    several inputs), the prefix printed once the input is read and its text begins."""

    def __init__(self, prefix: str):
        self.prefix, self.started = prefix, False

    def __call__(self, delta: str) -> None:
        self.begin()
        print(delta, end="", flush=True)

    def begin(self) -> None:
        if not self.started:
            print(self.prefix, end="", flush=True)
            self.started = True

    def end(self) -> None:
        """Ends the line (an input that failed mid-way ends its own, too)."""
        if self.started:
            print(flush=True)


NANO = "funasr-nano"  # Bundle.kind of Fun-ASR-Nano


def hotword_list(text: str) -> list[str]:
    """--hotwords: words separated by commas (ASCII or full-width), each stripped."""
    words = [w.strip() for w in re.split("[,，]", text) if w.strip()]
    if not words:
        raise ValueError(f"--hotwords: expected words separated by commas, e.g. \"通义,FunASR\"; got {text!r}")
    for w in words:
        try:
            nano_instruction([w])
        except ValueError as e:
            raise ValueError(f"--hotwords: {e}") from None
    return words


def read_hotwords(path: str) -> list[str]:
    """--hotwords-file: one hotword a line, UTF-8; empty lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"--hotwords-file {path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                         f"UTF-8, one hotword a line") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"--hotwords-file {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"--hotwords-file {path} is a directory; give a text file, one hotword a line") from None
    words = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                nano_instruction([line.strip()])
            except ValueError as e:
                raise ValueError(f"--hotwords-file {path} line {n}: {e}") from None
            words.append(line.strip())
    if not words:
        raise ValueError(f"--hotwords-file {path} holds no hotword (empty lines are skipped); one hotword a line")
    return words


def hotwords_from(args) -> list[str] | None:
    if args.hotwords_file:
        return read_hotwords(args.hotwords_file)
    return None if args.hotwords is None else hotword_list(args.hotwords)


def nano_refusal(args, bundle) -> str | None:
    """What a flag asks of a model kind that has no part to do it: one line, naming the flag."""
    if bundle.kind != NANO:
        if args.hotwords or args.hotwords_file:
            flag = "--hotwords" if args.hotwords else "--hotwords-file"
            return f"{flag}: {bundle.root} is a {bundle.kind} bundle, a model without hotword training; hotwords " \
                   f"work with a Fun-ASR-Nano bundle (convert bundle --funasr-nano)"
        return None
    if args.ctc:
        return f"--ctc: {bundle.root} is a Fun-ASR-Nano bundle, which has no CTC head; drop --ctc"
    given = [f for f, v in (("--textnorm", args.textnorm), ("--no-query", args.no_query)) if v]
    if given:
        return f"{', '.join(given)}: {bundle.root} is a Fun-ASR-Nano bundle, whose encoder has no query rows; " \
               f"drop {'it' if len(given) == 1 else 'them'} (--language goes into its prompt)"
    if args.language not in (None, "auto", *NANO_LANGUAGES):
        return f"--language {args.language}: Fun-ASR-Nano's prompt names {', '.join(NANO_LANGUAGES)} (or auto)"
    return None


def load_transcriber(args):
    from ..transcriber import Transcriber

    bundle = bundle_from(args)
    refusal = nano_refusal(args, bundle)
    if refusal is not None:
        raise ValueError(refusal)
    nano = bundle.kind == NANO
    decode = None
    if not args.ctc:
        decode = replace(bundle.decode, loop_guard=not args.no_loop_guard, speculate=args.speculate or
                         bundle.decode.speculate, repetition_penalty=args.repetition_penalty,
                         no_repeat_ngram=args.no_repeat_ngram)
    return Transcriber.load(bundle, args.backend, ctc_only=args.ctc, template=template_from(args, bundle),
                            query=None if nano else query_from(args, None), language=args.language,
                            decode=decode, speculate=args.speculate, max_seconds=args.max_seconds,
                            max_audio_seconds=args.max_audio_seconds, sources=sources_from(args), vad=args.vad,
                            max_segment_seconds=args.max_segment_seconds, ctc_guard=args.ctc_guard)


# What only the LLM does: with --ctc these flags would be silently ignored.
LLM_FLAGS = {"translate": "--translate", "template": "--template", "template_file": "--template-file",
             "no_loop_guard": "--no-loop-guard", "repetition_penalty": "--repetition-penalty",
             "no_repeat_ngram": "--no-repeat-ngram", "speculate": "--speculate", "hotwords": "--hotwords",
             "hotwords_file": "--hotwords-file"}


def conflicts(args) -> str | None:
    if args.batch_size > 1 and args.stream:
        return "--stream prints one input's text as it is decoded: use it with --batch-size 1"
    if args.stream and args.json:
        return "--stream prints text as it is decoded, --json one object per input once it is done: choose one"
    llm_only = [flag for attr, flag in LLM_FLAGS.items() if getattr(args, attr) not in (None, False)]
    if args.ctc and llm_only:
        return f"{', '.join(llm_only)} set{'s' if len(llm_only) == 1 else ''} how the LLM decodes; --ctc uses " \
               "SenseVoice's CTC head and no LLM: drop one or the other"
    if args.hotwords is not None:
        try:
            hotword_list(args.hotwords)
        except ValueError as e:
            return str(e)
    return query_conflict(args)


def cmd_transcribe(args) -> int:
    inputs = expand(args.audio)
    said = Reports(args, inputs)
    refuse_overwriting([said.out_dir / f"{stem}.{fmt}" for stem in said.stems for fmt in said.formats],
                       [name for name in inputs if name != STDIN], "--output-dir/--output-format")
    hotwords = hotwords_from(args)  # a bad file refused before the model loads
    t = load_transcriber(args)
    # --batch-size inputs at a time, each read first: a bad input fails before any text of it is printed
    for i, r in t.transcribe_each([source(name) for name in inputs],
                                  on_texts=said.printed, translate=args.translate, hotwords=hotwords,
                                  batch_size=args.batch_size, window=args.batch_size,
                                  progress=None if args.quiet or not sys.stderr.isatty() else bar(inputs)):
        said.outcome(i, r)
    return said.close()


PROGRESS_SECONDS = 20.0  # shorter inputs get no progress bar: they are done about as soon as read


def bar(inputs: list[str]):
    """Input i's progress bar on stderr, by audio seconds, when it is longer than PROGRESS_SECONDS."""
    from tqdm import tqdm

    def make(i: int, seconds: float):
        if seconds <= PROGRESS_SECONDS:
            return None
        return tqdm(total=round(seconds, 1), desc=Path(inputs[i]).name, unit="s", file=sys.stderr, leave=False,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    return make


class Reports:
    """What the command says of each input, in order: its text (or JSON) on stdout and its files;
    with several inputs, a bad one reported and skipped, and the progress on stderr."""

    def __init__(self, args, inputs: list[str]):
        self.args, self.inputs, self.many, self.failed = args, inputs, len(inputs) > 1, []
        self.formats, self.out_dir, self.stems = output_formats(args), Path(args.output_dir or "."), stems(inputs)
        self.prefixes = [f"{name}\t" if self.many else "" for name in inputs]
        self.printed = [Printed(p) for p in self.prefixes] if args.stream and not args.json else None

    def outcome(self, i: int, r: dict | Exception) -> None:
        name = self.inputs[i]
        try:
            r = self.show(i, r)
            for p in write_outputs({"audio": name, **r}, self.out_dir, self.stems[i], self.formats):
                log.info("wrote %s", p)
        except BrokenPipeError:  # the reader of our stdout is gone (`| head`): not this file's fault
            raise
        except INPUT_ERRORS as e:
            if not self.many:  # one input: the command's own one-line error and exit status
                raise
            self.failed.append(name)
            log.error("%s: %s", name, " ".join(str(e).split()))
            return
        if self.many:
            log.info("[%d/%d] %s: %.1f s audio in %.2f s", i + 1, len(self.inputs), name, r["seconds"],
                     r["timings"]["total"])

    def show(self, i: int, r: dict | Exception) -> dict:
        """Input i's result shown (its streamed line ended), or its error raised."""
        printed = self.printed[i] if self.printed else None
        if printed is not None:
            if not isinstance(r, Exception):
                printed.begin()  # a result without text still has its line
            printed.end()
        if isinstance(r, Exception):
            raise r
        return show(r, self.inputs[i], self.args, self.prefixes[i], streamed=printed is not None)

    def close(self) -> int:
        """The exit status: 1 when any input failed."""
        if self.many:
            log.info("%d of %d transcribed%s", len(self.inputs) - len(self.failed), len(self.inputs),
                     f"; failed: {', '.join(self.failed)}" if self.failed else "")
        return 1 if self.failed else 0


def show(r: dict, name: str, args, prefix: str, streamed: bool = False) -> dict:
    """Print one input's result on stdout: its text (unless streamed), or its JSON object."""
    if args.json:
        print(json.dumps({"audio": name, **r}, ensure_ascii=False), flush=True)
    elif not streamed:
        tags = "".join(r["tags"]) if args.ctc else ""
        print(f"{prefix}{tags}{r['text']}", flush=True)
    if args.translate and not args.json:
        print(f"[en] {r['translation']}", flush=True)
    return r


def add_parser(sub) -> None:
    tr = sub.add_parser("transcribe", help="transcribe audio files",
                        description="Transcribe audio (WAV, FLAC, OGG, MP3 directly; M4A, AAC and other formats "
                        "through ffmpeg when it is installed; any sample rate; stereo is averaged to mono) with "
                        "SenseVoice → adaptor → Qwen3: greedy decoding until <|im_end|>/<|endoftext|>, capped at "
                        "about 5 tokens per second of audio (8 for --language en; 30..400), with a guard that cuts "
                        "n-gram repetition loops. Audio is first cut into speech segments (--vad: the bundle's "
                        "FSMN VAD, "
                        "else the loudness between pauses), each at most --max-segment-seconds, decoded as separate "
                        "utterances and joined; with --vad off, audio longer than --max-seconds (default 30) is split "
                        "at its quietest points. --ctc uses SenseVoice's own CTC head instead: "
                        "greedy, repeats collapsed, blanks dropped; the 4 query frames give the tags. Segments "
                        "(srt, vtt, tsv, json) are timed from the CTC alignment: a new one at each pause and after "
                        "each sentence. With several inputs a bad one is reported and skipped; the exit status is "
                        "1 when any failed. A Fun-ASR-Nano bundle (convert bundle --funasr-nano) has no CTC head: "
                        "no --ctc, no tags, each piece's speech one segment without word times; --language (zh, en, "
                        "ja) and --hotwords go into its prompt as FunASR writes it.",
                        epilog="examples:\n  funasr-qwen4b transcribe a.wav b.flac -m bundle/\n"
                        "  funasr-qwen4b transcribe talks/ -m bundle/ --output-dir subs/ --output-format srt\n"
                        "  ffmpeg -i a.mp4 -f wav - | funasr-qwen4b transcribe - -m bundle/\n"
                        "  funasr-qwen4b transcribe a.wav -m bundle/ --stream --language en\n"
                        "  funasr-qwen4b transcribe clips/ -m bundle/ --batch-size 16 --json > results.jsonl\n"
                        "  funasr-qwen4b transcribe --ctc a.wav -m user/bundle --json\n"
                        "  funasr-qwen4b transcribe a.wav -m nano/ --hotwords \"通义,FunASR\" --language zh\n"
                        "  funasr-qwen4b transcribe clips/ -m nano/ --hotwords-file names.txt --batch-size 8",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("audio", nargs="+", help="audio files, directories (their audio files), or - for standard input")
    add_model_arg(tr)
    tr.add_argument("--ctc", action="store_true", help="SenseVoice CTC head only (needs only the sensevoice component)")
    add_backend_arg(tr)
    tr.add_argument("--json", action="store_true",
                    help="one JSON object per file: text, timed segments and words, translation, tags, timings per "
                    "stage, tokens/s, LLM forward passes in decode and accepted draft tokens")
    tr.add_argument("--stream", action="store_true", help="print text as it is decoded")
    tr.add_argument("--batch-size", type=integer(1), default=1, metavar="N",
                    help="transcribe N inputs (their pieces, longest first) at once: more throughput on a GPU, "
                    "one token per pass per row instead of speculation; the reference backend still runs one at "
                    "a time (default 1)")
    tr.add_argument("--translate", action="store_true",
                    help="also translate the transcript into English (a second, text-only pass, thinking disabled)")
    add_segment_args(tr)
    add_ctc_guard_arg(tr)
    tr.add_argument("--max-seconds", type=MAX_SECONDS, default=30.0,
                    help=f"with --vad off: split longer audio at low-energy points (default 30; 0 = never split; "
                    f"else at least {MIN_SPLIT_SECONDS:g})")
    add_max_audio_seconds_arg(tr)
    tr.add_argument("--quiet", action="store_true",
                    help=f"no progress bar (shown on a terminal's stderr for inputs over {PROGRESS_SECONDS:g} s)")
    g = tr.add_argument_group("output files (one per input and format, written whole or not at all)")
    g.add_argument("--output-dir", metavar="DIR", help="write files here (default with --output-format: .)")
    g.add_argument("--output-format", choices=[*FORMATS, "all"],
                   help="txt (one line per segment), srt, vtt, tsv (start/end in ms), json (the whole result); "
                   "default with --output-dir: all")
    add_template_args(tr)
    g = tr.add_argument_group("hotwords (Fun-ASR-Nano only: its prompt lists them, as FunASR's hotwords= does; a "
                              "model without hotword training refuses them)").add_mutually_exclusive_group()
    g.add_argument("--hotwords", metavar="WORDS",
                   help="words separated by commas, e.g. \"通义,FunASR\"")
    g.add_argument("--hotwords-file", metavar="FILE",
                   help="a UTF-8 text file, one hotword a line (empty lines skipped)")
    g = tr.add_argument_group("decoding (greedy)")
    g.add_argument("--no-loop-guard", action="store_true", help="do not cut n-gram repetition loops")
    g.add_argument("--repetition-penalty", type=finite(above=0),
                   help="Hugging Face repetition penalty over generated ids")
    g.add_argument("--no-repeat-ngram", type=integer(1), help="forbid repeating any n-gram of this size")
    add_speculate_arg(g)
    add_query_args(tr)
    add_source_args(tr)
    tr.set_defaults(func=cmd_transcribe, conflicts=conflicts)
