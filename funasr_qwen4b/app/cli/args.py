"""Arguments several subcommands share, and how each becomes a typed value."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ...bundle import Bundle
from ...config import LANGUAGE_IDS, TEXTNORM_IDS, Backend, QueryConfig
from ...decoding import SPECULATE
from ...prompt import PRESETS

PROG = "funasr-qwen4b"


def setup_logging(level: int = logging.INFO) -> None:
    """Everything but results goes to stderr, one plain line a message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "urllib3", "filelock", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_query_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder query rows (default: as recorded in the bundle; FunASR's language=zh, woitn)")
    g.add_argument("--language", choices=sorted(LANGUAGE_IDS), help="language query row")
    g.add_argument("--textnorm", choices=sorted(TEXTNORM_IDS), help="text-normalisation query row")
    g.add_argument("--no-query", action="store_true", help="put no query rows in front of the features")


def query_from(args, default: QueryConfig | None) -> QueryConfig | None:
    """The query the flags ask for, or `default` when they ask for nothing."""
    if args.language is None and args.textnorm is None and not args.no_query:
        return default
    base = default or QueryConfig()
    return QueryConfig(enabled=not args.no_query, language=args.language or base.language,
                       textnorm=args.textnorm or base.textnorm)


def add_template_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prompt template (where the audio rows sit among the LLM's text tokens)")
    g.add_argument("--template", choices=sorted(PRESETS), help="a preset (default: the bundle's, raw)")
    g.add_argument("--template-file", help="a text file with exactly one {audio} slot; special tokens allowed")


def template_from(args, bundle: Bundle) -> str | None:
    """Template text from --template / --template-file; None: the bundle's default."""
    if args.template is None and args.template_file is None:
        return None
    return bundle.template(args.template, args.template_file)


def add_backend_arg(p: argparse.ArgumentParser, both: bool = False) -> None:
    choices = [b.value for b in Backend] + (["both"] if both else [])
    p.add_argument("--backend", choices=choices, default=Backend.MLX.value,
                   help="mlx (default), reference (FunASR/PyTorch, reads the original files)"
                   + (" or both" if both else ""))


def backends_from(args) -> tuple[Backend, ...]:
    return {"both": tuple(Backend)}.get(args.backend) or (Backend.parse(args.backend),)


def add_source_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("original files for the reference (default: the paths recorded at conversion, "
                             "checked by sha256)")
    g.add_argument("--sensevoice-src", metavar="DIR", help="original SenseVoiceSmall directory")
    g.add_argument("--adaptor-src", metavar="FILE", help="original adaptor .pt")
    g.add_argument("--llm-src", metavar="DIR", help="original Hugging Face Qwen3 directory")


def sources_from(args) -> dict[str, str | None]:
    return {"sensevoice": args.sensevoice_src, "adaptor": args.adaptor_src, "llm": args.llm_src}


def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, type=Path, metavar="BUNDLE", help="bundle directory")


def add_speculate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speculate", choices=list(SPECULATE),
                   help="ctc: SenseVoice's CTC transcript drafts and the LLM verifies several tokens per pass "
                   "(the same ids as plain greedy decoding, fewer passes; MLX only); off: one token per pass "
                   "(default: the bundle's generation setting, ctc)")
