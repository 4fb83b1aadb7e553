"""The `cer` subcommand. Building its parser imports neither torch nor MLX; the handler
imports the backends it runs."""

from __future__ import annotations

import argparse
import os
import sys


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_cer(args) -> int:
    os.environ.setdefault("MLX_ENABLE_TF32", "0")  # strict fp32 tier; read when MLX loads
    from funasr_qwen4b.cli import _query, _template

    from . import cer

    backends = ("mlx", "reference") if args.backend == "both" else (args.backend,)
    if args.worst < 0:
        raise ValueError(f"--worst must be 0 or more, got {args.worst}")
    rep = cer.CerRun(args.model, args.manifest, backends, report=args.report, limit=args.limit,
                     worst=args.worst, query=_query(args, None), sensevoice_src=args.sensevoice_src,
                     template=_template(args), progress=not args.no_progress, log=_log).run()
    print(cer.to_markdown(rep))
    if args.report:
        for p in cer.write(rep, args.report):
            _log(f"wrote {p}")
    return 0


def add_cer_parser(subparsers) -> argparse.ArgumentParser:
    from funasr_qwen4b.cli import _query_args, _template_args

    p = subparsers.add_parser(
        "cer", help="character error rate over a manifest, per backend, and MLX vs reference",
        description="Transcribe every utterance of a JSONL manifest ({\"id\", \"audio\", \"text\", \"lang\"}; "
        "audio paths relative to the manifest) and score it: corpus CER per backend (WER too for lang=en), "
        "CER of the MLX transcript against the reference transcript, the worst utterances side by side. "
        "Transcripts come from SenseVoice's CTC head for now (tags stripped). Text is normalised first: "
        "SenseVoice tags stripped, NFKC (full-width → half-width), lowercase, punctuation removed, whitespace "
        "removed for CER / collapsed for WER. With --report, results are appended to FILE.partial.jsonl as "
        "they come, and a rerun skips the utterances already done (resume after an interruption).")
    p.add_argument("-m", "--model", required=True, help="bundle directory")
    p.add_argument("--manifest", required=True, help="JSONL manifest (see datasets/make_manifest.py)")
    p.add_argument("--backend", choices=["mlx", "reference", "both"], default="mlx",
                   help="mlx (default), reference (FunASR/PyTorch, reads the original files) or both")
    p.add_argument("--report", help="write FILE.json + FILE.md + FILE.png (and keep FILE.partial.jsonl for "
                   "resuming); without it the Markdown report is only printed and nothing is resumable")
    p.add_argument("--limit", type=int, help="only the first N utterances of the manifest")
    p.add_argument("--worst", type=int, default=10, help="rows in the worst-utterances table (default 10)")
    p.add_argument("--sensevoice-src", help="original SenseVoice directory for the reference backend "
                   "(default: the path recorded at conversion)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _template_args(p)
    _query_args(p)
    p.set_defaults(func=cmd_cer)
    return p
