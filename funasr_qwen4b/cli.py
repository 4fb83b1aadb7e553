"""`funasr-qwen4b`: one entry point for conversion, transcription and parity.

Heavy imports (torch, FunASR, MLX) happen inside each command, so `--help`
is instant and the MLX commands never import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from parity.cer_cli import add_cer_parser
from funasr_qwen4b.serve_cli import add_serve_parser

from . import __version__
from .config import LANGUAGE_IDS, TEXTNORM_IDS, QueryConfig

PROG = "funasr-qwen4b"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _query_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder query rows (default: as recorded in the bundle; FunASR's language=zh, woitn)")
    g.add_argument("--language", choices=sorted(LANGUAGE_IDS), help="language query row")
    g.add_argument("--textnorm", choices=sorted(TEXTNORM_IDS), help="text-normalisation query row")
    g.add_argument("--no-query", action="store_true", help="put no query rows in front of the features")


def _query(args, default: QueryConfig | None) -> QueryConfig | None:
    if args.language is None and args.textnorm is None and not args.no_query:
        return default
    base = default or QueryConfig()
    return QueryConfig(enabled=not args.no_query, language=args.language or base.language,
                       textnorm=args.textnorm or base.textnorm)


def _template_args(p: argparse.ArgumentParser) -> None:
    from .prompt import PRESETS

    g = p.add_argument_group("prompt template (where the audio rows sit among the LLM's text tokens)")
    g.add_argument("--template", choices=sorted(PRESETS), help="a preset (default: the bundle's, raw)")
    g.add_argument("--template-file", help="a text file with exactly one {audio} slot; special tokens allowed")


def _bundle_query(bundle: str) -> QueryConfig:
    from .bundle import read_bundle

    return QueryConfig(**read_bundle(bundle)["components"]["sensevoice"].get("query", {}))


# --- convert ---------------------------------------------------------------

def cmd_convert_sensevoice(args) -> int:
    from convert.sensevoice import convert_sensevoice

    convert_sensevoice(args.src, args.output, dtype=args.dtype, query=_query(args, None) or QueryConfig(),
                       force=args.force, log=log)
    log(f"done: {args.output}/sensevoice")
    return 0


def _adaptor_options(args) -> dict:
    return {"nhead": args.heads, "norm_first": args.norm_first, "activation": args.activation,
            "eps": args.eps, "keep_query_frames": not args.drop_query_frames, "q_bits": args.adaptor_q_bits}


def cmd_convert_adaptor(args) -> int:
    from convert.adaptor import convert_adaptor

    convert_adaptor(args.pt, args.output, dtype=args.dtype, force=args.force, log=log, **_adaptor_options(args))
    log(f"done: {args.output}/adaptor")
    return 0


def cmd_convert_bundle(args) -> int:
    from convert.bundle import convert_bundle

    convert_bundle(args.output, sensevoice=args.sensevoice, adaptor=args.adaptor, llm=args.llm, dtype=args.dtype,
                   query=_query(args, None) or QueryConfig(), adaptor_options=_adaptor_options(args),
                   llm_options={"q_bits": args.q_bits, "embeddings_8bit": args.embeddings_8bit},
                   force=args.force, log=log)
    log(f"done: {args.output}")
    return 0


def cmd_convert_llm(args) -> int:
    from convert.llm import convert_llm

    convert_llm(args.hf_dir, args.output, q_bits=args.q_bits, dtype=args.dtype or "bfloat16",
                embeddings_8bit=args.embeddings_8bit, force=args.force, log=log)
    log(f"done: {args.output}/llm")
    return 0


def _llm_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--q-bits", type=int, choices=[4, 8], help="quantize the LLM to 4 or 8 bits (group size 64)")
    p.add_argument("--embeddings-8bit", action="store_true",
                   help="with -q 4: keep the tied embedding / LM head at 8 bits")


def _adaptor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("adaptor structure (not readable from the weights' shapes; defaults are what "
                             "the real adaptor was trained with: PyTorch's TransformerEncoderLayer defaults)")
    g.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    g.add_argument("--norm-first", action="store_true", help="pre-norm layers (default: post-norm, norm_first=False)")
    g.add_argument("--activation", choices=["gelu", "relu"], default="gelu", help="FFN activation (default exact GELU)")
    g.add_argument("--eps", type=float, default=1e-5, help="LayerNorm eps (default 1e-5)")
    g.add_argument("--drop-query-frames", action="store_true",
                   help="feed the adaptor the encoder output without its 4 query frames (default: kept, "
                   "as FunASR's encoder output is [1, 4+T, 512])")
    g.add_argument("--adaptor-q-bits", type=int, choices=[4, 8],
                   help="quantize the adaptor's linear layers to 8 (or 4) bits, group size 64 "
                   "(LayerNorms and biases stay in --dtype); `parity` then compares at the bfloat16 tier")


def _dtype_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="weight dtype in the bundle (default float32)")


# --- transcribe ------------------------------------------------------------

def _template(args) -> str | None:
    from .prompt import template_text

    if args.template is None and args.template_file is None:
        return None  # the bundle's default
    return template_text(args.template, args.template_file)


def _decode(args, bundle: str):
    from dataclasses import replace

    from .bundle import read_bundle
    from .decoding import DecodeConfig

    d = DecodeConfig(**read_bundle(bundle).get("generation", {}))
    return replace(d, loop_guard=not args.no_loop_guard, repetition_penalty=args.repetition_penalty,
                   no_repeat_ngram=args.no_repeat_ngram)


def cmd_transcribe(args) -> int:
    from .audio import load_audio

    if args.ctc:
        return _transcribe_ctc(args)
    from .transcriber import Transcriber

    sources = {"sensevoice_src": args.sensevoice_src, "adaptor_src": args.adaptor_src, "llm_src": args.llm_src}
    t = Transcriber.load(args.model, args.backend, template=_template(args), query=_query(args, None),
                         decode=_decode(args, args.model), max_seconds=args.max_seconds, sources=sources, log=log)
    for i, path in enumerate(args.audio, 1):
        load_audio(path)  # fail on bad input before any text is printed
        if args.stream and not args.json:
            if len(args.audio) > 1:
                print(f"{path}\t", end="", flush=True)
            r = t.transcribe(path, on_text=lambda d: print(d, end="", flush=True), translate=args.translate)
            print()
        else:
            r = t.transcribe(path, translate=args.translate)
        if args.json:
            print(json.dumps({"audio": path, **r}, ensure_ascii=False), flush=True)
        elif not args.stream:
            prefix = f"{path}\t" if len(args.audio) > 1 else ""
            print(f"{prefix}{r['text']}", flush=True)
        if args.translate and not args.json:
            print(f"[en] {r['translation']}", flush=True)
        if len(args.audio) > 1:
            log(f"[{i}/{len(args.audio)}] {path}: {r['seconds']:.1f} s audio in {r['timings']['total']:.2f} s")
    return 0


def _transcribe_ctc(args) -> int:
    from .audio import load_audio

    query = _query(args, _bundle_query(args.model))
    if args.backend == "mlx":
        from mlx_port.pipeline import Pipeline

        pipe = Pipeline.from_bundle(args.model, query, ctc_only=True)
    else:
        from parity.harness import sensevoice_source_dir
        from reference.pipeline import Pipeline

        pipe = Pipeline.from_sources(sensevoice_source_dir(args.model, args.sensevoice_src), query)
    for path in args.audio:
        result = pipe.run(load_audio(path)).ctc
        if args.json:
            print(json.dumps({"audio": path, "backend": args.backend, **result.to_dict()}, ensure_ascii=False))
        else:
            prefix = f"{path}\t" if len(args.audio) > 1 else ""
            print(f"{prefix}{''.join(result.tags)}{result.text}")
    return 0


# --- parity ----------------------------------------------------------------

def _run_parity(bundle, audio_path, args) -> int:
    from parity import report as reports
    from parity.harness import MODES, run_parity

    from .audio import load_audio

    samples = load_audio(audio_path)
    modes = MODES if args.mode == "both" else (args.mode,)
    rep = run_parity(bundle, samples, audio_name=str(audio_path), sensevoice_src=args.sensevoice_src,
                     adaptor_src=args.adaptor_src, llm_src=args.llm_src, template=_template(args),
                     query=_query(args, None), modes=modes, log=log)
    print(reports.to_markdown(rep))
    if args.report:
        for p in reports.write(rep, args.report):
            log(f"wrote {p}")
    if args.dump:
        for p in reports.dump(rep, args.dump):
            log(f"wrote {p}")
    if not rep.passed:
        first = next((f"{m}: {rep.first_failure(m)}" for m in rep.results if rep.first_failure(m)), "CTC ids differ")
        log(f"parity FAILED ({first})")
        return 1
    return 0


def cmd_parity(args) -> int:
    return _run_parity(args.model, args.audio, args)


def cmd_selfcheck(args) -> int:
    from convert.bundle import convert_bundle
    from reference.checkpoints import ADAPTOR_TINY, QWEN3_TINY, TINY, make_adaptor_pt, make_qwen3_dir, make_sensevoice_dir

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="funasr-qwen4b-selfcheck-"))
    log(f"building small original-format checkpoints with the upstream classes (random, seeded) in {work}:")
    log(f"  SenseVoiceSmall {TINY} (FunASR), adaptor {ADAPTOR_TINY}, Qwen3 {QWEN3_TINY} with Qwen's tokenizer")
    src = make_sensevoice_dir(work / "SenseVoiceSmall", TINY, seed=0)
    pt = make_adaptor_pt(work / "adaptor_phase2_final.pt", "model_state_dict")
    hf = make_qwen3_dir(work / "Qwen3-tiny")
    bundle = convert_bundle(work / "bundle", sensevoice=src, adaptor=pt, llm=hf, dtype="float32",
                            adaptor_options={"nhead": ADAPTOR_TINY["nhead"]}, force=True, log=log)
    try:
        return _run_parity(bundle, args.audio, args)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def cmd_bench(args) -> int:
    from parity import bench

    from .bundle import write_json_atomic

    if bool(args.model) == bool(args.synthetic):
        raise ValueError("give either -m BUNDLE or --synthetic full")
    backends = ("mlx", "reference") if args.backend == "both" else (args.backend,)
    clips = tuple(float(c) for c in args.clips.split(","))
    rep = bench.run_bench(bundle=args.model, synthetic=args.synthetic, backends=backends, clips=clips,
                          reps=args.reps, warmup=args.warmup, tokens=args.tokens, q_bits=args.q_bits,
                          dtype=args.dtype, log=log)
    print(bench.to_markdown(rep))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, rep)
        log(f"wrote {args.json}")
    return 0


# --- parser ----------------------------------------------------------------

DEFAULT_CLIP = Path(__file__).resolve().parent.parent / "datasets" / "clips" / "zh_open_hours.wav"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "SenseVoiceSmall → audio adaptor → Qwen3-4B on Apple MLX, with FunASR/PyTorch as the reference "
        "and a layer-by-layer parity harness."), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with `funasr-qwen4b selfcheck` (no download needed), then convert your own weights.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    conv = sub.add_parser("convert", help="convert original weights into a bundle")
    csub = conv.add_subparsers(dest="component", required=True, metavar="COMPONENT")
    sv = csub.add_parser("sensevoice", help="FunASR SenseVoiceSmall directory → BUNDLE/sensevoice",
                         description="Convert a FunASR SenseVoiceSmall directory (model.pt + config.yaml + am.mvn, "
                         "optional .bpe.model) into BUNDLE/sensevoice. The source is only read. Keys and shapes are "
                         "checked against config.yaml; the FSMN conv layout is fixed here; sha256 of each source "
                         "is recorded. Output is written to a temporary directory and renamed into place.")
    sv.add_argument("src", help="SenseVoiceSmall directory")
    sv.add_argument("-o", "--output", required=True, help="bundle directory (created if missing)")
    _dtype_arg(sv)
    sv.add_argument("--force", action="store_true", help="replace an existing sensevoice component")
    _query_args(sv)
    sv.set_defaults(func=cmd_convert_sensevoice)

    ad = csub.add_parser("adaptor", help="trained adaptor .pt → BUNDLE/adaptor",
                         description="Convert the trained audio adaptor (.pt: a plain state_dict, or one under "
                         "state_dict / model_state_dict / model / adaptor, `module.` prefixes allowed; loaded with "
                         "torch.load(weights_only=True)). Dimensions are read from the shapes and checked against "
                         "each other; heads, norm order, activation and eps are given here.")
    ad.add_argument("pt", help="adaptor checkpoint, e.g. adaptor_phase2_final.pt")
    ad.add_argument("-o", "--output", required=True, help="bundle directory (created if missing)")
    _dtype_arg(ad)
    ad.add_argument("--force", action="store_true", help="replace an existing adaptor component")
    _adaptor_args(ad)
    ad.set_defaults(func=cmd_convert_adaptor)

    bu = csub.add_parser("bundle", help="convert every component into a new bundle",
                         description="Convert SenseVoiceSmall and the adaptor into one bundle, written whole to a "
                         "temporary directory and renamed into place (--force replaces an existing bundle).")
    bu.add_argument("--sensevoice", required=True, help="FunASR SenseVoiceSmall directory")
    bu.add_argument("--adaptor", help="trained adaptor .pt")
    bu.add_argument("--llm", help="Hugging Face Qwen3 directory")
    bu.add_argument("-o", "--output", required=True, help="bundle directory")
    bu.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                    help="dtype of every component (default: float32 for SenseVoice and the adaptor, "
                    "bfloat16 for the LLM)")
    _llm_quant_args(bu)
    bu.add_argument("--force", action="store_true", help="replace an existing bundle")
    _query_args(bu)
    _adaptor_args(bu)
    bu.set_defaults(func=cmd_convert_bundle)

    lm = csub.add_parser("llm", help="Hugging Face Qwen3 directory → BUNDLE/llm (mlx-lm conversion)",
                         description="Convert a Hugging Face Qwen3 directory with mlx-lm's own conversion, so "
                         "`mlx_lm.load(BUNDLE/llm)` works. bfloat16 by default; -q 8 / -q 4 quantize.")
    lm.add_argument("hf_dir", help="Hugging Face Qwen3 directory (config.json, *.safetensors, tokenizer)")
    lm.add_argument("-o", "--output", required=True, help="bundle directory (created if missing)")
    lm.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="unquantized dtype (default bfloat16)")
    _llm_quant_args(lm)
    lm.add_argument("--force", action="store_true", help="replace an existing llm component")
    lm.set_defaults(func=cmd_convert_llm)

    tr = sub.add_parser("transcribe", help="transcribe audio files",
                        description="Transcribe WAV/FLAC files (any sample rate; stereo is averaged to mono) with "
                        "SenseVoice → adaptor → Qwen3: greedy decoding until <|im_end|>/<|endoftext|>, capped at "
                        "about 5 tokens per second of audio (8 for --language en; 30..400), with a guard that cuts "
                        "n-gram repetition loops. Audio longer than --max-seconds (default 30) is split at its "
                        "quietest points and the texts are joined. --ctc uses SenseVoice's own CTC head instead: "
                        "greedy, repeats collapsed, blanks dropped; the 4 query frames give the tags.")
    tr.add_argument("audio", nargs="+", help="audio files")
    tr.add_argument("-m", "--model", required=True, help="bundle directory")
    tr.add_argument("--ctc", action="store_true", help="SenseVoice CTC head only (needs only the sensevoice component)")
    tr.add_argument("--backend", choices=["mlx", "reference"], default="mlx",
                    help="mlx (default) or reference (FunASR/PyTorch, reads the original files)")
    tr.add_argument("--sensevoice-src", help="original SenseVoice directory for --backend reference "
                    "(default: the path recorded at conversion)")
    tr.add_argument("--adaptor-src", help="original adaptor .pt for --backend reference")
    tr.add_argument("--llm-src", help="original Hugging Face Qwen3 directory for --backend reference")
    tr.add_argument("--json", action="store_true",
                    help="one JSON object per file: text, translation, tags, timings per stage, tokens/s")
    tr.add_argument("--stream", action="store_true", help="print text as it is decoded")
    tr.add_argument("--translate", action="store_true",
                    help="also translate the transcript into English (a second, text-only pass, thinking disabled)")
    tr.add_argument("--max-seconds", type=float, default=30.0,
                    help="split longer audio at low-energy points (default 30; 0 = never split)")
    _template_args(tr)
    g = tr.add_argument_group("decoding (greedy)")
    g.add_argument("--no-loop-guard", action="store_true", help="do not cut n-gram repetition loops")
    g.add_argument("--repetition-penalty", type=float, help="Hugging Face repetition penalty over generated ids")
    g.add_argument("--no-repeat-ngram", type=int, help="forbid repeating any n-gram of this size")
    _query_args(tr)
    tr.set_defaults(func=cmd_transcribe)

    def parity_args(q, audio_default=None):
        if audio_default is None:
            q.add_argument("--audio", required=True, help="audio file to run through both paths")
        else:
            q.add_argument("--audio", default=str(audio_default), help="audio file (default: %(default)s)")
        q.add_argument("--sensevoice-src", help="original SenseVoice directory (default: the path recorded at conversion)")
        q.add_argument("--adaptor-src", help="original adaptor .pt (default: the path recorded at conversion)")
        q.add_argument("--llm-src", help="original Hugging Face Qwen3 directory (default: recorded at conversion)")
        _template_args(q)
        q.add_argument("--mode", choices=["both", "chained", "isolated"], default="both",
                       help="chained: each path on its own outputs; isolated: each MLX stage on the reference "
                       "input of that stage (default both)")
        q.add_argument("--report", help="write FILE.json + FILE.md + FILE.png")
        q.add_argument("--dump", help="write DIR/reference.npz and DIR/mlx.npz keyed by tap name")
        _query_args(q)

    pa = sub.add_parser("parity", help="compare the MLX port with the reference, tap by tap",
                        description="Run FunASR's own modules (float32, dither 0) and the MLX port on one clip, "
                        "compare every tap (relative L2, max abs, cosine) and name the first tap over tolerance. "
                        "Tolerance: rel L2 ≤ 1e-5 for float32 bundles (MLX_ENABLE_TF32=0 is set unless you set it), "
                        "2e-2 float16, 5e-2 bfloat16. Exit status 1 when a tap is over tolerance, or when CTC ids differ "
                        "in a float32 bundle (at reduced precision their agreement is reported).")
    pa.add_argument("-m", "--model", required=True, help="bundle directory")
    parity_args(pa)
    pa.set_defaults(func=cmd_parity)

    be = sub.add_parser("bench", help="speed and memory per stage, MLX and/or the reference",
                        description="Time frontend, encoder (+CTC head), adaptor, LLM prefill and LLM decode on "
                        "5/10/30 s clips of real speech: medians and spread over repetitions after warm-up, real-time "
                        "factor, prefill and decode tokens/s (decoding always runs --tokens tokens, EOS ignored), "
                        "measured memory (MLX active/peak; RSS for PyTorch), and for MLX the decode speed of bare "
                        "mlx-lm generate_step on the same weights. --synthetic full: real-size random weights "
                        "(SenseVoiceSmall, the adaptor, Qwen3-4B), no download.")
    be.add_argument("-m", "--model", help="bundle directory")
    be.add_argument("--synthetic", choices=["full"], help="real-size random weights instead of a bundle (MLX)")
    be.add_argument("--backend", choices=["mlx", "reference", "both"], default="mlx")
    be.add_argument("--json", help="write the results as JSON")
    be.add_argument("--reps", type=int, default=5, help="timed repetitions per clip (default 5)")
    be.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    be.add_argument("--tokens", type=int, default=64, help="tokens decoded per run (default 64)")
    be.add_argument("--clips", default="5,10,30", help="clip lengths in seconds (default 5,10,30)")
    be.add_argument("-q", "--q-bits", type=int, choices=[4, 8], help="--synthetic: quantize the LLM")
    be.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16",
                    help="--synthetic: encoder and adaptor dtype (default float16)")
    be.set_defaults(func=cmd_bench)

    sc = sub.add_parser("selfcheck", help="build small original-format checkpoints, convert them, run parity",
                        description="No download: builds a small SenseVoiceSmall with FunASR's own class (random "
                        "seeded weights, config.yaml, am.mvn, sentencepiece model), an adaptor .pt with the "
                        "trained module's class, and a Qwen3 by transformers' save_pretrained with Qwen's real "
                        "tokenizer; converts them into one bundle and prints the parity report, frontend to "
                        "generated tokens, against FunASR and transformers.")
    sc.add_argument("--keep", help="keep the checkpoints and bundle in this directory")
    parity_args(sc, DEFAULT_CLIP)
    sc.set_defaults(func=cmd_selfcheck)
    add_cer_parser(sub)
    add_serve_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("parity", "selfcheck"):
        os.environ.setdefault("MLX_ENABLE_TF32", "0")  # strict fp32 tier; read when MLX loads
    from .audio import AudioError

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, AudioError, OSError) as e:
        log(f"{PROG}: error: {e}")
        return 2
    except KeyboardInterrupt:
        log(f"{PROG}: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
