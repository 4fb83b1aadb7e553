"""`funasr-qwen4b`: one entry point, one module per subcommand.

Heavy imports (torch, FunASR, MLX) happen inside each command, so `--help`
is instant and the MLX commands never import torch.
"""

from __future__ import annotations

import argparse
import logging
import os

from ... import __version__
from ...audio import AudioError
from . import bench, cer, convert, parity, serve, transcribe
from .args import PROG, setup_logging

log = logging.getLogger(PROG)

EXAMPLES = """examples:
  funasr-qwen4b selfcheck                                    # no download: parity on random test checkpoints
  funasr-qwen4b convert bundle --sensevoice SenseVoiceSmall/ --adaptor adaptor.pt --llm Qwen3-4B/ -o bundle/
  funasr-qwen4b transcribe a.wav b.flac -m bundle/
  funasr-qwen4b parity -m bundle/ --audio a.wav --report parity.json
  funasr-qwen4b cer -m bundle/ --manifest test.jsonl --backend both --report cer.json
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "SenseVoiceSmall → audio adaptor → Qwen3-4B on Apple MLX, with FunASR/PyTorch as the reference "
        "and a layer-by-layer parity harness."), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, transcribe, parity, cer, bench, serve):
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if getattr(args, "strict_fp32", False):
        os.environ.setdefault("MLX_ENABLE_TF32", "0")  # the strict fp32 tier; read when MLX loads
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, AudioError, OSError) as e:
        log.error("%s: error: %s", PROG, " ".join(str(e).split()))
        return 2
    except KeyboardInterrupt:
        log.error("%s: interrupted", PROG)
        return 130

