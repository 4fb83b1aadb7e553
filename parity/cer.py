"""CER (and WER for English) over a manifest, per transcriber, with MLX-vs-reference agreement.

- a resumable runner: results are appended to REPORT.partial.jsonl as they come, each with
  the sha256 of its audio file; a rerun reuses a stored result only when it is provably the
  same: the same run (its header: bundle, template, query and the other settings) and the
  same audio bytes; anything else is computed again, and the report says how many were reused;
- shards (parity/shards.py) split one run over machines, each resumable the same way;
- the report: JSON for machines, Markdown for people, a PNG of the error distribution.

Transcribers come in as functions (a batch of 16 kHz mono float samples → their texts), named by
backend; this module neither chooses nor imports one. Normalisation and edit counts are
`funasr_qwen4b.text`'s, manifests `funasr_qwen4b.manifest`'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from funasr_qwen4b.audio import SAMPLE_RATE, load_audio
from funasr_qwen4b.atomic import write_atomic
from funasr_qwen4b.config import Backend
from funasr_qwen4b.files import sha256_file
from funasr_qwen4b.manifest import Entry
from funasr_qwen4b.text import NORMALISATION, Counts, cer_text, char_counts, scoring, word_counts

from .report import write_triplet

log = logging.getLogger(__name__)

MLX, REFERENCE = Backend.MLX.value, Backend.REFERENCE.value
ORDER = (MLX, REFERENCE)  # report columns

Transcribe = Callable[[list[np.ndarray]], list[str]]  # a batch of utterances → their texts, in order


def one_at_a_time(fn: Callable[[np.ndarray], str]) -> Transcribe:
    """A transcriber of one utterance, given a batch: each in turn."""
    return lambda batch: [fn(samples) for samples in batch]


# --- the resumable runner -------------------------------------------------------

def partial_path(report_json: str | Path) -> Path:
    p = Path(report_json)
    return p.with_name(p.name.removesuffix(".json") + ".partial.jsonl")


def differing(a: dict, b: dict) -> list[str]:
    """The keys whose values differ, dotted into nested dicts (meta.versions.mlx)."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{k}.{sub}" for sub in differing(x, y)]
        elif x != y:
            out.append(k)
    return out


def read_partial(path: Path, fix: str) -> tuple[dict | None, dict[tuple[str, str], dict]]:
    """A partial file's header and results; a truncated last line (a run killed mid-write) is
    dropped. `fix` ends the message of a damaged file: what to do about it."""
    header: dict | None = None
    done: dict[tuple[str, str], dict] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, raw in enumerate(lines):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # interrupted while writing it
            raise ValueError(f"{path} line {i + 1} is not valid JSON; {fix}") from None
        if i == 0:
            header = obj.get("partial_header") if isinstance(obj, dict) else None
            if header is None:
                break  # not a partial file at all: refused by its header
            continue
        key = (obj["id"], obj["backend"])
        if key in done:  # two runs appending to one file: neither's results can be trusted
            raise ValueError(f"{path} line {i + 1} repeats the {key[1]} result for id {key[0]!r} (two runs "
                             f"wrote to this file at once?); {fix}")
        done[key] = obj
    return header, done


