"""`bench`: speed and memory per stage (timing is not parity)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ...atomic import write_json_atomic
from ...bundle import Bundle
from ...files import refuse_overwriting
from .args import (add_backend_arg, add_model_arg, backends_from, bundle_from, bundle_inputs, finite, integer,
                   number_list)

log = logging.getLogger(__name__)


# Flags that shape the synthetic models, and those of the stage table alone (not --batch-sizes').
SYNTHETIC_ONLY = {"q_bits": "-q/--q-bits", "dtype": "--dtype", "adaptor_q_bits": "--adaptor-q-bits"}
STAGES_ONLY = {"clips": "--clips", "draft_rate": "--draft-rate", "peer": "--peer"}
DEFAULT_CLIPS, DEFAULT_DTYPE, DEFAULT_TOKENS = (5.0, 10.0, 30.0), "float16", 64


def conflicts(args) -> str | None:
    if bool(args.model) == bool(args.synthetic):
        return "give either -m BUNDLE or --synthetic full|nano"
    given = lambda names: [flag for attr, flag in names.items() if getattr(args, attr) not in (None, False)]  # noqa: E731
    if args.model and given(SYNTHETIC_ONLY):
        return f"{', '.join(given(SYNTHETIC_ONLY))} shape the --synthetic models; -m BUNDLE's are as converted"
    if args.synthetic == "nano" and args.adaptor_q_bits:
        return "--adaptor-q-bits quantizes the qwen4b adaptor of --synthetic full; Fun-ASR-Nano's adaptor stays " \
               "in --dtype"
    if args.batch_sizes and given(STAGES_ONLY):
        return f"{', '.join(given(STAGES_ONLY))} belong to the stage table; --batch-sizes measures whole batches " \
               "of 7-10 s clips instead"
    if args.batch_sizes and args.backend != "mlx":
        return "--batch-sizes measures the MLX pipeline: drop --backend"
    if args.calibrate and (given(STAGES_ONLY) or args.batch_sizes or args.backend != "mlx" or args.tokens):
        return "--calibrate measures one MLX LLM pass at 1..17 positions: drop the stage table's and " \
               "--batch-sizes' flags, --backend and --tokens"
    return None


def bundle_for(args) -> Bundle | None:
    """-m's bundle (None with --synthetic), once --json is known not to replace one of its files."""
    bundle = bundle_from(args) if args.model else None
    if args.json:
        refuse_overwriting([args.json], bundle_inputs(bundle) if bundle else [], "--json")
    return bundle


def cmd_bench(args) -> int:
    from .. import bench

    if args.batch_sizes:
        return batching(args)
    if args.calibrate:
        return calibrating(args)
    rep = bench.run_bench(bundle=bundle_for(args), synthetic=args.synthetic,
                          backends=backends_from(args), clips=args.clips or DEFAULT_CLIPS, reps=args.reps,
                          warmup=args.warmup, tokens=args.tokens or DEFAULT_TOKENS, q_bits=args.q_bits,
                          dtype=args.dtype or DEFAULT_DTYPE, adaptor_q_bits=args.adaptor_q_bits,
                          draft_rate=args.draft_rate, peer=args.peer)
    print(bench.to_markdown(rep))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, rep)
        log.info("wrote %s", args.json)
    return 0


def batching(args) -> int:
    from .. import bench_batch

    rep = bench_batch.run_batching(bundle=bundle_for(args), synthetic=args.synthetic,
                                   sizes=args.batch_sizes, tokens=args.tokens or DEFAULT_TOKENS, reps=args.reps, warmup=args.warmup,
                                   q_bits=args.q_bits, dtype=args.dtype or DEFAULT_DTYPE,
                                   adaptor_q_bits=args.adaptor_q_bits)
    print(bench_batch.to_markdown(rep))
    if args.json:
        write_json_atomic(args.json, rep)
        log.info("wrote %s", args.json)
    return 0


def calibrating(args) -> int:
    from .. import bench_calibrate

    rep = bench_calibrate.run_calibrate(bundle=bundle_for(args), synthetic=args.synthetic, blocks=args.reps,
                                        warmup=args.warmup, q_bits=args.q_bits, dtype=args.dtype or DEFAULT_DTYPE)
    print(bench_calibrate.to_markdown(rep))
    if args.json:
        write_json_atomic(args.json, rep)
        log.info("wrote %s", args.json)
    return 0


