"""`verify`: read every byte of a bundle and compare it with the sha256 that conversion
recorded (loading compares sizes and a 64-bit sum of every byte; sha256 is the check
that no change can fool), then check every float weight for NaN and infinity (which a
bundle re-sealed after an edit would pass by its hashes)."""

from __future__ import annotations

import logging
import time

from ...files import nonfinite_tensors
from .args import add_model_arg, bundle_from, integer

log = logging.getLogger(__name__)


def cmd_verify(args) -> int:
    bundle = bundle_from(args)
    t0 = time.perf_counter()
    problems = bundle.verify(workers=args.workers)
    for name, found in problems.items():
        if not found:  # a damaged file is already named; its tensor table may not even parse
            found += nonfinite(bundle, name)
    seconds = time.perf_counter() - t0
    for name, found in problems.items():
        files = bundle.components[name].files
        size = sum(r["bytes"] for r in files.values())
        print(f"{name}: {'OK' if not found else 'DAMAGED'} ({len(files)} files, {size / 1e9:.2f} GB)")
        for p in found:
            print(f"  {p}")
    if args.sources:
        for name in bundle.components:
            try:
                bundle.source(name)
                print(f"{name} source: OK (sha256 as recorded)")
            except (ValueError, FileNotFoundError) as e:
                print(f"{name} source: {e}")
    log.info("read %.2f GB in %.1f s (%.2f GB/s)", bundle.bytes / 1e9, seconds, bundle.bytes / 1e9 / max(seconds, 1e-9))
    if any(problems.values()):
        log.error("%s is damaged: restore the files listed, or reconvert", bundle.root)
        return 1
    return 0


def nonfinite(bundle, name: str) -> list[str]:
    """A line for each weights file of the component holding NaN or infinity, naming its tensors."""
    out = []
    for rel in sorted(r for r in bundle.components[name].files if r.endswith(".safetensors")):
        bad = nonfinite_tensors(bundle.root / name / rel)
        if bad:
            shown = ", ".join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
            out.append(f"{name}/{rel} holds NaN or infinite weights in [{shown}] (its hashes match: edited and "
                       f"re-sealed); reconvert from the original files")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="check every byte of a bundle against the checksums taken at conversion",
                       description="Read every file conversion wrote into the bundle and compare its sha256 with "
                       "the one recorded in bundle.json (loading compares each file's size and a 64-bit sum of its "
                       "bytes, which misses only changes that cancel in the sum), and every float weight for NaN "
                       "and infinity. Exit status 1 when a file is missing, of another size or other bytes, or "
                       "holds NaN or infinite weights. --sources also checks the original files the "
                       "bundle records (what the reference backend reads).",
                       epilog="example: funasr-qwen4b verify -m bundle/")
    add_model_arg(p)
    p.add_argument("--sources", action="store_true", help="also check the original files by sha256")
    p.add_argument("--workers", type=integer(0), default=0, help="files hashed in parallel (default: one per CPU core)")
    p.set_defaults(func=cmd_verify)
