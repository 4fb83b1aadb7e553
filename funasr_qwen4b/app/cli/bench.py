"""`bench`: speed and memory per stage (timing is not parity)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ...atomic import write_json_atomic
from .args import add_backend_arg, add_model_arg, backends_from, bundle_from

log = logging.getLogger(__name__)


def cmd_bench(args) -> int:
    from .. import bench

    if bool(args.model) == bool(args.synthetic):
        raise ValueError("give either -m BUNDLE or --synthetic full")
    backends = backends_from(args)
    try:
        clips = tuple(float(c) for c in args.clips.split(","))
    except ValueError:
        raise ValueError(f"--clips must be seconds separated by commas, e.g. 5,10,30; got {args.clips!r}") from None
    if any(not 1 <= c <= 600 for c in clips) or args.reps < 1 or args.warmup < 0 or args.tokens < 2:
        raise ValueError("--clips must be 1..600 s, --reps >= 1, --warmup >= 0 and --tokens >= 2")
    if args.draft_rate is not None and not 0 <= args.draft_rate <= 1:
        raise ValueError(f"--draft-rate must be between 0 and 1, got {args.draft_rate}")
    if args.batch_sizes:
        return batching(args)
    rep = bench.run_bench(bundle=bundle_from(args) if args.model else None, synthetic=args.synthetic,
                          backends=backends, clips=clips, reps=args.reps, warmup=args.warmup, tokens=args.tokens,
                          q_bits=args.q_bits, dtype=args.dtype, adaptor_q_bits=args.adaptor_q_bits,
                          draft_rate=args.draft_rate, peer=args.peer)
    print(bench.to_markdown(rep))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, rep)
        log.info("wrote %s", args.json)
    return 0


def batching(args) -> int:
    from .. import bench_batch

    try:
        sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--batch-sizes must be positive integers separated by commas, e.g. 1,16; "
                         f"got {args.batch_sizes!r}")
    rep = bench_batch.run_batching(bundle=bundle_from(args) if args.model else None, synthetic=args.synthetic,
                                   sizes=sizes, tokens=args.tokens, reps=args.reps, warmup=args.warmup,
                                   q_bits=args.q_bits, dtype=args.dtype, adaptor_q_bits=args.adaptor_q_bits)
    print(bench_batch.to_markdown(rep))
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
                        "(SenseVoiceSmall, the adaptor, Qwen3-4B), no download.",
                        epilog="examples:\n  funasr-qwen4b bench -m bundle/ --json bench.json\n"
                        "  funasr-qwen4b bench --synthetic full -q 4 --clips 10,30 --tokens 64\n"
                        "  funasr-qwen4b bench --synthetic full --batch-sizes 1,4,16 --json batching.json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(be, required=False)
    be.add_argument("--synthetic", choices=["full"], help="real-size random weights instead of a bundle (MLX)")
    add_backend_arg(be, both=True)
    be.add_argument("--json", help="write the results as JSON")
    be.add_argument("--reps", type=int, default=5, help="timed repetitions per clip (default 5)")
    be.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    be.add_argument("--tokens", type=int, default=64, help="tokens decoded per run (default 64)")
    be.add_argument("--clips", default="5,10,30", help="clip lengths in seconds (default 5,10,30)")
    be.add_argument("-q", "--q-bits", type=int, choices=[4, 8], help="--synthetic: quantize the LLM")
    be.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16",
                    help="--synthetic: encoder and adaptor dtype (default float16)")
    be.add_argument("--adaptor-q-bits", type=int, choices=[4, 8],
                    help="--synthetic: quantize the adaptor's linear layers (as convert --adaptor-q-bits)")
    be.add_argument("--peer", action="store_true",
                    help="also time the peer funasr-mlx's SenseVoiceSmall encoder beside ours (needs funasr-mlx)")
    be.add_argument("--draft-rate", type=float,
                    help="speculation with a simulated draft: each draft token is the LLM's own with this "
                    "probability (default with --synthetic: the rate measured on the demonstration model's "
                    "held-out sets; with -m: the clip's CTC transcript)")
    be.add_argument("--batch-sizes", metavar="B,B,...",
                    help="instead of the stage table: throughput of whole batches of 7-10 s clips through the MLX "
                    "pipeline at each size against batch 1, peak memory and memory per extra stream, and the cost "
                    "of one LLM pass over B rows of 1 and of 8 positions")
    be.set_defaults(func=cmd_bench)
