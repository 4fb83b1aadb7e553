"""`cer-merge`: the shards of one `cer --shard I/N` run, each done on its own machine, into the
report one unsharded run gives (checks and merge: parity/cer.py's merge_shards)."""

from __future__ import annotations

import logging

from ...files import refuse_overwriting
from .args import integer
from .cer import report_files

log = logging.getLogger(__name__)


def cmd_cer_merge(args) -> int:
    from funasr_qwen4b.parity import cer, shards

    entries, results, meta = shards.merge_shards(args.partials)
    refuse_overwriting(report_files(args.report), [*args.partials, meta["manifest"]], "--report")
    rep = cer.build_report(entries, results, meta, worst=args.worst)
    for p in cer.write(rep, args.report):  # before printing: `| head` does not cost the report
        log.info("wrote %s", p)
    print(cer.to_markdown(rep))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cer-merge", help="merge the shards of a `cer --shard I/N` run into one report",
        description="Read the partial files of every shard of one `cer --shard I/N --report FILE.json` run "
        "and write the report that one unsharded run gives: FILE.json + FILE.md + FILE.png. The files must "
        "come from the same command apart from --shard (same manifest, unchanged since; same bundle, "
        "backends, options and versions), hold every shard 1..N once, and each shard must have finished "
        "(rerun an unfinished one: it resumes). The manifest must be where the shards read it: its texts "
        "are scored here. Needs neither the bundle nor the audio.")
    p.add_argument("partials", nargs="+", metavar="SHARD.partial.jsonl",
                   help="the shards' FILE.shardI-of-N.partial.jsonl files, e.g. FILE.shard*-of-4.partial.jsonl")
    p.add_argument("--report", required=True, metavar="FILE.json", help="write FILE.json + FILE.md + FILE.png")
    p.add_argument("--worst", type=integer(0), default=10, help="rows in the worst-utterances table (default 10)")
    p.set_defaults(func=cmd_cer_merge)