def _open_partial(partial: Path, header: dict, audio_sha256: dict[str, str]):
    """The results in `partial` that are provably this run's on this audio, and the file opened to
    append more. `audio_sha256`: each entry id's audio hash now. A file of another run (another
    header) gives nothing; a result whose audio hash differs (or is not recorded) is dropped. The
    file is rewritten (atomically) to what is kept when anything is dropped."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[str, str], dict] = {}
    rewrite = False
    if partial.is_file():
        old, done = read_partial(partial, "delete the file to start over")
        if old is None:
            raise ValueError(f"{partial} is not a partial file of `cer` (its first line is no header); delete it "
                             f"to start over, or pick another --report")
        if old != header:
            log.warning("%s holds results of another run (%s differ): none are reused, all are computed again",
                        partial, ", ".join(differing(header, old)))
            done, rewrite = {}, True
        stale = sorted({uid for (uid, _), row in done.items()
                        if uid in audio_sha256 and row.get("audio_sha256") != audio_sha256[uid]})
        if stale:
            log.warning("%s: the audio of %d utterance(s) is not the one their stored results were computed on "
                        "(%s%s): computed again", partial, len(stale), ", ".join(stale[:5]),
                        ", ..." if len(stale) > 5 else "")
            done, rewrite = {k: row for k, row in done.items() if k[0] not in stale}, True
        text = partial.read_text(encoding="utf-8")
        if rewrite or (text and not text.endswith("\n")):  # a truncated last line goes before appending
            lines = [{"partial_header": header}, *done.values()]
            write_atomic(partial, lambda p: Path(p).write_text(
                "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8"))
    fresh = not partial.is_file() or partial.stat().st_size == 0
    out = open(partial, "a", encoding="utf-8")
    if fresh:
        out.write(json.dumps({"partial_header": header}, ensure_ascii=False) + "\n")
        out.flush()
    return done, out


def run_utterances(entries: list[Entry], transcribers: dict[str, Transcribe], *, batch_size: int = 1,
                   partial: str | Path | None = None, header: dict | None = None, progress: bool = True,
                   load: Callable[[Path], np.ndarray] = load_audio) -> dict[str, dict[str, dict]]:
    """Run every transcriber over every entry, `batch_size` entries at a time; returns
    {name: {id: {"hyp", "seconds", "audio_s", "audio_sha256", "reused"}}}, a batch's time shared
    equally by its utterances.

    With `partial`, each result is appended as its batch returns (flushed per batch) and results
    already there are reused when provably the same: `header` (which identifies the run: the
    bundle, template, settings) unchanged and the audio file's sha256 unchanged. So an
    interrupted run picks up where it stopped, and a changed input is computed again. A
    progress bar goes to stderr.
    """
    audio_sha256 = _audio_hashes(entries)
    done, out_f = _open_partial(Path(partial), header or {}, audio_sha256) if partial is not None else ({}, None)
    reused = {(e.id, b) for e in entries for b in transcribers if (e.id, b) in done}
    todo = [e for e in entries if any((e.id, b) not in done for b in transcribers)]
    if reused:
        log.info("resuming from %s: %d of %d results reused (same audio, bundle, template and settings), "
                 "%d utterances to transcribe", partial, len(reused), len(entries) * len(transcribers), len(todo))
    # logging_redirect_tqdm: a log line (a backend loading) is printed above the bar, not through it.
    with out_f or contextlib.nullcontext(), logging_redirect_tqdm(), \
            tqdm(total=len(entries), initial=len(entries) - len(todo), desc="cer", unit="utt",
                 disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = [(e, load(e.audio)) for e in todo[start:start + batch_size]]
            for b, fn in transcribers.items():
                _run_batch(b, fn, chunk, done, out_f, audio_sha256)
            bar.set_postfix_str(chunk[-1][0].id)
            bar.update(len(chunk))
    return {b: {e.id: {**done[(e.id, b)], "reused": (e.id, b) in reused} for e in entries} for b in transcribers}


def _audio_hashes(entries: list[Entry]) -> dict[str, str]:
    """Each entry id's audio sha256 (about 1 ms a MB; a clip listed twice is hashed once)."""
    by_path: dict[Path, str] = {}
    for e in entries:
        if e.audio not in by_path:
            try:
                by_path[e.audio] = sha256_file(e.audio)
            except OSError as err:
                raise ValueError(f"cannot read audio {e.audio} (id {e.id!r}): {err.strerror or err}") from None
    return {e.id: by_path[e.audio] for e in entries}


def _run_batch(backend: str, fn: Transcribe, chunk: list[tuple[Entry, np.ndarray]],
               done: dict[tuple[str, str], dict], out_f, audio_sha256: dict[str, str]) -> None:
    """One transcriber over the utterances of a batch it has not done: their results kept in
    `done` and, with a partial file, appended to it and flushed."""
    need = [(e, s) for e, s in chunk if (e.id, backend) not in done]
    if not need:
        return
    t = time.perf_counter()
    hyps = fn([s for _, s in need])
    if len(hyps) != len(need):
        raise RuntimeError(f"the {backend} transcriber gave {len(hyps)} texts for {len(need)} utterances")
    seconds = round((time.perf_counter() - t) / len(need), 4)
    rows = [{"id": e.id, "backend": backend, "hyp": hyp, "seconds": seconds, "audio_s": round(s.size / SAMPLE_RATE, 4),
             "audio_sha256": audio_sha256[e.id]} for (e, s), hyp in zip(need, hyps)]
    done.update(((row["id"], backend), row) for row in rows)
    if out_f is not None:
        out_f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        out_f.flush()


# --- the report -------------------------------------------------------------------

