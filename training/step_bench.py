"""What a training step costs at each batch size: the trainer's own step (`train.train_step`:
SpecAugment, the losses with token noise (and the tone head's, where the recipe has one),
backward, clipping, fused AdamW) on the recipe's model, timed in interleaved blocks and compared
by their medians, with each size's peak device memory. The batches are made up (random features,
labels and weights) at the lengths of the training clips: a step's time follows its shapes, not
its values.

    python -m training.step_bench                          # batches of 512, 768 and 1024, recomputed
    python -m training.step_bench --kept 512 --recomputed 512 768 --json steps.json
    python -m training.step_bench --recomputed 512 --kept 512 --bf16 no yes   # each also in bfloat16
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import replace

from .cli import add_modules_only_option, apply_modules_only_option

log = logging.getLogger(__name__)

# The clips' lengths in LFR frames (60 ms each) and their transcripts' in tokens, as the
# recipe's first 19950 clips have them (1480590 frames in all: 74 a clip): a batch is cut from
# clips sorted by length, so it spans a few frames, and the epochs' batches span these.
FRAMES = (30, 45, 60, 75, 90, 110, 135, 160)
FRAMES_PER_TOKEN = 6
TONE_VOCAB = 1149  # the toned syllables of the recipe's Mandarin text (tonal.targets)


def batch(size: int, frames: int, ctc_vocab: int, llm_vocab: int, tone_vocab: int, device, gen, dev_gen):
    """A made-up `train.Batch` of `size` clips of about `frames` frames (host values drawn with
    `gen`, device values with `dev_gen`)."""
    import torch

    from .train import Batch, query_ids

    on = dict(device=device, generator=dev_gen)
    lengths = frames - torch.randint(0, 4, (size,), generator=gen)
    tokens = (lengths // FRAMES_PER_TOKEN + torch.randint(-2, 3, (size,), generator=gen)).clamp(min=2)
    query = torch.tensor(query_ids("auto"))
    width = int(tokens.max())
    labelled = (torch.arange(width)[None] < tokens[:, None]).to(device)
    frame_on = (torch.arange(frames)[None, :, None] < lengths[:, None, None]).to(device)
    ctc = torch.where(labelled, torch.randint(1, ctc_vocab, (size, width), **on), -1)
    llm = torch.where(labelled, torch.randint(0, llm_vocab, (size, width), **on), 0)
    zh = torch.randint(0, 2, (size,), **on) == 1
    tone = torch.where(labelled & zh[:, None], torch.randint(1, tone_vocab + 1, (size, width), **on), -1)
    return Batch(torch.randn((size, frames, 560), **on) * frame_on, lengths.to(device),
                 query.repeat(size, 1).to(device), ctc, tokens, torch.randint(0, ctc_vocab, (size, 4), **on), llm,
                 tokens.to(device), lengths, tokens, zh, tone, (tone >= 0).sum(1).cpu())


def bench(kept: list[int], recomputed: list[int], steps: int, blocks: int, device: str,
          bf16: tuple[bool, ...] = (False,)) -> list[dict]:
    """Per configuration (each batch size kept or recomputed, in each of `bf16`'s precisions: the
    forward pass in float32 or under autocast to bfloat16, Settings.bf16): the median over
    `blocks` of a step's mean seconds in a block of `steps` (the configurations take turns, block
    by block; a block's steps go through FRAMES), and the peak device memory of its steps, less
    the made-up batches it holds."""
    import torch

    from .train import DemoModel, Settings, allow_tf32, optimizer, spec_augment, train_step

    dev = torch.device(device)
    allow_tf32(device)
    s = Settings()
    ctc_vocab, llm_vocab = s.ctc_vocab, -(-(s.llm_vocab + 26) // 64) * 64  # the run's: its tokenizer adds 26
    configs = [(b, False, h) for h in bf16 for b in kept] + [(b, True, h) for h in bf16 for b in recomputed]
    specaug = spec_augment(s)
    runs = []
    for size, recompute, half in configs:
        rs = replace(s, recompute_llm=recompute, bf16=half)
        m = DemoModel(rs, ctc_vocab, llm_vocab,
                      {"<|endoftext|>": llm_vocab - 2, "<|im_end|>": llm_vocab - 1}, dev, TONE_VOCAB)
        m.train()
        params = m.parameters()
        gen, dev_gen = torch.Generator().manual_seed(size), torch.Generator(device=dev).manual_seed(size)
        batches = [batch(size, f, ctc_vocab, llm_vocab, TONE_VOCAB, dev, gen, dev_gen) for f in FRAMES]
        held = sum(x.nbytes for b in batches for x in vars(b).values() if torch.is_tensor(x) and x.device == dev)
        runs.append({"batch": size, "settings": rs, "model": m, "params": params, "opt": optimizer(params, s),
                     "batches": batches, "held": held, "times": [], "peak": 0})

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for block in range(blocks + 1):  # block 0 warms up (the allocator, each kernel's first launch)
        for r in runs:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            sync()
            t = time.perf_counter()
            for k in range(steps):
                parts = train_step(r["model"], r["opt"], r["params"], r["batches"][(block * steps + k) % len(FRAMES)],
                                   r["settings"], specaug, s.lr)
            sync()
            if block:
                r["times"].append((time.perf_counter() - t) / steps)
            if dev.type == "cuda":
                r["peak"] = max(r["peak"], torch.cuda.max_memory_allocated(dev) - r["held"])
            if not all(torch.isfinite(v).item() for v in parts.values()):
                raise FloatingPointError(f"batch {r['batch']}: a loss is not finite")
    base = statistics.median(runs[0]["times"])
    return [{"batch": r["batch"], "llm_recomputed": r["settings"].recompute_llm, "bf16": r["settings"].bf16,
             "step_s": round(statistics.median(r["times"]), 4),
             "examples_per_s": round(r["batch"] / statistics.median(r["times"]), 1),
             "step_ratio": round(statistics.median(r["times"]) / base, 3),
             "peak_gib": round(r["peak"] / 2**30, 2) if dev.type == "cuda" else None} for r in runs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kept", type=int, nargs="*", default=[],
                    help="batch sizes timed with the LLM's activations kept for the backward pass")
    ap.add_argument("--recomputed", type=int, nargs="*", default=[512, 768, 1024],
                    help="batch sizes timed with the LLM's layers recomputed in the backward pass instead (the recipe's)")
    ap.add_argument("--bf16", nargs="+", choices=("no", "yes"), default=["no"],
                    help="time each configuration with the forward pass in float32 (no), under autocast to "
                         "bfloat16 (yes), or both (no yes; default no)")
    ap.add_argument("--steps", type=int, default=16, help="steps a block (default 16)")
    ap.add_argument("--blocks", type=int, default=5, help="timed blocks a configuration, after one to warm up")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--json", help="also write the rows here")
    add_modules_only_option(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    apply_modules_only_option(args)
    import torch

    if min(args.kept + args.recomputed + [args.steps, args.blocks]) < 1 or not args.kept + args.recomputed:
        sys.exit("error: give --kept or --recomputed batch sizes; they, --steps and --blocks take positive numbers")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = bench(args.kept, args.recomputed, args.steps, args.blocks, device,
                 tuple(dict.fromkeys(h == "yes" for h in args.bf16)))
    name = torch.cuda.get_device_name() if device.startswith("cuda") else device
    print(f"training steps on {name}, made-up batches of {FRAMES[0]}–{FRAMES[-1]} frames, medians of "
          f"{args.blocks} interleaved blocks of {args.steps} steps (ratios to the first row)")
    print("| batch | LLM recomputed | forward pass | s a step | examples a second | step ratio | peak device memory |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['batch']} | {'yes' if r['llm_recomputed'] else 'no'} | {'bfloat16' if r['bf16'] else 'float32'} | "
              f"{r['step_s']:.4f} | {r['examples_per_s']:.0f} | {r['step_ratio']:.3f} | "
              + ("—" if r["peak_gib"] is None else f"{r['peak_gib']:.2f} GiB") + " |")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"device": name, "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
