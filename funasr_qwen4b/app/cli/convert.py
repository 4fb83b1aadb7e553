"""`convert`: original weights → a bundle, one component or all at once."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ...config import QueryConfig
from .args import (add_hub_args, add_query_args, finite, integer, needs_extras, pt_file, query_conflict, query_from,
                   resolve_from)

log = logging.getLogger(__name__)


# Each command resolves its sources (hub ids) before importing its converter: a source that is
# not there is reported without waiting for torch to import.

def _within(path: Path, other: Path) -> bool:
    """`path` is `other` or lies inside it: by path once links are followed, or as the same
    directory (device and inode) anywhere up its parents."""
    path, other = Path(os.path.realpath(path)), Path(os.path.realpath(other))
    if path == other or other in path.parents:
        return True
    try:
        st = other.stat()
    except OSError:
        return False
    for p in (path, *path.parents):
        try:
            if (p.stat().st_dev, p.stat().st_ino) == (st.st_dev, st.st_ino):
                return True
        except OSError:
            continue
    return False


def refuse_writing_over_sources(output: str, sources, replaced: list[Path]) -> None:
    """Sources are only read: -o must not be a source nor lie inside one, and nothing conversion
    writes or replaces (`replaced`: the component, bundle.json; the whole bundle for `convert bundle`)
    may hold one. Checked before anything is converted."""
    for src in (s for s in sources if s is not None):
        if _within(Path(output), src):
            where = "is" if _within(src, Path(output)) else "lies inside"
            raise ValueError(f"-o {output} {where} the source {src}: sources are only read; choose another -o")
        hit = next((r for r in replaced if _within(src, r)), None)
        if hit is not None:
            raise ValueError(f"-o {output}: converting would replace {hit}, which holds the source {src}; sources "
                             f"are only read: move the source or choose another -o")


def _component(args, name: str) -> list[Path]:
    """What converting one component into -o writes or replaces."""
    return [Path(args.output) / name, Path(args.output) / "bundle.json"]


def cmd_sensevoice(args) -> int:
    src = resolve_from(args, args.src, "SenseVoice")
    refuse_writing_over_sources(args.output, [src], _component(args, "sensevoice"))
    with needs_extras("convert"):
        from funasr_qwen4b.convert.sensevoice import convert_sensevoice

        convert_sensevoice(src, args.output, dtype=args.dtype,
                           query=query_from(args, None) or QueryConfig(), force=args.force)
    log.info("done: %s/sensevoice", args.output)
    return 0


def cmd_vad(args) -> int:
    src = resolve_from(args, args.src, "VAD")
    refuse_writing_over_sources(args.output, [src], _component(args, "vad"))
    with needs_extras("convert"):
        from funasr_qwen4b.convert.vad import convert_vad

        convert_vad(src, args.output, dtype=args.dtype, force=args.force)
    log.info("done: %s/vad", args.output)
    return 0


def _adaptor_options(args) -> dict:
    return {"nhead": args.heads, "norm_first": args.norm_first, "activation": args.activation,
            "eps": args.eps, "keep_query_frames": not args.drop_query_frames, "q_bits": args.adaptor_q_bits}


def cmd_adaptor(args) -> int:
    src = pt_file(resolve_from(args, args.pt, "adaptor"))
    refuse_writing_over_sources(args.output, [src], _component(args, "adaptor"))
    with needs_extras("convert"):
        from funasr_qwen4b.convert.adaptor import convert_adaptor

        convert_adaptor(src, args.output, dtype=args.dtype,
                        force=args.force, **_adaptor_options(args))
    log.info("done: %s/adaptor", args.output)
    return 0


def cmd_llm(args) -> int:
    src = resolve_from(args, args.hf_dir, "LLM")
    refuse_writing_over_sources(args.output, [src], _component(args, "llm"))
    with needs_extras("convert llm"):
        from funasr_qwen4b.convert.llm import convert_llm

        convert_llm(src, args.output, q_bits=args.q_bits,
                    dtype=args.dtype or "bfloat16", embeddings_8bit=args.embeddings_8bit, force=args.force)
    log.info("done: %s/llm", args.output)
    return 0


def cmd_bundle(args) -> int:
    if args.funasr_nano is not None:
        return cmd_nano(args)
    sensevoice = resolve_from(args, args.sensevoice, "SenseVoice")
    adaptor, llm = pt_file(resolve_from(args, args.adaptor, "adaptor")), resolve_from(args, args.llm, "LLM")
    refuse_writing_over_sources(args.output, [sensevoice, adaptor, llm], [Path(args.output)])
    with needs_extras("convert"):
        from funasr_qwen4b.convert.bundle import convert_bundle

        convert_bundle(args.output, sensevoice=sensevoice, adaptor=adaptor, llm=llm, dtype=args.dtype,
                       query=query_from(args, None) or QueryConfig(), adaptor_options=_adaptor_options(args),
                       llm_options={"q_bits": args.q_bits, "embeddings_8bit": args.embeddings_8bit}, force=args.force)
    log.info("done: %s", args.output)
    return 0


def cmd_nano(args) -> int:
    src = resolve_from(args, args.funasr_nano, "Fun-ASR-Nano model")
    refuse_writing_over_sources(args.output, [src], [Path(args.output)])
    with needs_extras("convert"):
        from funasr_qwen4b.convert.nano import convert_nano

        convert_nano(src, args.output, dtype=args.dtype, q_bits=args.q_bits, force=args.force)
    log.info("done: %s (Fun-ASR-Nano)", args.output)
    return 0


# What `convert bundle --funasr-nano` takes from its one source: these flags describe the
# qwen4b model's parts and would be silently ignored. (flag, attribute, value when not given)
NOT_FOR_NANO = (("--sensevoice", "sensevoice", None), ("--adaptor", "adaptor", None), ("--llm", "llm", None),
                ("--embeddings-8bit", "embeddings_8bit", False), ("--language", "language", None),
                ("--textnorm", "textnorm", None), ("--no-query", "no_query", False), ("--heads", "heads", 8),
                ("--norm-first", "norm_first", False), ("--activation", "activation", "gelu"),
                ("--eps", "eps", 1e-5), ("--drop-query-frames", "drop_query_frames", False),
                ("--adaptor-q-bits", "adaptor_q_bits", None))


def bundle_conflicts(args) -> str | None:
    if args.funasr_nano is None:
        if args.sensevoice is None:
            return "give --sensevoice DIR (with --adaptor and --llm), or --funasr-nano SRC for a Fun-ASR-Nano bundle"
        return conflicts(args)
    given = [flag for flag, attr, unset in NOT_FOR_NANO if getattr(args, attr) != unset]
    if given:
        one = len(given) == 1
        return f"--funasr-nano converts one Fun-ASR-Nano model whole (its encoder, adaptor and Qwen3 as " \
               f"published): {', '.join(given)} {'does' if one else 'do'} not apply; drop {'it' if one else 'them'}"
    return None


def conflicts(args) -> str | None:
    if getattr(args, "embeddings_8bit", False) and args.q_bits != 4:
        return "--embeddings-8bit keeps the embedding of a 4-bit LLM at 8 bits: it needs -q 4"
    return query_conflict(args) if hasattr(args, "no_query") else None


def _llm_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--q-bits", type=int, choices=[4, 8], help="quantize the LLM to 4 or 8 bits (group size 64)")
    p.add_argument("--embeddings-8bit", action="store_true",
                   help="with -q 4: keep the tied embedding / LM head at 8 bits")


def _adaptor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("adaptor structure (not readable from the weights' shapes; defaults are what "
                             "the real adaptor was trained with: PyTorch's TransformerEncoderLayer defaults)")
    g.add_argument("--heads", type=integer(1), default=8, help="attention heads (default 8)")
    g.add_argument("--norm-first", action="store_true", help="pre-norm layers (default: post-norm, norm_first=False)")
    g.add_argument("--activation", choices=["gelu", "relu"], default="gelu", help="FFN activation (default exact GELU)")
    g.add_argument("--eps", type=finite(above=0, high=1), default=1e-5, help="LayerNorm eps (default 1e-5)")
    g.add_argument("--drop-query-frames", action="store_true",
                   help="feed the adaptor the encoder output without its 4 query frames (default: kept, "
                   "as FunASR's encoder output is [1, 4+T, 512])")
    g.add_argument("--adaptor-q-bits", type=int, choices=[4, 8],
                   help="quantize the adaptor's linear layers to 8 (or 4) bits, group size 64 "
                   "(LayerNorms and biases stay in --dtype); `parity` then compares at the bfloat16 tier")


def _dtype_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="weight dtype in the bundle (default float32)")


def _output_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--output", required=True, help="bundle directory (created if missing)")
    p.add_argument("--force", action="store_true", help=f"replace an existing {what}")


def add_parser(sub) -> None:
    conv = sub.add_parser("convert", help="convert original weights into a bundle",
                          description="Convert the original weights into a bundle (safetensors + config.json). "
                          "Sources are only read; output appears whole or not at all.")
    csub = conv.add_subparsers(dest="component", required=True, metavar="COMPONENT")

    sv = csub.add_parser("sensevoice", help="FunASR SenseVoiceSmall directory → BUNDLE/sensevoice",
                         description="Convert a FunASR SenseVoiceSmall directory (model.pt + config.yaml + am.mvn, "
                         "optional .bpe.model) into BUNDLE/sensevoice. The source is only read. Keys and shapes are "
                         "checked against config.yaml; the FSMN conv layout is fixed here; sha256 of each source "
                         "is recorded. Output is written to a temporary directory and renamed into place.",
                         epilog="example: funasr-qwen4b convert sensevoice SenseVoiceSmall/ -o bundle/")
    sv.add_argument("src", help="SenseVoiceSmall directory or hub id (e.g. iic/SenseVoiceSmall)")
    _output_args(sv, "sensevoice component")
    add_hub_args(sv)
    _dtype_arg(sv)
    add_query_args(sv)
    sv.set_defaults(func=cmd_sensevoice, conflicts=conflicts)

    ad = csub.add_parser("adaptor", help="trained adaptor .pt → BUNDLE/adaptor",
                         description="Convert the trained audio adaptor (.pt: a plain state_dict, or one under "
                         "state_dict / model_state_dict / model / adaptor, `module.` prefixes allowed; loaded with "
                         "torch.load(weights_only=True)). Dimensions are read from the shapes and checked against "
                         "each other; heads, norm order, activation and eps are given here.",
                         epilog="example: funasr-qwen4b convert adaptor adaptor_phase2_final.pt -o bundle/")
    ad.add_argument("pt", help="adaptor checkpoint, e.g. adaptor_phase2_final.pt (or owner/name[/FILE.pt] on a hub)")
    _output_args(ad, "adaptor component")
    add_hub_args(ad)
    _dtype_arg(ad)
    _adaptor_args(ad)
    ad.set_defaults(func=cmd_adaptor)

    bu = csub.add_parser("bundle", help="convert every component into a new bundle",
                         description="Convert SenseVoiceSmall, the adaptor and the LLM into one bundle, written "
                         "whole to a temporary directory and renamed into place (--force replaces an existing bundle).",
                         epilog="examples:\n  funasr-qwen4b convert bundle --sensevoice SenseVoiceSmall/ "
                         "--adaptor adaptor.pt --llm Qwen3-4B/ -o bundle/ -q 8\n"
                         "  funasr-qwen4b convert bundle --sensevoice iic/SenseVoiceSmall --adaptor adaptor.pt "
                         "--llm Qwen/Qwen3-4B -o bundle/\n"
                         "  funasr-qwen4b convert bundle --funasr-nano FunAudioLLM/Fun-ASR-Nano-2512 -o nano/\n"
                         "  funasr-qwen4b convert bundle --funasr-nano Fun-ASR-Nano-2512-hf/ -o nano/ -q 4",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    bu.add_argument("--sensevoice", help="FunASR SenseVoiceSmall directory or hub id (iic/SenseVoiceSmall)")
    bu.add_argument("--adaptor", help="trained adaptor .pt (or owner/name[/FILE.pt] on a hub)")
    bu.add_argument("--llm", help="Hugging Face Qwen3 directory or hub id (Qwen/Qwen3-4B)")
    bu.add_argument("--funasr-nano", metavar="SRC",
                    help="instead of the three above: a Fun-ASR-Nano model whole, FunASR's layout (config.yaml, "
                    "model.pt, its Qwen3 folder) or transformers' (-hf), a directory or hub id "
                    "(FunAudioLLM/Fun-ASR-Nano-2512); --dtype, -q, --hub and --revision apply")
    _output_args(bu, "bundle")
    add_hub_args(bu)
    bu.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                    help="dtype of every component (default: float32 for SenseVoice and the adaptor, "
                    "bfloat16 for the LLM)")
    _llm_quant_args(bu)
    add_query_args(bu)
    _adaptor_args(bu)
    bu.set_defaults(func=cmd_bundle, conflicts=bundle_conflicts)

    vd = csub.add_parser("vad", help="FunASR FSMN VAD directory → BUNDLE/vad (speech segments before the LLM)",
                         description="Convert FunASR's FSMN VAD (fsmn-vad: model.pt + config.yaml + am.mvn) into "
                         "BUNDLE/vad, added to an existing bundle (or a new bundle holding it alone). transcribe "
                         "--vad auto then cuts audio at the speech segments it finds. The source is only read.",
                         epilog="example: funasr-qwen4b convert vad iic/speech_fsmn_vad_zh-cn-16k-common-pytorch "
                         "-o bundle/")
    vd.add_argument("src", help="FSMN VAD directory or hub id (e.g. iic/speech_fsmn_vad_zh-cn-16k-common-pytorch)")
    _output_args(vd, "vad component")
    add_hub_args(vd)
    _dtype_arg(vd)
    vd.set_defaults(func=cmd_vad)

    lm = csub.add_parser("llm", help="Hugging Face Qwen3 directory → BUNDLE/llm (mlx-lm conversion)",
                         description="Convert a Hugging Face Qwen3 directory with mlx-lm's own conversion, so "
                         "`mlx_lm.load(BUNDLE/llm)` works. bfloat16 by default; -q 8 / -q 4 quantize.",
                         epilog="example: funasr-qwen4b convert llm Qwen3-4B/ -o bundle/ -q 4 --embeddings-8bit")
    lm.add_argument("hf_dir", help="Hugging Face Qwen3 directory (config.json, *.safetensors, tokenizer) or hub id")
    _output_args(lm, "llm component")
    add_hub_args(lm)
    lm.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="unquantized dtype (default bfloat16)")
    _llm_quant_args(lm)
    lm.set_defaults(func=cmd_llm, conflicts=conflicts)