def _is_en(lang: str | None) -> bool:
    return bool(lang) and lang.lower().split("-")[0].split("_")[0] in ("en", "eng", "english")


def build_report(entries: list[Entry], results: dict[str, dict[str, dict]], meta: dict, *,
                 worst: int = 10) -> dict:
    backends = [b for b in ORDER if b in results] + [b for b in results if b not in ORDER]
    both = MLX in results and REFERENCE in results
    rows = []
    totals = {b: Counts() for b in backends}
    wer_totals = {b: Counts() for b in backends}
    agree = Counts()
    identical = 0
    for e in entries:
        row = {"id": e.id, "lang": e.lang, "audio": str(e.audio), "ref": e.text, "ref_norm": cer_text(e.text)}
        for b in backends:
            hyp = results[b][e.id]["hyp"]
            c = char_counts(e.text, hyp)
            totals[b] += c
            cell = {"hyp": hyp, "hyp_norm": cer_text(hyp), "cer": c.rate, "char": c.to_dict()}
            if _is_en(e.lang):
                w = word_counts(e.text, hyp)
                wer_totals[b] += w
                cell["wer"] = w.rate
                cell["word"] = w.to_dict()
            row[b] = cell
        if both:
            ref_hyp, mlx_hyp = results[REFERENCE][e.id]["hyp"], results[MLX][e.id]["hyp"]
            c = char_counts(ref_hyp, mlx_hyp)
            agree += c
            identical += ref_hyp == mlx_hyp
            row["mlx_vs_reference"] = {"cer": c.rate, "char": c.to_dict(), "identical": ref_hyp == mlx_hyp}
        rows.append(row)
    n_en = sum(_is_en(e.lang) for e in entries)
    summary = {}
    for b in backends:
        utt = [r[b]["cer"] for r in rows]
        summary[b] = {"utterances": len(rows), "cer": totals[b].rate, "char": totals[b].to_dict(),
                      "utterance_cer_mean": float(np.mean(utt)), "utterance_cer_median": float(np.median(utt)),
                      "exact": sum(r[b]["hyp_norm"] == r["ref_norm"] for r in rows)}
        if n_en:
            summary[b].update(en_utterances=n_en, wer=wer_totals[b].rate, word=wer_totals[b].to_dict())
    mvr = None
    if both:
        mvr = {"cer": agree.rate, "char": agree.to_dict(), "identical": identical, "utterances": len(rows),
               "differing_ids": [r["id"] for r in rows if not r["mlx_vs_reference"]["identical"]]}
    key = lambda r: (-max(r[b]["cer"] for b in backends), r["id"])  # noqa: E731
    worst_ids = [r["id"] for r in sorted(rows, key=key)[: max(0, worst)]]
    timing = {b: {"seconds": round(sum(results[b][e.id]["seconds"] for e in entries), 3),
                  "audio_s": round(sum(results[b][e.id]["audio_s"] for e in entries), 3)} for b in backends}
    for t in timing.values():
        t["rtf"] = round(t["seconds"] / t["audio_s"], 4) if t["audio_s"] else None
    rep = {"meta": {**meta, "normalisation": NORMALISATION, "scoring": scoring(), "backends": backends},
           "summary": summary, "mlx_vs_reference": mvr, "worst": worst_ids, "utterances": rows,
           "timing": timing}
    cells = [results[b][e.id] for b in backends for e in entries]
    if cells and "reused" in cells[0]:  # a run's results (a merge's come from the shards' files)
        reused = sum(bool(c["reused"]) for c in cells)
        rep["resume"] = {"reused": reused, "computed": len(cells) - reused}
    return rep


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _cell(text: str, limit: int = 60) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else "*(empty)*"


