"""`cer`: transcribe a manifest with one or both backends and score it
(the runner and the report are parity/cer.py's). Building the parser imports
neither torch nor MLX."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...audio import MAX_AUDIO_SECONDS, SAMPLE_RATE, AudioError, load_audio
from ...bundle import BUNDLE_JSON, Bundle
from ...files import refuse_overwriting, sha256_file
from ...config import Backend, QueryConfig
from ...manifest import Entry, load_manifest
from ...text import strip_tags
from .. import distributed
from .args import (add_backend_arg, add_ctc_guard_arg, add_max_audio_seconds_arg, add_model_arg, add_query_args,
                   add_segment_args, add_source_args,
                   add_template_args, backends_from, bundle_from, bundle_inputs, integer, query_conflict, query_from,
                   sources_from, template_from)

if TYPE_CHECKING:
    from funasr_qwen4b.parity.shards import Shard

    from ..distributed import Ranks

log = logging.getLogger(__name__)


def transcriber_kind(bundle: Bundle) -> str:
    """What produces the transcripts: the LLM when the bundle has it, else SenseVoice's CTC head."""
    return "llm" if bundle.has("adaptor", "llm") else "ctc"


def lazy_transcriber(bundle: Bundle, backend: Backend, *, batch_size: int = 1,
                     **load) -> Callable[[list[np.ndarray]], list[str]]:
    """A batch of 16 kHz samples → their texts, the backend loaded on the first call (a resumed run
    with nothing left loads none). With `batch_size` > 1, MLX transcribes each batch at once
    (`Transcriber.transcribe_batch`); the reference, the oracle, one utterance at a time.
    CTC text comes without SenseVoice's tags."""
    from ..transcriber import Transcriber

    ctc_only = transcriber_kind(bundle) == "ctc"
    batched = batch_size > 1 and backend is Backend.MLX
    t: Transcriber | None = None

    def transcribe(batch: list[np.ndarray]) -> list[str]:
        nonlocal t
        if t is None:
            log.info("cer: loading the %s backend", backend.value)
            if batch_size > 1 and not batched:
                log.info("cer: the reference backend transcribes one utterance at a time (it is the oracle)")
            t = Transcriber.load(bundle, backend, ctc_only=ctc_only, **load)
        if batched:
            results = t.transcribe_batch(batch, sample_rate=SAMPLE_RATE, batch_size=batch_size)
        else:
            results = [t.transcribe(samples, sample_rate=SAMPLE_RATE) for samples in batch]
        return [strip_tags(r["text"]) if ctc_only else r["text"] for r in results]

    return transcribe


def _loader(manifest: str | Path, entries: list[Entry],
            max_audio_seconds: float | None) -> Callable[[Path], np.ndarray]:
    """load_audio (longer audio refused from its header), with a failure naming the manifest's line and id."""
    by_audio = {e.audio: e for e in reversed(entries)}  # a clip listed twice: its first line

    def load(path: Path) -> np.ndarray:
        try:
            return load_audio(path, max_seconds=max_audio_seconds)
        except AudioError as err:
            e = by_audio[path]
            raise AudioError(f"{manifest} line {e.line} (id {e.id!r}): {err}") from None

    return load


def _versions(backends: tuple[Backend, ...]) -> dict:
    v = {}
    if Backend.MLX in backends:
        import mlx.core as mx

        v["mlx"] = mx.__version__
    if Backend.REFERENCE in backends:
        import funasr
        import torch

        v.update(torch=torch.__version__, funasr=funasr.__version__)
    return v


def report_files(report: str | Path) -> list[Path]:
    """What `--report FILE.json` writes: FILE.json, FILE.md, FILE.png and FILE.partial.jsonl."""
    from funasr_qwen4b.parity import cer, report as reports

    return [*reports.triplet(report), cer.partial_path(report)]


