"""`cer --shard I/N` and `cer-merge` (the merged report is the unsharded run's), and `cer --batch-size N`
(transcribers called in batches, resumable as before)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.config import Backend
from funasr_qwen4b.manifest import load_manifest
from funasr_qwen4b.text import cer_text
from funasr_qwen4b.parity import cer, shards

N_UTT = 5  # split into 3 shards of 2, 2 and 1: 3 does not divide it


def _manifest(tmp_path: Path, n: int = N_UTT) -> Path:
    lines = []
    for i in range(n):
        t = np.arange(int(16000 * (0.2 + 0.1 * i))) / 16000
        sf.write(str(tmp_path / f"u{i}.wav"), (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32),
                 16000, subtype="PCM_16")
        lines.append(json.dumps({"id": f"u{i}", "audio": f"u{i}.wav", "text": f"第{i}句话", "lang": "zh"},
                                ensure_ascii=False) + "\n")
    m = tmp_path / "m.jsonl"
    m.write_text("".join(lines), encoding="utf-8")
    return m


def _stable(rep: dict) -> dict:
    """The report without its wall-clock times and what its run reused."""
    rep = copy.deepcopy(rep)
    rep.pop("timing")
    rep.pop("resume", None)
    return rep


def _untimed(results: dict) -> dict:
    """Run results without their wall-clock seconds (two runs of the same transcriber differ there) and
    whether the run reused them."""
    return {b: {i: {k: v for k, v in row.items() if k not in ("seconds", "reused")} for i, row in rows.items()}
            for b, rows in results.items()}


def _main(capsys, *args) -> subprocess.CompletedProcess:
    """The command line in-process; a refusal at parse time (argparse's SystemExit) gives its code."""
    from funasr_qwen4b.app.cli import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def _one_line_exit_2(r: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 and one error line with `words` (after argparse's usage, for a flag refused at parse time)."""
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("funasr-qwen4b")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in errors[0], r.stderr


# --- shards ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_shards_deal_the_manifest_round_robin(tmp_path, n):
    entries = load_manifest(_manifest(tmp_path))
    got = [[e.id for e in shards.Shard(i, n).take(entries)] for i in range(1, n + 1)]
    assert got == [[f"u{j}" for j in range(N_UTT) if j % n == i - 1] for i in range(1, n + 1)]


def test_shard_parse_and_names():
    s = shards.Shard.parse("2/4")
    assert (s.index, s.count, str(s)) == (2, 4, "2/4")
    assert s.report("out/r.json") == Path("out/r.shard2-of-4.json")
    assert cer.partial_path(s.report("out/r.json")) == Path("out/r.shard2-of-4.partial.jsonl")


@pytest.mark.parametrize("bad", ["0/4", "5/4", "a/b", "2", "1/0", "-1/4", "2/4/8", "1.5/4", ""])
def test_shard_parse_refuses(bad):
    with pytest.raises(ValueError, match="the I-th of N shards counted from 1"):
        shards.Shard.parse(bad)


def _fake(tag: str):
    return cer.one_at_a_time(lambda s: f"{tag}{int(np.abs(s).sum()) % 97}")


HEADER = {"bundle": "b", "query": {"language": "zh"}, "transcriber": "ctc", "template": None}


def _run_shards(tmp_path: Path, m: Path, n: int, *, header: dict = HEADER, which=None, limit=None) -> list[Path]:
    """Each shard's partial file, as `cer --shard I/N --report tmp/r.json` writes it (fake transcribers)."""
    entries = load_manifest(m)[:limit]
    meta = {"manifest": str(m), "limit": limit, "utterances": len(entries)}
    paths = []
    for i in which or range(1, n + 1):
        shard = shards.Shard(i, n)
        h = shards.shard_header({**header, "manifest": str(m.resolve())}, shard, backends=["mlx", "reference"],
                             meta=meta)
        part = cer.partial_path(shard.report(tmp_path / "r.json"))
        cer.run_utterances(shard.take(entries), {"mlx": _fake("m"), "reference": _fake("r")}, partial=part,
                           header=h, progress=False)
        paths.append(part)
    return paths


@pytest.mark.parametrize("limit", [None, 4])
def test_merged_shards_are_the_unsharded_run(tmp_path, limit):
    m = _manifest(tmp_path)
    entries = load_manifest(m)[:limit]
    once = cer.run_utterances(entries, {"mlx": _fake("m"), "reference": _fake("r")}, progress=False)
    parts = _run_shards(tmp_path, m, 3, limit=limit)
    merged_entries, merged, meta = shards.merge_shards(reversed(parts))  # any order
    assert merged_entries == entries and _untimed(merged) == _untimed(once)
    rows = [json.loads(line) for p in parts for line in p.read_text(encoding="utf-8").splitlines()[1:]]
    assert {(r["backend"], r["id"]): r["seconds"] for r in rows} == {
        (b, i): row["seconds"] for b, by_id in merged.items() for i, row in by_id.items()}  # the shards' own times
    assert meta == {"manifest": str(m), "limit": limit, "utterances": len(entries)}
    rep = cer.build_report(merged_entries, merged, meta)
    assert _stable(rep) == _stable(cer.build_report(entries, once, meta))
    refs = [cer_text(e.text) for e in entries]
    for b in ("mlx", "reference"):  # the corpus CER, independently
        assert rep["summary"][b]["cer"] == pytest.approx(jiwer.cer(refs, [cer_text(once[b][e.id]["hyp"])
                                                                          for e in entries]))


def _merge(capsys, paths, report):
    return _main(capsys, "cer-merge", *paths, "--report", report)


def _mismatched(tmp_path, m):
    other = tmp_path / "other"
    other.mkdir()
    return [*_run_shards(tmp_path, m, 3, which=[1, 2]),
            *_run_shards(other, m, 3, header={**HEADER, "query": {"language": "en"}}, which=[3])]


def _duplicated(tmp_path, m):
    parts = _run_shards(tmp_path, m, 3)
    copy_ = tmp_path / "copy.partial.jsonl"
    shutil.copy(parts[0], copy_)
    return [*parts, copy_]


def _unfinished(tmp_path, m):
    parts = _run_shards(tmp_path, m, 3)
    lines = parts[1].read_text().splitlines(keepends=True)
    parts[1].write_text("".join(lines[:-1]))  # its last result never came
    return parts


def _repeated_row(tmp_path, m):
    parts = _run_shards(tmp_path, m, 3)
    lines = parts[0].read_text().splitlines(keepends=True)
    parts[0].write_text("".join(lines + lines[1:2]))  # two runs appended to one file
    return parts


def _manifest_changed(tmp_path, m):
    parts = _run_shards(tmp_path, m, 3)
    m.write_text(m.read_text().replace("第0句话", "第零句话"), encoding="utf-8")
    return parts


def _counts_differ(tmp_path, m):
    return [*_run_shards(tmp_path, m, 3, which=[1, 2, 3]), *_run_shards(tmp_path, m, 2, which=[2])]


def _unsharded(tmp_path, m):
    part = tmp_path / "r.partial.jsonl"
    cer.run_utterances(load_manifest(m), {"mlx": _fake("m")}, partial=part, header=HEADER, progress=False)
    return [part]


def _a_report(tmp_path, m):
    rep = tmp_path / "r.shard1-of-3.json"
    rep.write_text(json.dumps({"meta": {}}, indent=2))
    return [rep, *_run_shards(tmp_path, m, 3, which=[2, 3])]


@pytest.mark.parametrize("make, words", [
    (lambda t, m: _run_shards(t, m, 3, which=[1, 3]),
     ("shard 2/3 is missing", "r.shard2-of-3.partial.jsonl", "--shard 2/3")),
    (_mismatched, ("r.shard3-of-3.partial.jsonl is from another run than", "query.language differ",
                   "same command")),
    (_duplicated, ("copy.partial.jsonl and", "r.shard1-of-3.partial.jsonl are both shard 1/3", "once")),
    (_unfinished, ("r.shard2-of-3.partial.jsonl (shard 2/3) has no reference result for id 'u4'",
                   "rerun its command (it resumes)")),
    (_repeated_row, ("r.shard1-of-3.partial.jsonl line 6 repeats the mlx result for id 'u0'",)),
    (_manifest_changed, ("m.jsonl changed since the shards ran",)),
    (_counts_differ, ("r.shard2-of-2.partial.jsonl is shard 2/2 but", "is shard 1/3", "same N")),
    (_unsharded, ("r.partial.jsonl is not a shard's partial file", "--shard I/N")),
    (lambda t, m: [m], ("m.jsonl is not a shard's partial file",)),
    (_a_report, ("r.shard1-of-3.json line 1 is not valid JSON", ".partial.jsonl")),
    (lambda t, m: [t / "nope.partial.jsonl"], ("nope.partial.jsonl not found",)),
])
def test_merge_refuses_what_is_not_one_whole_run(tmp_path, capsys, make, words):
    m = _manifest(tmp_path)
    paths = make(tmp_path, m)
    before = sorted(tmp_path.rglob("*"))
    r = _merge(capsys, paths, tmp_path / "merged.json")
    _one_line_exit_2(r, *words)
    assert r.stdout == "" and sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temporary


def test_cer_shards_merged_equal_one_run(bundle, tmp_path, capsys):
    """The `cer` command on the tiny bundle (SenseVoice's CTC head, MLX): the report of 3 shards merged
    is the unsharded report, row for row."""
    m = _manifest(tmp_path)
    base = ["cer", "-m", bundle, "--manifest", m, "--no-progress"]
    r = _main(capsys, *base, "--report", tmp_path / "one" / "r.json")
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        r = _main(capsys, *base, "--report", tmp_path / "r.json", "--shard", f"{i}/3")
        assert r.returncode == 0, r.stderr
        shard = json.loads((tmp_path / f"r.shard{i}-of-3.json").read_text())
        assert [u["id"] for u in shard["utterances"]] == [f"u{j}" for j in range(i - 1, N_UTT, 3)]
        assert shard["meta"]["shard"] == f"{i}/3" and f"shard {i}/3" in r.stdout
    parts = sorted(tmp_path.glob("r.shard*-of-3.partial.jsonl"))
    r = _merge(capsys, parts, tmp_path / "merged.json")
    assert r.returncode == 0, r.stderr
    one = json.loads((tmp_path / "one" / "r.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert _stable(merged) == _stable(one) and len(merged["utterances"]) == N_UTT
    assert (tmp_path / "merged.md").read_text().split("\nTime:")[0] == (tmp_path / "one" / "r.md").read_text().split(
        "\nTime:")[0]
    assert (tmp_path / "merged.png").stat().st_size > 0
    assert "CER report" in r.stdout


@pytest.mark.parametrize("extra, words", [
    (["--shard", "0/4"], ("argument --shard", "counted from 1", "got '0/4'")),
    (["--shard", "5/4"], ("argument --shard", "counted from 1", "got '5/4'")),
    (["--shard", "a/b"], ("argument --shard", "I/N", "got 'a/b'")),
    (["--shard", "1/9"], ("--shard 1/9", "has 5 utterances", "fewer than 9 shards")),
    (["--shard", "1/3", "--limit", "2"], ("has 2 utterances (after --limit)",)),
    (["--batch-size", "0"], ("argument --batch-size", "at least 1", "got '0'")),
])
def test_cer_bad_shard_or_batch_is_one_line_exit_2_and_writes_nothing(bundle, tmp_path, capsys, extra, words):
    m = _manifest(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    r = _main(capsys, "cer", "-m", bundle, "--manifest", m, "--report", tmp_path / "out" / "r.json", *extra)
    _one_line_exit_2(r, *words)
    assert r.stdout == "" and sorted(tmp_path.rglob("*")) == before


def test_cer_shard_needs_report(bundle, tmp_path, capsys):
    r = _main(capsys, "cer", "-m", bundle, "--manifest", _manifest(tmp_path), "--shard", "1/2")
    _one_line_exit_2(r, "--shard 1/2 needs --report")


# --- batches -----------------------------------------------------------------------------

def _batched(tag: str, sizes: list[int], die_on_call: int | None = None):
    def fn(batch):
        sizes.append(len(batch))
        if len(sizes) == die_on_call:
            raise KeyboardInterrupt
        return [f"{tag}{int(np.abs(s).sum()) % 97}" for s in batch]

    return fn


def test_batches_give_the_same_results_and_resume(tmp_path):
    entries = load_manifest(_manifest(tmp_path, 7))
    once = cer.run_utterances(entries, {"mlx": _fake("m"), "reference": _fake("r")}, progress=False)
    sizes: list[int] = []
    batched = cer.run_utterances(entries, {"mlx": _batched("m", sizes), "reference": _fake("r")}, batch_size=3,
                                 progress=False)
    assert sizes == [3, 3, 1] and batched["mlx"].keys() == once["mlx"].keys()
    assert [r["hyp"] for r in batched["mlx"].values()] == [r["hyp"] for r in once["mlx"].values()]
    part = tmp_path / "r.partial.jsonl"
    sizes = []
    with pytest.raises(KeyboardInterrupt):  # the second batch never returns
        cer.run_utterances(entries, {"mlx": _batched("m", sizes, die_on_call=2), "reference": _fake("r")},
                           batch_size=3, partial=part, header=HEADER, progress=False)
    assert len(part.read_text().splitlines()) == 1 + 2 * 3  # the first batch, both backends, item by item
    sizes = []
    resumed = cer.run_utterances(entries, {"mlx": _batched("m", sizes), "reference": _fake("r")}, batch_size=3,
                                 partial=part, header=HEADER, progress=False)
    assert sizes == [3, 1]  # only the 4 left
    assert _stable(cer.build_report(entries, resumed, {})) == _stable(cer.build_report(entries, once, {}))


def test_a_transcriber_giving_the_wrong_number_of_texts_is_a_bug(tmp_path):
    entries = load_manifest(_manifest(tmp_path, 2))
    with pytest.raises(RuntimeError, match="the mlx transcriber gave 1 texts for 2 utterances"):
        cer.run_utterances(entries, {"mlx": lambda batch: ["x"]}, batch_size=2, progress=False)


@pytest.fixture
def batch_spy(monkeypatch):
    """Transcriber.transcribe_batch, recording each batch's size."""
    from funasr_qwen4b.app.transcriber import Transcriber

    real, sizes = Transcriber.transcribe_batch, []

    def transcribe_batch(self, audios, *args, **kwargs):
        sizes.append(len(audios))
        return real(self, audios, *args, **kwargs)

    monkeypatch.setattr(Transcriber, "transcribe_batch", transcribe_batch)
    return sizes


def test_cer_batch_size_batches_mlx_only(bundle, tmp_path, capsys, batch_spy):
    m = _manifest(tmp_path)
    base = ["cer", "-m", bundle, "--manifest", m, "--no-progress"]
    assert _main(capsys, *base, "--report", tmp_path / "one.json").returncode == 0
    assert batch_spy == []
    r = _main(capsys, *base, "--report", tmp_path / "batched.json", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert batch_spy == [2, 2, 1]
    one, batched = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "batched.json"))
    assert _stable(batched) == _stable(one)


def test_reference_stays_one_at_a_time(bundle, caplog, batch_spy):
    from funasr_qwen4b.app.cli import cer as cer_cmd

    caplog.set_level("INFO")
    fn = cer_cmd.lazy_transcriber(Bundle.read(bundle), Backend.REFERENCE, batch_size=4)
    assert len(fn([np.zeros(1600, np.float32), np.zeros(1600, np.float32)])) == 2
    assert batch_spy == [] and "reference backend transcribes one utterance at a time (it is the oracle)" in caplog.text
