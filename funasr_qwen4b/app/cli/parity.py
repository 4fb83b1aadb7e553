"""`parity` (the MLX port against the reference, tap by tap) and `selfcheck`
(the same on small original-format checkpoints built here: no download)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from ...atomic import scratch
from ...audio import load_audio, packaged_clip
from ...bundle import Bundle
from ...files import refuse_overwriting
from .args import (add_model_arg, add_query_args, add_source_args, add_template_args, bundle_inputs, needs_extras,
                   query_conflict, query_from, resolve_from, sources_from, template_from)

log = logging.getLogger(__name__)

DEFAULT_CLIP = packaged_clip("zh_open_hours.wav")
DUMPS = ("reference", "mlx")  # --dump DIR writes DIR/NAME.npz for each (parity.report.dump)


def run_parity(bundle_path, args, *, sources: dict | None = None, template: bool = True) -> int:
    """`sources`: where the reference finds the originals (default: where conversion recorded them);
    `template`: whether args carry the template and query flags (selfcheck's do not)."""
    from funasr_qwen4b.parity import report as reports
    from funasr_qwen4b.parity.harness import MODES, run_parity as harness

    bundle = Bundle.read(bundle_path)
    refuse_overwriting([*(reports.triplet(args.report) if args.report else ()),
                        *(Path(args.dump) / f"{side}.npz" for side in DUMPS if args.dump)],
                       [args.audio, *bundle_inputs(bundle, sources)], "--report/--dump")
    samples = load_audio(args.audio)
    modes = MODES if args.mode == "both" else (args.mode,)
    rep = harness(bundle, samples, audio_name=str(args.audio), sources=sources,
                  template=template_from(args, bundle) if template else None,
                  query=query_from(args, None) if template else None, modes=modes,
                  oracle=getattr(args, "oracle", "funasr"))
    print(reports.to_markdown(rep))
    if args.report:
        for p in reports.write(rep, args.report):
            log.info("wrote %s", p)
    if args.dump:
        for p in reports.dump(rep, args.dump):
            log.info("wrote %s", p)
    if not rep.passed:
        log.error("parity FAILED (%s)", rep.failure())
        return 1
    return 0


def cmd_parity(args) -> int:
    with needs_extras("parity", torch="reference"):
        sources = sources_from(args)
        if args.hf_dir is not None:  # transformers' Fun-ASR-Nano reads the -hf layout of the bundle's model
            sources["sensevoice"] = resolve_from(args, args.hf_dir, "Fun-ASR-Nano -hf directory")
        return run_parity(resolve_from(args, args.model, "bundle"), args, sources=sources)


def conflicts(args) -> str | None:
    if args.hf_dir is not None and args.oracle != "transformers":
        return "--hf-dir is where the transformers oracle reads the model: give it with --oracle transformers"
    if args.hf_dir is not None and args.sensevoice_src is not None:
        return "--hf-dir and --sensevoice-src both say where the Fun-ASR-Nano original is: give one"
    return query_conflict(args)


def cmd_selfcheck(args) -> int:
    with needs_extras("selfcheck", torch="reference"):
        return selfcheck(args)


def selfcheck(args) -> int:
    from funasr_qwen4b.convert.bundle import convert_bundle
    from funasr_qwen4b.testing import (ADAPTOR_TINY, QWEN3_TINY, TINY, make_adaptor_pt, make_qwen3_dir,
                                       make_sensevoice_dir)

    with contextlib.nullcontext(Path(args.keep)) if args.keep else scratch("funasr-qwen4b-selfcheck-") as work:
        log.info("building small original-format checkpoints with the upstream classes (random, seeded) in %s:", work)
        log.info("  SenseVoiceSmall %s (FunASR), adaptor %s, Qwen3 %s with Qwen's tokenizer", TINY, ADAPTOR_TINY,
                 QWEN3_TINY)
        src = make_sensevoice_dir(work / "SenseVoiceSmall", TINY, seed=0)
        pt = make_adaptor_pt(work / "adaptor_phase2_final.pt", "model_state_dict")
        hf = make_qwen3_dir(work / "Qwen3-tiny")
        bundle = convert_bundle(work / "bundle", sensevoice=src, adaptor=pt, llm=hf, dtype="float32",
                                adaptor_options={"nhead": ADAPTOR_TINY["nhead"]}, force=True)
        return run_parity(bundle, args, template=False)


def _parity_args(q, audio_default: Path | None = None) -> None:
    if audio_default is None:
        q.add_argument("--audio", required=True, help="audio file to run through both paths")
    else:
        q.add_argument("--audio", default=str(audio_default), help="audio file (default: %(default)s)")
    q.add_argument("--mode", choices=["both", "chained", "isolated"], default="both",
                   help="chained: each path on its own outputs; isolated: each MLX stage on the reference "
                   "input of that stage (default both)")
    q.add_argument("--report", help="write FILE.json + FILE.md + FILE.png")
    q.add_argument("--dump", help="write DIR/reference.npz and DIR/mlx.npz keyed by tap name")


def add_parser(sub) -> None:
    pa = sub.add_parser("parity", help="compare the MLX port with the reference, tap by tap",
                        description="Run FunASR's own modules (float32, dither 0) and the MLX port on one clip, "
                        "compare every tap (relative L2, max abs, cosine) and name the first tap over tolerance. "
                        "Tolerance: rel L2 ≤ 1e-5 for float32 bundles (MLX_ENABLE_TF32=0 is set unless you set it), "
                        "2e-2 float16, 5e-2 bfloat16. Exit status 1 when a tap is over tolerance, or when CTC or "
                        "generated ids differ in a float32 bundle (at reduced precision their agreement is reported). "
                        "A Fun-ASR-Nano bundle runs against FunASR's FunASRNano, or with --oracle transformers "
                        "against transformers' FunAsrNanoForConditionalGeneration.",
                        epilog="examples:\n  funasr-qwen4b parity -m bundle/ --audio a.wav --report parity.json "
                        "--dump taps/\n"
                        "  funasr-qwen4b parity -m nano/ --audio a.wav                       # FunASR's FunASRNano\n"
                        "  funasr-qwen4b parity -m nano/ --audio a.wav --oracle transformers --hf-dir "
                        "Fun-ASR-Nano-2512-hf/",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(pa)
    _parity_args(pa)
    pa.add_argument("--oracle", choices=["funasr", "transformers"], default="funasr",
                    help="what the reference side runs: FunASR's own modules (default), or for a Fun-ASR-Nano "
                    "bundle transformers' FunAsrNanoForConditionalGeneration")
    pa.add_argument("--hf-dir", metavar="DIR",
                    help="with --oracle transformers: the model's transformers (-hf) directory or hub id, for a "
                    "bundle converted from FunASR's layout (one converted from -hf reads the directory it records)")
    add_template_args(pa)
    add_query_args(pa)
    add_source_args(pa)
    pa.set_defaults(func=cmd_parity, strict_fp32=True, conflicts=conflicts)

    sc = sub.add_parser("selfcheck", help="build small original-format checkpoints, convert them, run parity",
                        description="No download: builds a small SenseVoiceSmall with FunASR's own class (random "
                        "seeded weights, config.yaml, am.mvn, sentencepiece model), an adaptor .pt with the "
                        "trained module's class, and a Qwen3 by transformers' save_pretrained with Qwen's real "
                        "tokenizer; converts them into one bundle and prints the parity report, frontend to "
                        "generated tokens, against FunASR and transformers.",
                        epilog="example: funasr-qwen4b selfcheck --keep work/")
    sc.add_argument("--keep", help="keep the checkpoints and bundle in this directory")
    _parity_args(sc, DEFAULT_CLIP)
    sc.set_defaults(func=cmd_selfcheck, strict_fp32=True)
