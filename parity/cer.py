"""CER (and WER for English) over a manifest, per backend, with MLX-vs-reference agreement.

Pieces, top to bottom:
- normalisation (stated in every report: NORMALISATION);
- edit counts (jiwer when installed; the same Levenshtein counts built in otherwise);
- manifest loading and validation (errors name the line);
- the transcriber seam `transcribe_fn(backend, bundle) -> Callable[[samples], str]`;
- a resumable runner: results are appended to REPORT.partial.jsonl as they come, a rerun
  skips the (id, backend) pairs already there and gives the same report;
- the report: JSON for machines, Markdown for people, a PNG of the error distribution.

Module-level imports are light (no torch, no MLX): the backends are imported by
`transcribe_fn` only.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

BACKENDS = ("mlx", "reference")
def transcriber_kind(bundle: str | Path) -> str:
    """What produces the transcripts (see transcribe_fn): the LLM when the bundle has it."""
    from funasr_qwen4b.bundle import read_bundle

    components = read_bundle(bundle)["components"]
    return "llm" if "adaptor" in components and "llm" in components else "ctc"

# --- normalisation ----------------------------------------------------------

TAG_RE = re.compile(r"<\|[^|<>]*\|>")
_APOSTROPHES = "'\u2019\u02bc"
NORMALISATION = (
    "SenseVoice tags <|...|> stripped; Unicode NFKC (full-width → half-width); lowercase; "
    "apostrophes deleted, other punctuation (Unicode P*, CJK and ASCII, and ASCII symbols) replaced by a space; "
    "CER: every whitespace removed, scored per character; WER (English utterances): whitespace collapsed, "
    "scored per word"
)


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize(text: str) -> str:
    """Normalised text with single spaces between words (what WER scores)."""
    text = TAG_RE.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join("" if ch in _APOSTROPHES else " " if _is_punct(ch) else ch for ch in text)
    return " ".join(text.split())


def cer_text(text: str) -> str:
    """What CER scores: the normalised text without any whitespace."""
    return normalize(text).replace(" ", "")


# --- edit counts ------------------------------------------------------------

@dataclass
class Counts:
    """Levenshtein alignment counts of a hypothesis against a reference."""

    sub: int = 0
    dele: int = 0
    ins: int = 0
    ref: int = 0  # reference length (characters or words)

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        """errors / reference length; an empty reference scores 0 if the hypothesis is empty too, else 1."""
        if self.ref == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.ref

    def __add__(self, o: "Counts") -> "Counts":
        return Counts(self.sub + o.sub, self.dele + o.dele, self.ins + o.ins, self.ref + o.ref)

    def to_dict(self) -> dict:
        return {"rate": self.rate, "errors": self.errors, "sub": self.sub, "del": self.dele,
                "ins": self.ins, "ref": self.ref}


def _levenshtein(ref: list, hyp: list) -> Counts:
    """Minimum edits (the same total as jiwer; on ties the S/D/I split prefers substitutions)."""
    n, m = len(ref), len(hyp)
    # prev[j] = (cost, sub, del, ins) aligning ref[:i] with hyp[:j]
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            c, s, d, k = prev[j - 1]
            best = (c, s, d, k) if ref[i - 1] == hyp[j - 1] else (c + 1, s + 1, d, k)
            c, s, d, k = prev[j]
            if c + 1 < best[0]:
                best = (c + 1, s, d + 1, k)
            c, s, d, k = cur[j - 1]
            if c + 1 < best[0]:
                best = (c + 1, s, d, k + 1)
            cur.append(best)
        prev = cur
    _, s, d, k = prev[m]
    return Counts(s, d, k, n)


def _jiwer():
    try:
        import jiwer
    except ImportError:
        return None
    return jiwer


def edit_impl() -> str:
    j = _jiwer()
    if j is None:
        return "built-in Levenshtein (jiwer not installed)"
    from importlib.metadata import version

    return f"jiwer {version('jiwer')}"


def char_counts(ref: str, hyp: str) -> Counts:
    """CER counts of raw texts (both normalised here)."""
    r, h = cer_text(ref), cer_text(hyp)
    j = _jiwer()
    if not r or not h or j is None:  # jiwer refuses empty references
        return _levenshtein(list(r), list(h))
    o = j.process_characters(r, h)
    return Counts(o.substitutions, o.deletions, o.insertions, len(r))


def word_counts(ref: str, hyp: str) -> Counts:
    """WER counts of raw texts (both normalised here)."""
    r, h = normalize(ref).split(), normalize(hyp).split()
    j = _jiwer()
    if not r or not h or j is None:
        return _levenshtein(r, h)
    o = j.process_words(" ".join(r), " ".join(h))
    return Counts(o.substitutions, o.deletions, o.insertions, len(r))


# --- manifests --------------------------------------------------------------

class ManifestError(ValueError):
    """A manifest problem; the message names the file and line."""


REQUIRED_KEYS = ("id", "audio", "text")


@dataclass
class Entry:
    line: int
    id: str
    audio: Path
    text: str
    lang: str | None = None


def load_manifest(path: str | Path, *, check_audio: bool = True) -> list[Entry]:
    """JSONL, one utterance a line: {"id", "audio" (relative to the manifest or absolute), "text",
    optional "lang", anything else ignored}. Blank lines are skipped. Raises ManifestError naming the
    first bad line (and how many more there are)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path} line {no}"
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(obj, dict):
                problems.append(f"{where}: expected a JSON object, got {type(obj).__name__}")
                continue
            missing = [k for k in REQUIRED_KEYS if k not in obj]
            if missing:
                problems.append(f"{where}: missing key {', '.join(repr(k) for k in missing)} "
                                f"(each line needs {', '.join(REQUIRED_KEYS)})")
                continue
            uid, audio, text, lang = obj["id"], obj["audio"], obj["text"], obj.get("lang")
            if not isinstance(uid, (str, int)) or isinstance(uid, bool) or str(uid) == "":
                problems.append(f"{where}: 'id' must be a non-empty string")
                continue
            uid = str(uid)
            if not isinstance(audio, str) or not audio:
                problems.append(f"{where}: 'audio' must be a non-empty path string")
                continue
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{where}: empty text for id {uid!r}")
                continue
            if not cer_text(text):
                problems.append(f"{where}: text {text!r} of id {uid!r} has no characters left after normalisation")
                continue
            if lang is not None and not isinstance(lang, str):
                problems.append(f"{where}: 'lang' must be a string")
                continue
            if uid in seen:
                problems.append(f"{where}: duplicate id {uid!r} (first on line {seen[uid]})")
                continue
            seen[uid] = no
            audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
            if check_audio and not audio_path.is_file():
                problems.append(f"{where}: audio file not found: {audio_path}")
                continue
            entries.append(Entry(no, uid, audio_path, text, lang))
    if problems:
        more = f" (and {len(problems) - 1} more bad line{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise ManifestError(problems[0] + more)
    if not entries:
        raise ManifestError(f"manifest {path} has no utterances")
    return entries


