"""`transcribe`: audio files → text on stdout (one line, or one JSON object, per file)."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace

from ...audio import load_audio
from ...bundle import Bundle
from .args import (add_backend_arg, add_model_arg, add_query_args, add_source_args, add_speculate_arg,
                   add_template_args, query_from, sources_from, template_from)

log = logging.getLogger(__name__)


def cmd_transcribe(args) -> int:
    from ..transcriber import Transcriber

    bundle = Bundle.read(args.model)
    decode = None
    if not args.ctc:
        decode = replace(bundle.decode, loop_guard=not args.no_loop_guard, speculate=args.speculate or
                         bundle.decode.speculate, repetition_penalty=args.repetition_penalty,
                         no_repeat_ngram=args.no_repeat_ngram)
    t = Transcriber.load(bundle, args.backend, ctc_only=args.ctc, template=template_from(args, bundle),
                         query=query_from(args, None), decode=decode, max_seconds=args.max_seconds,
                         sources=sources_from(args))
    many = len(args.audio) > 1
    for i, path in enumerate(args.audio, 1):
        load_audio(path)  # fail on bad input before any text of this file is printed
        prefix = f"{path}\t" if many else ""
        if args.stream and not args.json:
            print(prefix, end="", flush=True)
            r = t.transcribe(path, on_text=lambda d: print(d, end="", flush=True), translate=args.translate)
            print()
        else:
            r = t.transcribe(path, translate=args.translate)
        if args.json:
            print(json.dumps({"audio": path, **r}, ensure_ascii=False), flush=True)
        elif not args.stream:
            tags = "".join(r["tags"]) if args.ctc else ""
            print(f"{prefix}{tags}{r['text']}", flush=True)
        if args.translate and not args.json:
            print(f"[en] {r['translation']}", flush=True)
        if many:
            log.info("[%d/%d] %s: %.1f s audio in %.2f s", i, len(args.audio), path, r["seconds"],
                     r["timings"]["total"])
    return 0


def add_parser(sub) -> None:
    tr = sub.add_parser("transcribe", help="transcribe audio files",
                        description="Transcribe WAV/FLAC files (any sample rate; stereo is averaged to mono) with "
                        "SenseVoice → adaptor → Qwen3: greedy decoding until <|im_end|>/<|endoftext|>, capped at "
                        "about 5 tokens per second of audio (8 for --language en; 30..400), with a guard that cuts "
                        "n-gram repetition loops. Audio longer than --max-seconds (default 30) is split at its "
                        "quietest points and the texts are joined. --ctc uses SenseVoice's own CTC head instead: "
                        "greedy, repeats collapsed, blanks dropped; the 4 query frames give the tags.",
                        epilog="examples:\n  funasr-qwen4b transcribe a.wav b.flac -m bundle/\n"
                        "  funasr-qwen4b transcribe a.wav -m bundle/ --stream --language en\n"
                        "  funasr-qwen4b transcribe --ctc a.wav -m bundle/ --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("audio", nargs="+", help="audio files")
    add_model_arg(tr)
    tr.add_argument("--ctc", action="store_true", help="SenseVoice CTC head only (needs only the sensevoice component)")
    add_backend_arg(tr)
    tr.add_argument("--json", action="store_true",
                    help="one JSON object per file: text, segments, translation, tags, timings per stage, tokens/s, "
                    "LLM forward passes in decode and accepted draft tokens")
    tr.add_argument("--stream", action="store_true", help="print text as it is decoded")
    tr.add_argument("--translate", action="store_true",
                    help="also translate the transcript into English (a second, text-only pass, thinking disabled)")
    tr.add_argument("--max-seconds", type=float, default=30.0,
                    help="split longer audio at low-energy points (default 30; 0 = never split)")
    add_template_args(tr)
    g = tr.add_argument_group("decoding (greedy)")
    g.add_argument("--no-loop-guard", action="store_true", help="do not cut n-gram repetition loops")
    g.add_argument("--repetition-penalty", type=float, help="Hugging Face repetition penalty over generated ids")
    g.add_argument("--no-repeat-ngram", type=int, help="forbid repeating any n-gram of this size")
    add_speculate_arg(g)
    add_query_args(tr)
    add_source_args(tr)
    tr.set_defaults(func=cmd_transcribe)