def to_markdown(rep: dict) -> str:
    m, backends = rep["meta"], rep["meta"]["backends"]
    lines = ["# CER report", "",
             f"- manifest `{m.get('manifest')}` ({m.get('utterances')} utterances"
             + (f", first {m['limit']}" if m.get("limit") else "") + (f", shard {m['shard']}" if m.get("shard") else "")
             + f"); bundle `{m.get('bundle')}`",
             f"- transcriber **{m.get('transcriber')}**; MLX dtype {m.get('dtype')}; query rows {m.get('query')}",
             f"- normalisation: {m['normalisation']}",
             f"- scoring: {m['scoring']}; versions {m.get('versions')}", ""]
    has_wer = any("wer" in rep["summary"][b] for b in backends)
    head = "| backend | utterances | CER | sub | del | ins | ref chars | exact | mean utt CER |"
    sep = "|---|---|---|---|---|---|---|---|---|"
    if has_wer:
        head, sep = head + " en WER (words) |", sep + "---|"
    lines += [head, sep]
    for b in backends:
        s = rep["summary"][b]
        c = s["char"]
        line = (f"| {b} | {s['utterances']} | **{_pct(s['cer'])}** | {c['sub']} | {c['del']} | {c['ins']} | "
                f"{c['ref']} | {s['exact']} | {_pct(s['utterance_cer_mean'])} |")
        if has_wer:
            line += f" {_pct(s['wer'])} ({s['word']['ref']}) |" if "wer" in s else " – |"
        lines.append(line)
    mvr = rep.get("mlx_vs_reference")
    if mvr:
        lines += ["", f"**MLX vs reference transcript: CER {_pct(mvr['cer'])}** "
                  f"({mvr['char']['errors']} edits over {mvr['char']['ref']} reference characters; "
                  f"{mvr['identical']}/{mvr['utterances']} transcripts identical)"]
        if mvr["differing_ids"]:
            lines.append(f"- differing: {', '.join(mvr['differing_ids'][:20])}")
    if rep.get("resume", {}).get("reused"):
        r = rep["resume"]
        lines += ["", f"Resumed: {r['reused']} of {r['reused'] + r['computed']} results reused from the partial file "
                  f"(same audio, bundle, template and settings), {r['computed']} computed."]
    t = rep.get("timing", {})
    if t:
        lines += ["", "Time: " + "; ".join(f"{b} {v['seconds']:.1f} s for {v['audio_s']:.1f} s of audio "
                                             f"(RTF {v['rtf']})" for b, v in t.items())
                  + (f"; over {m['ranks']['count']} ranks ({m['ranks']['backend']})" if m.get("ranks") else "")]
    if rep["worst"]:
        by_id = {r["id"]: r for r in rep["utterances"]}
        lines += ["", f"## Worst {len(rep['worst'])} utterances", ""]
        head = "| id | reference text |" + "".join(f" {b} | {b} CER |" for b in backends)
        sep = "|---|---|" + "---|---|" * len(backends)
        if mvr:
            head, sep = head + " MLX vs ref CER |", sep + "---|"
        lines += [head, sep]
        for uid in rep["worst"]:
            r = by_id[uid]
            line = f"| {uid} | {_cell(r['ref'])} |" + "".join(
                f" {_cell(r[b]['hyp'])} | {_pct(r[b]['cer'])} |" for b in backends)
            if mvr:
                line += f" {_pct(r['mlx_vs_reference']['cer'])} |"
            lines.append(line)
    return "\n".join(lines) + "\n"


def plot_title(meta: dict) -> str:
    """The set (the manifest's directory and file name: every set's manifest is test.jsonl) and the transcriber."""
    manifest = Path(str(meta.get("manifest")))
    return f"{manifest.parent.name}/{manifest.name}: transcriber {meta.get('transcriber')}"


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    backends = rep["meta"]["backends"]
    rows = rep["utterances"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    top = max([1.0] + [r[b]["cer"] for r in rows for b in backends])
    bins = np.linspace(0, math.ceil(top * 10) / 10, 21)
    a1.hist([[r[b]["cer"] for r in rows] for b in backends], bins=bins, label=backends)
    a1.set_xlabel("per-utterance CER")
    a1.set_ylabel("utterances")
    a1.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    a1.set_title("CER distribution")
    a1.legend()
    x = np.arange(1, len(rows) + 1)
    for b in backends:
        a2.plot(x, sorted((r[b]["cer"] for r in rows), reverse=True), marker="o", ms=3, label=f"{b} vs text")
    if rep.get("mlx_vs_reference"):
        a2.plot(x, sorted((r["mlx_vs_reference"]["cer"] for r in rows), reverse=True), marker="x", ms=4,
                label="MLX vs reference transcript")
    a2.set_xlabel("utterances, worst first")
    a2.set_ylabel("CER")
    a2.set_title("per-utterance CER, sorted")
    a2.grid(True, alpha=0.3)
    a2.legend()
    fig.suptitle(plot_title(rep["meta"]))
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)


def write(rep: dict, json_path: str | Path) -> list[Path]:
    """FILE.json, FILE.md and FILE.png side by side."""
    return write_triplet(json_path, rep, to_markdown(rep), lambda png: plot(rep, png))
