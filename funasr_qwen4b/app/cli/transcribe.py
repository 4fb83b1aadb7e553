"""`transcribe`: audio → text on stdout (one line, or one JSON object, per input) and,
like whisper tools, files: --output-dir D --output-format txt|srt|vtt|tsv|json|all."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from ...audio import AudioError, read_audio
from ..outputs import FORMATS, write_outputs
from .args import (add_backend_arg, add_hub_args, add_model_arg, add_query_args, add_source_args, add_speculate_arg,
                   add_template_args, bundle_from, query_from, sources_from, template_from)

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


def cmd_transcribe(args) -> int:
    from ..transcriber import Transcriber

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.batch_size > 1 and args.stream:
        raise ValueError("--stream prints one input's text as it is decoded: use it with --batch-size 1")
    inputs = expand(args.audio)
    formats, out_dir = output_formats(args), Path(args.output_dir or ".")
    bundle = bundle_from(args)
    decode = None
    if not args.ctc:
        decode = replace(bundle.decode, loop_guard=not args.no_loop_guard, speculate=args.speculate or
                         bundle.decode.speculate, repetition_penalty=args.repetition_penalty,
                         no_repeat_ngram=args.no_repeat_ngram)
    t = Transcriber.load(bundle, args.backend, ctc_only=args.ctc, template=template_from(args, bundle),
                         query=query_from(args, None), decode=decode, max_seconds=args.max_seconds,
                         sources=sources_from(args))
    many = len(inputs) > 1
    failed, done = [], 0
    names, out_stems = list(inputs), stems(inputs)
    for at in range(0, len(names), args.batch_size):
        group = []
        for name, stem in zip(names[at: at + args.batch_size], out_stems[at: at + args.batch_size]):
            try:  # read first: a bad input fails before any text of it is printed
                group.append((name, stem, read_audio(sys.stdin.buffer if name == STDIN else name)))
            except (AudioError, ValueError, FileNotFoundError, OSError) as e:
                if not many:  # one input: the command's own one-line error and exit status
                    raise
                failed.append(name)
                log.error("%s: %s", name, " ".join(str(e).split()))
        results = None
        if args.batch_size > 1 and len(group) > 1:
            try:
                results = t.transcribe_batch([x for _, _, x in group], 16000, batch_size=args.batch_size,
                                             translate=args.translate)
            except (AudioError, ValueError) as e:  # one at a time, so the input at fault is named
                log.warning("batch of %d failed (%s); transcribing its inputs one at a time", len(group), e)
        for k, (name, stem, samples) in enumerate(group):
            prefix = f"{name}\t" if many else ""
            try:
                r = (show(results[k], name, args, prefix) if results
                     else transcribe_one(t, samples, name, args, prefix))
                for p in write_outputs({"audio": name, **r}, out_dir, stem, formats):
                    log.info("wrote %s", p)
            except BrokenPipeError:  # the reader of our stdout is gone (`| head`): not this file's fault
                raise
            except (AudioError, ValueError, FileNotFoundError, OSError) as e:
                if not many:
                    raise
                failed.append(name)
                log.error("%s: %s", name, " ".join(str(e).split()))
                continue
            done += 1
            if many:
                log.info("[%d/%d] %s: %.1f s audio in %.2f s", done + len(failed), len(inputs), name, r["seconds"],
                         r["timings"]["total"])
    if many:
        log.info("%d of %d transcribed%s", len(inputs) - len(failed), len(inputs),
                 f"; failed: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


def transcribe_one(t, samples, name: str, args, prefix: str) -> dict:
    """One input's result, its text (or JSON) printed on stdout as it comes."""
    if args.stream and not args.json:
        print(prefix, end="", flush=True)
        r = t.transcribe(samples, 16000, on_text=lambda d: print(d, end="", flush=True), translate=args.translate)
        print()
        return show(r, name, args, prefix, streamed=True)
    return show(t.transcribe(samples, 16000, translate=args.translate), name, args, prefix)


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
                        "n-gram repetition loops. Audio longer than --max-seconds (default 30) is split at its "
                        "quietest points and the texts are joined. --ctc uses SenseVoice's own CTC head instead: "
                        "greedy, repeats collapsed, blanks dropped; the 4 query frames give the tags. Segments "
                        "(srt, vtt, tsv, json) are timed from the CTC alignment: a new one at each pause and after "
                        "each sentence. With several inputs a bad one is reported and skipped; the exit status is "
                        "1 when any failed.",
                        epilog="examples:\n  funasr-qwen4b transcribe a.wav b.flac -m bundle/\n"
                        "  funasr-qwen4b transcribe talks/ -m bundle/ --output-dir subs/ --output-format srt\n"
                        "  ffmpeg -i a.mp4 -f wav - | funasr-qwen4b transcribe - -m bundle/\n"
                        "  funasr-qwen4b transcribe a.wav -m bundle/ --stream --language en\n"
                        "  funasr-qwen4b transcribe clips/ -m bundle/ --batch-size 16 --json > results.jsonl\n"
                        "  funasr-qwen4b transcribe --ctc a.wav -m user/bundle --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("audio", nargs="+", help="audio files, directories (their audio files), or - for standard input")
    add_model_arg(tr)
    add_hub_args(tr)
    tr.add_argument("--ctc", action="store_true", help="SenseVoice CTC head only (needs only the sensevoice component)")
    add_backend_arg(tr)
    tr.add_argument("--json", action="store_true",
                    help="one JSON object per file: text, timed segments and words, translation, tags, timings per "
                    "stage, tokens/s, LLM forward passes in decode and accepted draft tokens")
    tr.add_argument("--stream", action="store_true", help="print text as it is decoded")
    tr.add_argument("--batch-size", type=int, default=1, metavar="N",
                    help="transcribe N inputs (their pieces, longest first) at once: more throughput on a GPU, "
                    "one token per pass per row instead of speculation; the reference backend still runs one at "
                    "a time (default 1)")
    tr.add_argument("--translate", action="store_true",
                    help="also translate the transcript into English (a second, text-only pass, thinking disabled)")
    tr.add_argument("--max-seconds", type=float, default=30.0,
                    help="split longer audio at low-energy points (default 30; 0 = never split)")
    g = tr.add_argument_group("output files (one per input and format, written whole or not at all)")
    g.add_argument("--output-dir", metavar="DIR", help="write files here (default with --output-format: .)")
    g.add_argument("--output-format", choices=[*FORMATS, "all"],
                   help="txt (one line per segment), srt, vtt, tsv (start/end in ms), json (the whole result); "
                   "default with --output-dir: all")
    add_template_args(tr)
    g = tr.add_argument_group("decoding (greedy)")
    g.add_argument("--no-loop-guard", action="store_true", help="do not cut n-gram repetition loops")
    g.add_argument("--repetition-penalty", type=float, help="Hugging Face repetition penalty over generated ids")
    g.add_argument("--no-repeat-ngram", type=int, help="forbid repeating any n-gram of this size")
    add_speculate_arg(g)
    add_query_args(tr)
    add_source_args(tr)
    tr.set_defaults(func=cmd_transcribe)