# --- the transcriber seam -----------------------------------------------------

def _mlx_pipeline(bundle, query):
    import inspect

    from mlx_port.pipeline import Pipeline

    params = inspect.signature(Pipeline.from_bundle).parameters
    kw = {"ctc_only": True} if "ctc_only" in params else {"with_adaptor": False} if "with_adaptor" in params else {}
    return Pipeline.from_bundle(bundle, query, **kw)


def transcribe_fn(backend: str, bundle: str | Path, *, query=None, sensevoice_src: str | Path | None = None,
                  template: str | None = None) -> Callable[[np.ndarray], str]:
    """The one place that decides what text a backend produces for 16 kHz mono float samples:
    the LLM transcriber (with `template`) when the bundle has adaptor and LLM, else
    SenseVoice's CTC head (greedy), tags stripped."""
    if transcriber_kind(bundle) == "llm":
        from funasr_qwen4b.transcriber import Transcriber

        t = Transcriber.load(bundle, backend, template=template, query=query,
                             sources={"sensevoice_src": sensevoice_src})
        return lambda samples: t.transcribe(samples, sample_rate=16000)["text"]
    if query is None:
        from funasr_qwen4b.bundle import read_bundle
        from funasr_qwen4b.config import QueryConfig

        query = QueryConfig(**read_bundle(bundle)["components"]["sensevoice"].get("query", {}))
    if backend == "mlx":
        pipe = _mlx_pipeline(bundle, query)
    elif backend == "reference":
        from reference.pipeline import Pipeline

        from .harness import sensevoice_source_dir

        pipe = Pipeline.from_sources(sensevoice_source_dir(bundle, sensevoice_src), query)
    else:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")

    def run(samples: np.ndarray) -> str:
        return TAG_RE.sub("", pipe.run(samples).ctc.text).strip()

    return run


# --- progress -----------------------------------------------------------------