def add_parser(sub) -> None:
    be = sub.add_parser("bench", help="speed and memory per stage, MLX and/or the reference",
                        description="Time frontend, encoder (+CTC head), adaptor, LLM prefill and LLM decode on "
                        "5/10/30 s clips of real speech: medians and spread over repetitions after warm-up, real-time "
                        "factor, prefill and decode tokens/s (decoding always runs --tokens tokens, EOS ignored), "
                        "measured memory (MLX active/peak; RSS for PyTorch), and for MLX the decode speed of bare "
                        "mlx-lm generate_step on the same weights. --synthetic full: real-size random weights "
                        "(SenseVoiceSmall, the adaptor, Qwen3-4B), no download. --synthetic nano: Fun-ASR-Nano-2512's "
                        "shapes, FunASR's FunASRNano written and converted; needs torch+FunASR; --dtype applies to "
                        "every component.",
                        epilog="examples:\n  funasr-qwen4b bench -m bundle/ --json bench.json\n"
                        "  funasr-qwen4b bench --synthetic full -q 4 --clips 10,30 --tokens 64\n"
                        "  funasr-qwen4b bench --synthetic full --batch-sizes 1,4,16 --json batching.json\n"
                        "  funasr-qwen4b bench --synthetic nano -q 4 --backend both\n"
                        "  funasr-qwen4b bench --synthetic nano --dtype bfloat16 -q 4 --peer --clips 10   # beside funasr-mlx, mlx-audio\n"
                        "  funasr-qwen4b bench -m bundle/ --calibrate        # this machine's pass costs, for speculation",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(be, required=False)
    be.add_argument("--synthetic", choices=["full", "nano"],
                    help="real-size random weights instead of a bundle: full, the qwen4b model (MLX); nano, "
                    "Fun-ASR-Nano-2512's shapes (FunASR's FunASRNano written and converted; needs torch+FunASR)")
    add_backend_arg(be, both=True)
    be.add_argument("--json", help="write the results as JSON")
    be.add_argument("--reps", type=integer(1), default=5,
                    help="timed repetitions per clip, and interleaved blocks per ratio (default 5)")
    be.add_argument("--warmup", type=integer(0), default=2, help="untimed runs first (default 2)")
    be.add_argument("--tokens", type=integer(2), help=f"tokens decoded per run (default {DEFAULT_TOKENS})")
    be.add_argument("--clips", type=number_list(float, 1, 600),
                    help="clip lengths in seconds, 1 to 600 each (default 5,10,30)")
    be.add_argument("-q", "--q-bits", type=int, choices=[4, 8], help="--synthetic: quantize the LLM")
    be.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                    help="--synthetic: encoder and adaptor dtype (default float16); nano: every component's")
    be.add_argument("--adaptor-q-bits", type=int, choices=[4, 8],
                    help="--synthetic: quantize the adaptor's linear layers (as convert --adaptor-q-bits)")
    be.add_argument("--peer", action="store_true",
                    help="also time the peer funasr-mlx beside ours (needs funasr-mlx): its SenseVoiceSmall encoder; "
                    "with --synthetic nano its Fun-ASR-Nano on the same random weights (its converter on the original "
                    "model.pt), and mlx-audio's too where mlx-audio is installed, every stage and peak memory, at "
                    "--dtype/-q, in interleaved blocks")
    be.add_argument("--draft-rate", type=finite(0, 1),
                    help="speculation with a simulated draft: each draft token is the LLM's own with this "
                    "probability (default with --synthetic: the rate measured on the demonstration model's "
                    "held-out sets; with -m: the clip's CTC transcript)")
    be.add_argument("--batch-sizes", metavar="B,B,...", type=number_list(int, 1),
                    help="instead of the stage table: throughput of whole batches of 7-10 s clips through the MLX "
                    "pipeline at each size against batch 1, peak memory and memory per extra stream, and the cost "
                    "of one LLM pass over B rows of 1 and of 8 positions")
    be.add_argument("--calibrate", action="store_true",
                    help="instead of the stage table: measure what one LLM pass costs at 1..17 new positions on "
                    "this machine and keep it in the user's cache (~/.cache/funasr-qwen4b), where speculation "
                    "sizes each pass by it")
    be.set_defaults(func=cmd_bench, conflicts=conflicts)