def _check_options(limit: int | None, worst: int, batch_size: int, shard: Shard | None, report) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    if worst < 0:
        raise ValueError(f"--worst must be 0 or more, got {worst}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if shard is not None and report is None:
        raise ValueError(f"--shard {shard} needs --report FILE.json: the merge reads each shard's "
                         f"FILE.shardI-of-N.partial.jsonl")


def score(bundle: Bundle, manifest: str | Path, backends: tuple[Backend, ...] = (Backend.MLX,), *,
          report: str | Path | None = None, limit: int | None = None, worst: int = 10,
          query: QueryConfig | None = None, template: str | None = None, sources: dict | None = None,
          progress: bool = True, batch_size: int = 1, shard: Shard | None = None,
          max_audio_seconds: float | None = MAX_AUDIO_SECONDS, **segmenting) -> dict | None:
    """The CER report of `bundle` on `manifest`; with `report`, resumable from REPORT.partial.jsonl.
    `query` (default the bundle's) and `template` (text; default the bundle's) as for Transcriber.load.
    With `shard` (and `report`, which it renames: Shard.report), the report of that shard alone,
    its partial file holding what `shards.merge_shards` needs to give the whole run's report.
    An utterance longer than `max_audio_seconds` (None: no bound) is refused from its header.
    `segmenting`: vad, max_segment_seconds and ctc_guard, as for Transcriber.load.
    Under a launcher (app/distributed.py) each rank scores its share and rank 0 returns the whole
    run's report, the other ranks None."""
    from funasr_qwen4b.parity import cer, report as reports, shards

    _check_options(limit, worst, batch_size, shard, report)
    bundle.require("sensevoice", why="every transcript starts with its encoder")
    if transcriber_kind(bundle) == "ctc" and not (bundle.root / "sensevoice" / "tokenizer.model").is_file():
        raise ValueError(f"{bundle.root / 'sensevoice'} has no tokenizer.model (its source had no .bpe.model): "
                         f"CTC transcripts would be token ids, and their CER meaningless; put SenseVoice's "
                         f".bpe.model beside model.pt and reconvert")
    entries = load_manifest(manifest)
    inputs = [manifest, *(e.audio for e in entries), *bundle_inputs(bundle, sources)]  # no --report replaces one
    total = len(entries)
    entries = entries[:limit] if limit else entries
    if shard is not None and shard.count > len(entries):
        raise ValueError(f"--shard {shard}: {manifest} has {len(entries)} utterances"
                         f"{' (after --limit)' if limit else ''}, fewer than {shard.count} shards; use at most "
                         f"{len(entries)}")
    nano = bundle.kind == "funasr-nano"
    if nano and query not in (None, bundle.query):
        raise ValueError(f"{bundle.root} is a Fun-ASR-Nano bundle, whose encoder has no query rows: drop --language, "
                         f"--textnorm and --no-query")
    query = query or bundle.query
    kind = transcriber_kind(bundle)
    if kind == "ctc" and template is not None:
        raise ValueError(f"{bundle.root} has no adaptor and LLM: its transcripts come from SenseVoice's CTC head, so a "
                         f"prompt template (--template, --template-file) would do nothing; drop it")
    header = {"manifest": str(Path(manifest).resolve()), "bundle": str(bundle.root.resolve()),
              "bundle_json_sha256": sha256_file(bundle.root / BUNDLE_JSON), "query": query.to_dict(),
              "transcriber": kind, "template": template}
    meta = {"manifest": str(manifest), "bundle": str(bundle.root), "utterances": len(entries),
            "manifest_utterances": total, "limit": limit, "transcriber": kind, "template": template,
            "dtype": bundle.components["sensevoice"].dtype, "precisions": bundle.precisions,
            "query": query.to_dict(), "MLX_ENABLE_TF32": os.environ.get("MLX_ENABLE_TF32"),
            "versions": _versions(backends)}
    if shard is not None:
        header = shards.shard_header(header, shard, backends=[b.value for b in backends], meta=meta)
        entries, report = shard.take(entries), shard.report(report)
        meta = {**meta, "utterances": len(entries), "shard": str(shard)}
    ranks = distributed.launched()  # under mlx.launch: this rank's share, its own partial file, rank 0 reports
    if ranks is not None and shard is not None:
        raise ValueError(f"--shard {shard} splits a run by hand; under a launcher the ranks split it: drop --shard")
    partial = cer.partial_path(report) if report else None
    if report is not None:
        refuse_overwriting(report_files(report) if ranks is None else [*reports.triplet(report), rank_partial(
            report, ranks)], inputs, "--report")
    transcribers = {b.value: lazy_transcriber(bundle, b, batch_size=batch_size, template=template,
                                              query=None if nano else query,
                                              sources=sources, max_audio_seconds=max_audio_seconds, **segmenting)
                    for b in backends}
    mine, started = entries, time.perf_counter()
    if ranks is not None:
        mine = [entries[i] for i in distributed.share(ranks, [e.audio for e in entries], [e.id for e in entries])]
        header = {**header, "rank": f"{ranks.rank}/{ranks.size}"}
        partial = rank_partial(report, ranks) if report else None
        # rank 0's bar, the other ranks' lines at each tenth of their share (counted on one backend)
        count = distributed.Progress(ranks, len(mine), "utterances") if progress and ranks.rank else None
        progress = progress and ranks.rank == 0
        transcribers = {b: distributed.counted(fn, count if k == 0 else None)
                        for k, (b, fn) in enumerate(transcribers.items())}
    results = cer.run_utterances(mine, transcribers, batch_size=batch_size, header=header, progress=progress,
                                 partial=partial, load=_loader(manifest, entries, max_audio_seconds))
    if ranks is not None:
        results, per_rank = distributed.cer_results(ranks, results, time.perf_counter() - started)
        if results is None:
            return None
        meta = {**meta, "ranks": {"count": ranks.size, "backend": ranks.backend, "per_rank": per_rank}}
    return cer.build_report(entries, results, meta, worst=worst)


def rank_partial(report: str | Path, ranks: "Ranks") -> Path:
    """A rank's own resumable partial file, FILE.rankR-of-N.partial.jsonl: its share of a split
    by the audio's durations, the same on a rerun with the same ranks."""
    from funasr_qwen4b.parity import cer

    p = Path(report)
    return cer.partial_path(p.with_name(p.name.removesuffix(".json") + f".rank{ranks.rank}-of-{ranks.size}.json"))


def shard_arg(text: str) -> "Shard":
    """--shard I/N, parsed when the command line is."""
    from funasr_qwen4b.parity.shards import Shard

    try:
        return Shard.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--shard {text!r}: ") + f", got {text!r}") from None


def conflicts(args) -> str | None:
    if args.shard is not None and args.report is None:
        return (f"--shard {args.shard} needs --report FILE.json: the merge reads each shard's "
                f"FILE.shardI-of-N.partial.jsonl")
    return query_conflict(args)


def cmd_cer(args) -> int:
    from funasr_qwen4b.parity import cer

    shard = args.shard
    bundle = bundle_from(args)
    rep = score(bundle, args.manifest, backends_from(args), report=args.report, limit=args.limit,
                worst=args.worst, query=query_from(args, bundle.query), template=template_from(args, bundle),
                sources=sources_from(args), progress=not args.no_progress, batch_size=args.batch_size, shard=shard,
                max_audio_seconds=args.max_audio_seconds, vad=args.vad, max_segment_seconds=args.max_segment_seconds,
                ctc_guard=args.ctc_guard)
    if rep is None:  # a rank other than 0 under a launcher: rank 0 reports the whole run
        return 0
    if args.report:  # before printing: a reader that closes stdout early (| head) does not cost the report
        for p in cer.write(rep, shard.report(args.report) if shard else args.report):
            log.info("wrote %s", p)
    print(cer.to_markdown(rep))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cer", help="character error rate over a manifest, per backend, and MLX vs reference",
        description="Transcribe every utterance of a JSONL manifest ({\"id\", \"audio\", \"text\", \"lang\"}; "
        "audio paths relative to the manifest) and score it: corpus CER per backend (WER too for lang=en), "
        "CER of the MLX transcript against the reference transcript, the worst utterances side by side. "
        "Transcripts come from the LLM when the bundle has the adaptor and the LLM, else from SenseVoice's "
        "CTC head (tags stripped). Text is normalised first: SenseVoice tags stripped, NFKC (full-width → "
        "half-width), lowercase, punctuation removed, whitespace removed for CER / collapsed for WER. With "
        "--report, results are appended to FILE.partial.jsonl as they come, and a rerun skips the utterances "
        "already done (resume after an interruption). For a set that outgrows one machine, run each of N "
        "shards with --shard I/N (the same command otherwise), then funasr-qwen4b cer-merge; or, with MLX's launcher, "
        "one command over every machine, each rank scoring its share and rank 0 writing the one report (python -m "
        "funasr_qwen4b.app.launch --hostfile hosts.json -- funasr-qwen4b cer ...; docs/distributed.md).")
    add_model_arg(p)
    p.add_argument("--manifest", required=True, help="JSONL manifest (see datasets/make_manifest.py)")
    add_backend_arg(p, both=True)
    p.add_argument("--report", help="write FILE.json + FILE.md + FILE.png (and keep FILE.partial.jsonl for "
                   "resuming); without it the Markdown report is only printed and nothing is resumable")
    p.add_argument("--limit", type=integer(1), help="only the first N utterances of the manifest")
    p.add_argument("--worst", type=integer(0), default=10, help="rows in the worst-utterances table (default 10)")
    p.add_argument("--batch-size", type=integer(1), default=1, metavar="N",
                   help="MLX transcribes up to N utterances at a time (default 1); the reference backend stays "
                   "one at a time: it is the oracle")
    p.add_argument("--shard", metavar="I/N", type=shard_arg,
                   help="score only shard I of N, counted from 1 (1/4, 2/4, 3/4, 4/4): utterances I, I+N, I+2N, "
                   "... of the manifest (after --limit), so a manifest sorted by length splits into shards of "
                   "about equal work. Needs --report FILE.json and writes FILE.shardI-of-N.json/.md/.png and "
                   "FILE.shardI-of-N.partial.jsonl (resumable as without --shard); merge the N shards with "
                   "funasr-qwen4b cer-merge FILE.shard*-of-N.partial.jsonl --report FILE.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_max_audio_seconds_arg(p)
    add_segment_args(p)
    add_ctc_guard_arg(p)
    add_source_args(p)
    add_template_args(p)
    add_query_args(p)
    p.set_defaults(strict_fp32=True, func=cmd_cer, conflicts=conflicts)