class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line every ~5% otherwise."""

    def __init__(self, total: int, done: int = 0, label: str = "cer", stream=None, enabled: bool = True):
        self.total, self.done, self.label, self.enabled = total, done, label, enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start, self.start_done = time.perf_counter(), done
        self.every = max(1, total // 20)

    def update(self, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        rate = (self.done - self.start_done) / max(time.perf_counter() - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        fill = int(width * self.done / max(self.total, 1))
        line = (f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                f"eta {eta:5.0f} s  {note}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150) + ("\n" if self.done >= self.total else ""))
        elif self.done % self.every == 0 or self.done >= self.total:
            self.stream.write(line + "\n")
        self.stream.flush()


# --- the resumable runner -------------------------------------------------------

def partial_path(report_json: str | Path) -> Path:
    p = Path(report_json)
    return p.with_name(p.name.removesuffix(".json") + ".partial.jsonl")


def _read_partial(path: Path, header: dict) -> dict[tuple[str, str], dict]:
    """Results already on disk; a truncated last line (a run killed mid-write) is dropped."""
    done: dict[tuple[str, str], dict] = {}
    if not path.is_file():
        return done
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, raw in enumerate(lines):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # interrupted while writing it
            raise ManifestError(f"{path} line {i + 1} is not valid JSON; delete the file to start over") from None
        if i == 0:
            old = obj.get("partial_header")
            if old != header:
                diff = sorted(k for k in set(header) | set(old or {}) if (old or {}).get(k) != header.get(k))
                raise ValueError(f"{path} holds results of a different run ({', '.join(diff) or 'no header'} "
                                 f"differ); delete it to start over, or pick another --report")
            continue
        done[(obj["id"], obj["backend"])] = obj
    return done


def run_utterances(entries: list[Entry], transcribers: dict[str, Callable[[np.ndarray], str]], *,
                   partial: str | Path | None = None, header: dict | None = None, progress: bool = True,
                   load=None, log: Callable[[str], None] = lambda m: None) -> dict[str, dict[str, dict]]:
    """Run every backend over every entry; returns {backend: {id: {"hyp", "seconds", "audio_s"}}}.

    With `partial`, each result is appended (and flushed) as it comes and results already there
    are reused, so an interrupted run picks up where it stopped. `header` identifies the run; a
    partial file written for another run is refused.
    """
    if load is None:
        from funasr_qwen4b.audio import load_audio as load
    header = header or {}
    done: dict[tuple[str, str], dict] = {}
    out_f = None
    if partial is not None:
        partial = Path(partial)
        partial.parent.mkdir(parents=True, exist_ok=True)
        done = _read_partial(partial, header)
        if partial.is_file():
            # Drop a truncated last line before appending after it.
            text = partial.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                partial.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")
        fresh = not partial.is_file() or partial.stat().st_size == 0
        out_f = open(partial, "a", encoding="utf-8")
        if fresh:
            out_f.write(json.dumps({"partial_header": header}, ensure_ascii=False) + "\n")
            out_f.flush()
    todo = {e.id for e in entries if any((e.id, b) not in done for b in transcribers)}
    if done:
        log(f"resuming from {partial}: {len(entries) - len(todo)} of {len(entries)} utterances already done")
    results: dict[str, dict[str, dict]] = {b: {} for b in transcribers}
    bar = Progress(len(entries), len(entries) - len(todo), enabled=progress)
    try:
        for e in entries:
            if e.id not in todo:
                continue
            samples = load(e.audio)
            notes = []
            for b, fn in transcribers.items():
                if (e.id, b) in done:
                    continue
                t = time.perf_counter()
                hyp = fn(samples)
                row = {"id": e.id, "backend": b, "hyp": hyp, "seconds": round(time.perf_counter() - t, 4),
                       "audio_s": round(samples.size / 16000, 4)}
                done[(e.id, b)] = row
                notes.append(f"{b} {row['seconds']:.2f} s")
                if out_f is not None:
                    out_f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    out_f.flush()
            bar.update(f"{e.id} ({', '.join(notes)})")
    finally:
        if out_f is not None:
            out_f.close()
    for e in entries:
        for b in transcribers:
            results[b][e.id] = done[(e.id, b)]
    return results


# --- the report -------------------------------------------------------------------

def _is_en(lang: str | None) -> bool:
    return bool(lang) and lang.lower().split("-")[0].split("_")[0] in ("en", "eng", "english")


def build_report(entries: list[Entry], results: dict[str, dict[str, dict]], meta: dict, *,
                 worst: int = 10) -> dict:
    backends = [b for b in BACKENDS if b in results] + [b for b in results if b not in BACKENDS]
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
        if "mlx" in results and "reference" in results:
            ref_hyp, mlx_hyp = results["reference"][e.id]["hyp"], results["mlx"][e.id]["hyp"]
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
    if "mlx" in results and "reference" in results:
        mvr = {"cer": agree.rate, "char": agree.to_dict(), "identical": identical, "utterances": len(rows),
               "differing_ids": [r["id"] for r in rows if not r["mlx_vs_reference"]["identical"]]}
    key = lambda r: (-max(r[b]["cer"] for b in backends), r["id"])  # noqa: E731
    worst_ids = [r["id"] for r in sorted(rows, key=key)[: max(0, worst)]]
    timing = {b: {"seconds": round(sum(results[b][e.id]["seconds"] for e in entries), 3),
                  "audio_s": round(sum(results[b][e.id]["audio_s"] for e in entries), 3)} for b in backends}
    for t in timing.values():
        t["rtf"] = round(t["seconds"] / t["audio_s"], 4) if t["audio_s"] else None
    return {"meta": {**meta, "normalisation": NORMALISATION, "scoring": edit_impl(), "backends": backends},
            "summary": summary, "mlx_vs_reference": mvr, "worst": worst_ids, "utterances": rows,
            "timing": timing}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _cell(text: str, limit: int = 60) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else "*(empty)*"


def to_markdown(rep: dict) -> str:
    m, backends = rep["meta"], rep["meta"]["backends"]
    lines = ["# CER report", "",
             f"- manifest `{m.get('manifest')}` ({m.get('utterances')} utterances"
             + (f", first {m['limit']}" if m.get("limit") else "") + f"); bundle `{m.get('bundle')}`",
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
    t = rep.get("timing", {})
    if t:
        lines += ["", "Time: " + "; ".join(f"{b} {v['seconds']:.1f} s for {v['audio_s']:.1f} s of audio "
                                             f"(RTF {v['rtf']})" for b, v in t.items())]
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
    fig.suptitle(f"{Path(str(rep['meta'].get('manifest'))).name}: transcriber {rep['meta'].get('transcriber')}")
    fig.tight_layout()
    from funasr_qwen4b.bundle import write_atomic

    write_atomic(path, lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)


def write(rep: dict, json_path: str | Path) -> list[Path]:
    """FILE.json, FILE.md and FILE.png side by side."""
    from .report import write_triplet

    return write_triplet(json_path, rep, to_markdown(rep), lambda png: plot(rep, png))


# --- the whole command ------------------------------------------------------------

def _versions(backends: Iterable[str]) -> dict:
    v = {}
    if "mlx" in backends:
        import mlx.core as mx

        v["mlx"] = mx.__version__
    if "reference" in backends:
        import funasr
        import torch

        v.update(torch=torch.__version__, funasr=funasr.__version__)
    return v


class _Lazy:
    """A backend loaded on its first utterance (a resumed run with nothing left loads none)."""

    def __init__(self, name: str, build: Callable[[], Callable[[np.ndarray], str]], log):
        self.name, self.build, self.log, self.fn = name, build, log, None

    def __call__(self, samples: np.ndarray) -> str:
        if self.fn is None:
            self.log(f"cer: loading the {self.name} backend")
            self.fn = self.build()
        return self.fn(samples)


@dataclass
class CerRun:
    bundle: str | Path
    manifest: str | Path
    backends: tuple[str, ...] = ("mlx",)
    report: str | Path | None = None
    limit: int | None = None
    worst: int = 10
    query: object = None  # QueryConfig; default: the bundle's
    sensevoice_src: str | Path | None = None
    template: str | None = None  # template text for the LLM transcriber; default: the bundle's
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda m: None)

    def run(self) -> dict:
        from funasr_qwen4b.bundle import BUNDLE_JSON, precisions, read_bundle, sha256_file
        from funasr_qwen4b.config import QueryConfig

        entries = load_manifest(self.manifest)
        total = len(entries)
        if self.limit is not None:
            if self.limit < 1:
                raise ValueError(f"--limit must be at least 1, got {self.limit}")
            entries = entries[: self.limit]
        meta_b = read_bundle(self.bundle)
        sv = meta_b["components"].get("sensevoice")
        if sv is None:
            raise ValueError(f"bundle {self.bundle} has no sensevoice component")
        query = self.query or QueryConfig(**sv.get("query", {}))
        qdict = {"enabled": query.enabled, "language": query.language, "textnorm": query.textnorm}
        kind = transcriber_kind(self.bundle)
        header = {"manifest": str(Path(self.manifest).resolve()), "bundle": str(Path(self.bundle).resolve()),
                  "bundle_json_sha256": sha256_file(Path(self.bundle) / BUNDLE_JSON), "query": qdict,
                  "transcriber": kind, "template": self.template}
        transcribers = {b: _Lazy(b, lambda b=b: transcribe_fn(b, self.bundle, query=query,
                                                             sensevoice_src=self.sensevoice_src,
                                                             template=self.template), self.log)
                        for b in self.backends}
        partial = partial_path(self.report) if self.report else None
        results = run_utterances(entries, transcribers, partial=partial, header=header, progress=self.progress,
                                 log=self.log)
        meta = {"manifest": str(self.manifest), "bundle": str(self.bundle), "utterances": len(entries),
                "manifest_utterances": total, "limit": self.limit, "transcriber": kind, "template": self.template,
                "dtype": sv.get("dtype"), "precisions": precisions(meta_b), "query": qdict,
                "MLX_ENABLE_TF32": os.environ.get("MLX_ENABLE_TF32"), "versions": _versions(self.backends)}
        return build_report(entries, results, meta, worst=self.worst)
