"""CER: normalisation and edit counts (funasr_qwen4b.text), manifests (funasr_qwen4b.manifest),
the resumable runner and report (parity/cer.py), the `cer` command, make_manifest."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from funasr_qwen4b import text
from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.config import Backend
from funasr_qwen4b.files import sha256_file
from funasr_qwen4b.manifest import Entry, ManifestError, load_manifest
from funasr_qwen4b.text import NORMALISATION, Counts, char_counts, word_counts
from funasr_qwen4b.parity import cer

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "datasets"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, DATASETS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- normalisation --------------------------------------------------------------

@pytest.mark.parametrize("raw, chars", [
    ("开放时间：早上九点至下午五点", "开放时间早上九点至下午五点"),  # full-width colon
    ("今天是三月十五日，星期五。“好”！《书》、（注）？", "今天是三月十五日星期五好书注"),  # CJK punctuation
    ("１２３ＡＢＣ，ｄｅｆ", "123abcdef"),  # full-width digits and letters
    ("我用 iPhone 15 Pro 拍的。", "我用iphone15pro拍的"),  # mixed zh/en
    ("<|zh|><|NEUTRAL|><|Speech|><|woitn|>开放时间", "开放时间"),  # SenseVoice tags
    ("  Hello,   World!  ", "helloworld"),
    ("<|en|>", ""),
])
def test_cer_text(raw, chars):
    assert text.cer_text(raw) == chars


def test_normalize_keeps_words_for_wer():
    assert text.normalize("<|en|>Don't STOP — it's 5 o'clock, well-known.") == "dont stop its 5 oclock well known"
    assert text.normalize("Ｈｅｌｌｏ\u3000ｗｏｒｌｄ") == "hello world"  # ideographic space → space


# --- edit counts --------------------------------------------------------------------

@pytest.mark.parametrize("ref, hyp, sub, dele, ins, n", [
    ("开放时间", "开放时间", 0, 0, 0, 4),
    ("开放时间", "开发时间", 1, 0, 0, 4),  # one substitution: 1/4
    ("开放时间", "开放时", 0, 1, 0, 4),  # one deletion
    ("开放时间", "开放时间啊啊", 0, 0, 2, 4),  # two insertions: 2/4
    ("今天天气晴朗", "今天天七晴", 1, 1, 0, 6),  # 2/6
    ("开放时间", "开放时间吗", 0, 0, 1, 4),
    ("abc", "", 0, 3, 0, 3),  # empty hypothesis: counted by hand, not by jiwer
])
def test_char_counts_hand_computed(ref, hyp, sub, dele, ins, n):
    c = char_counts(ref, hyp)
    assert (c.sub, c.dele, c.ins, c.ref) == (sub, dele, ins, n)
    assert c.rate == pytest.approx((sub + dele + ins) / n)


def test_punctuation_and_case_do_not_count():
    assert char_counts("开放时间：早上九点。", "开放时间早上九点").rate == 0.0
    assert word_counts("The weather, today!", "the WEATHER today").rate == 0.0


def test_wer_hand_computed():
    c = word_counts("the weather today is sunny", "the whether today sunny")
    assert (c.sub, c.dele, c.ins, c.ref) == (1, 1, 0, 5)  # whether/weather, -is
    assert c.rate == pytest.approx(2 / 5)
    c = word_counts("the weather today is sunny", "The weather today, is sunny and warm.")
    assert (c.sub, c.dele, c.ins, c.ref, c.rate) == (0, 0, 2, 5, pytest.approx(2 / 5))  # +and +warm


@pytest.mark.parametrize("counts, expected", [
    (lambda: char_counts("", ""), Counts(0, 0, 0, 0)),  # nothing against nothing
    (lambda: char_counts("。", "ab"), Counts(0, 0, 2, 0)),  # empty after normalisation: all insertions
    (lambda: char_counts("ab", "<|zh|>"), Counts(0, 2, 0, 2)),  # tags only: all deletions
    (lambda: word_counts("", "hello world"), Counts(0, 0, 2, 0)),
    (lambda: word_counts("hello world", "!"), Counts(0, 2, 0, 2)),
])
def test_empty_sides_are_counted_by_hand(counts, expected):
    c = counts()
    assert c == expected
    assert c.rate == (0.0 if expected.errors == 0 else 1.0 if expected.ref == 0 else expected.errors / expected.ref)


def test_counts_are_jiwers():
    rng = np.random.default_rng(0)
    alphabet = list("开放时间早上九点ab")
    for _ in range(50):
        r = "".join(rng.choice(alphabet, rng.integers(1, 12)))
        h = "".join(rng.choice(alphabet, rng.integers(1, 12)))
        c = char_counts(r, h)
        assert c.ref == len(r) and c.rate == pytest.approx(jiwer.cer(r, h))
    words = "the weather today is sunny and warm".split()
    for _ in range(20):
        r = " ".join(rng.choice(words, rng.integers(1, 8)))
        h = " ".join(rng.choice(words, rng.integers(1, 8)))
        w = word_counts(r, h)
        assert w.ref == len(r.split()) and w.rate == pytest.approx(jiwer.wer(r, h))


def test_corpus_cer_is_edits_over_reference_chars():
    entries = [Entry(1, "a", Path("a.wav"), "开放时间"), Entry(2, "b", Path("b.wav"), "早上九点至下午五点")]
    res = {"mlx": {"a": _row("a", "开发时间"), "b": _row("b", "早上九点至下午五点")},
           "reference": {"a": _row("a", "开发时间"), "b": _row("b", "早上九点下午五点")}}
    rep = cer.build_report(entries, res, {}, worst=1)
    assert rep["summary"]["mlx"]["cer"] == pytest.approx(1 / 13)
    assert rep["summary"]["reference"]["cer"] == pytest.approx(2 / 13)
    assert rep["summary"]["mlx"]["utterance_cer_mean"] == pytest.approx((1 / 4 + 0) / 2)
    # MLX against the reference transcript: 0 edits on a, 1 insertion on b, over 4 + 8 chars
    assert rep["mlx_vs_reference"]["cer"] == pytest.approx(1 / 12)
    assert rep["mlx_vs_reference"]["differing_ids"] == ["b"]
    assert rep["worst"] == ["a"]
    md = cer.to_markdown({**rep, "meta": {**rep["meta"], "manifest": "m.jsonl"}})
    assert "MLX vs reference transcript: CER 8.33%" in md and NORMALISATION in md
    assert rep["meta"]["scoring"].startswith("jiwer ")


def test_plot_is_titled_by_set_and_transcriber(tmp_path, monkeypatch):
    """Every set's manifest is test.jsonl: the title names the set's directory too."""
    import matplotlib.figure

    titles = []
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda fig, t, **kw: titles.append(t))
    entries = [Entry(1, "a", Path("a.wav"), "开放时间")]
    for name in ("zh_synth", "en_synth"):
        rep = cer.build_report(entries, {"mlx": {"a": _row("a", "开放时间")}},
                               {"manifest": f"datasets/{name}/test.jsonl", "transcriber": "llm"})
        cer.plot(rep, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert titles == ["zh_synth/test.jsonl: transcriber llm", "en_synth/test.jsonl: transcriber llm"]


def _row(uid, hyp):
    return {"id": uid, "hyp": hyp, "seconds": 0.0, "audio_s": 1.0}


# --- manifests ------------------------------------------------------------------------

def _wav(path: Path, seconds: float = 0.5, freq: float = 220.0) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, subtype="PCM_16")
    return path


def _manifest(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "m.jsonl"
    p.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    return p


GOOD = '{"id": "u1", "audio": "u1.wav", "text": "你好", "lang": "zh"}'


@pytest.mark.parametrize("bad, message", [
    ('{"id": "u2", "audio": "missing.wav", "text": "再见"}', "line 3: audio file not found"),
    ('{"id": "u2", "audio": "u1.wav", "text": "再见"', "line 3: not valid JSON"),
    ('{"id": "u2", "audio": "u1.wav", "text": "  "}', "line 3: empty text"),
    ('{"id": "u2", "audio": "u1.wav", "text": "。！"}', "line 3: text '。！' of id 'u2' has no characters left"),
    ('{"id": "u2", "text": "再见"}', "line 3: missing key 'audio'"),
    ('{"id": "u1", "audio": "u1.wav", "text": "再见"}', "line 3: duplicate id 'u1' (first on line 1)"),
    ('["u2", "u1.wav", "再见"]', "line 3: expected a JSON object"),
])
def test_manifest_errors_name_the_line(tmp_path, bad, message):
    _wav(tmp_path / "u1.wav")
    m = _manifest(tmp_path, [GOOD, "", bad])  # blank line 2 is skipped, not an error
    with pytest.raises(ManifestError, match="line") as e:
        load_manifest(m)
    assert str(m) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_manifest_counts_further_problems_and_resolves_paths(tmp_path):
    _wav(tmp_path / "u1.wav")
    m = _manifest(tmp_path, [GOOD, '{"id": "a"}', '{"id": "b"}', "{"])
    with pytest.raises(ManifestError, match=r"line 2: missing key 'audio', 'text' .*\(and 2 more bad lines\)"):
        load_manifest(m)
    abs_line = json.dumps({"id": "u2", "audio": str(tmp_path / "u1.wav"), "text": "再见"})
    entries = load_manifest(_manifest(tmp_path, [GOOD, abs_line]))
    assert [(e.id, e.audio, e.lang) for e in entries] == [("u1", tmp_path / "u1.wav", "zh"),
                                                          ("u2", tmp_path / "u1.wav", None)]
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.jsonl")


def test_committed_manifests_are_valid():
    total_bytes = 0
    for name in ("zh_synth", "en_synth"):
        entries = load_manifest(DATASETS / name / "test.jsonl")
        assert len(entries) >= 6
        for e in entries:
            info = sf.info(str(e.audio))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            total_bytes += e.audio.stat().st_size
    zh = load_manifest(DATASETS / "zh_synth" / "test.jsonl")
    assert any(e.text == "开放时间：早上九点至下午五点" for e in zh)
    assert max(sf.info(str(e.audio)).duration for e in zh) >= 60
    assert total_bytes < 4_000_000


# --- resume ---------------------------------------------------------------------------

class Killed(Exception):
    pass


def _fake(tag: str, die_after: int | None = None):
    """A transcriber of one utterance at a time (as a batch transcriber) that may die mid-run."""
    calls = {"n": 0}

    def fn(samples):
        calls["n"] += 1
        if die_after is not None and calls["n"] > die_after:
            raise Killed
        return f"{tag}{int(np.abs(samples).sum()) % 97}"

    return cer.one_at_a_time(fn)


def _entries(tmp_path, n=5):
    for i in range(n):
        _wav(tmp_path / f"u{i}.wav", 0.2 + 0.1 * i, 200 + 50 * i)
    return load_manifest(_manifest(tmp_path, [
        json.dumps({"id": f"u{i}", "audio": f"u{i}.wav", "text": f"第{i}句"}) for i in range(n)]))


def _stable(rep):
    """The report without its wall-clock times and what this run reused."""
    rep = copy.deepcopy(rep)
    rep.pop("timing")
    rep.pop("resume", None)
    return rep


@pytest.mark.parametrize("k", [0, 2, 4])
def test_resume_after_interruption_gives_the_same_report(tmp_path, k):
    entries = _entries(tmp_path)
    header = {"run": "x"}
    once = cer.run_utterances(entries, {"mlx": _fake("m"), "reference": _fake("r")},
                              partial=tmp_path / "once.partial.jsonl", header=header, progress=False)
    part = tmp_path / "r.partial.jsonl"
    with pytest.raises(Killed):  # mlx dies after k utterances, mid-run
        cer.run_utterances(entries, {"mlx": _fake("m", die_after=k), "reference": _fake("r")},
                           partial=part, header=header, progress=False)
    assert len(part.read_text().splitlines()) == 1 + 2 * k  # header + both backends of k utterances
    with open(part, "a") as f:
        f.write('{"id": "u9", "backe')  # killed mid-write: a truncated last line
    calls = []
    resumed = cer.run_utterances(entries, {"mlx": _fake("m"), "reference": lambda batch: calls.extend(batch) or
                                           _fake("r")(batch)}, partial=part, header=header, progress=False)
    assert len(calls) == len(entries) - k  # done ids skipped
    r1, r2 = (cer.build_report(entries, r, {"m": 1}) for r in (once, resumed))
    assert _stable(r1) == _stable(r2)
    assert r1["resume"] == {"reused": 0, "computed": 10} and r2["resume"] == {"reused": 2 * k, "computed": 10 - 2 * k}
    assert part.read_text().endswith("\n") and len(part.read_text().splitlines()) == 1 + 2 * len(entries)


def _counting(tag: str, calls: list):
    """_fake's transcriber, recording the ids of what it is given (by their samples' length)."""
    fake = _fake(tag)
    return lambda batch: calls.extend(s.size for s in batch) or fake(batch)


@pytest.mark.parametrize("change", ["bundle", "template", "query"])
def test_partial_of_another_run_reuses_nothing(tmp_path, caplog, change):
    """Another bundle, template or decoding setting (the run's header): every result computed again, and
    the partial file holds this run's results alone."""
    entries = _entries(tmp_path, 3)
    part = tmp_path / "r.partial.jsonl"
    header = {"bundle": "a", "template": "t", "query": {"language": "zh"}}
    cer.run_utterances(entries, {"mlx": _fake("m")}, partial=part, header=header, progress=False)
    calls: list = []
    new = {**header, change: {"language": "en"} if change == "query" else "b"}
    res = cer.run_utterances(entries, {"mlx": _counting("m", calls)}, partial=part, header=new, progress=False)
    assert len(calls) == 3 and not any(r["reused"] for r in res["mlx"].values())
    assert f"holds results of another run ({change + ('.language' if change == 'query' else '')} differ)" \
        in caplog.text
    lines = [json.loads(x) for x in part.read_text().splitlines()]
    assert lines[0] == {"partial_header": new} and len(lines) == 4
    assert cer.build_report(entries, res, {})["resume"] == {"reused": 0, "computed": 3}


def test_changed_audio_is_computed_again_and_the_rest_reused(tmp_path, caplog):
    """Same path, new content: that utterance alone is transcribed again; the report counts the reused."""
    entries = _entries(tmp_path, 4)
    part = tmp_path / "r.partial.jsonl"
    header = {"bundle": "a"}
    first = cer.run_utterances(entries, {"mlx": _fake("m"), "reference": _fake("r")}, partial=part, header=header,
                               progress=False)
    _wav(tmp_path / "u2.wav", 0.7, 900)  # u2's file now holds other audio
    calls: list = []
    caplog.set_level("INFO")
    res = cer.run_utterances(entries, {"mlx": _counting("m", calls), "reference": _counting("r", calls)},
                             partial=part, header=header, progress=False)
    assert calls == [int(16000 * 0.7)] * 2  # u2 alone, in both backends
    assert [i for i, r in res["mlx"].items() if not r["reused"]] == ["u2"]
    assert res["mlx"]["u2"]["hyp"] != first["mlx"]["u2"]["hyp"]  # what the new audio gives
    assert "the audio of 1 utterance(s) is not the one their stored results were computed on (u2)" in caplog.text
    assert "6 of 8 results reused" in caplog.text
    rep = cer.build_report(entries, res, {})
    assert rep["resume"] == {"reused": 6, "computed": 2}
    assert "Resumed: 6 of 8 results reused" in cer.to_markdown(rep)
    rows = [json.loads(x) for x in part.read_text().splitlines()[1:]]
    assert len(rows) == 8 and sorted((r["id"], r["backend"]) for r in rows) == sorted(
        (i, b) for i in ("u0", "u1", "u2", "u3") for b in ("mlx", "reference"))  # the stale pair replaced
    assert {r["audio_sha256"] for r in rows if r["id"] == "u2"} == {sha256_file(tmp_path / "u2.wav")}
    calls.clear()  # and a third run reuses everything
    cer.run_utterances(entries, {"mlx": _counting("m", calls)}, partial=part, header=header, progress=False)
    assert calls == []


def test_results_without_an_audio_hash_are_computed_again(tmp_path):
    """A partial file written before results carried their audio's sha256 proves nothing: recomputed."""
    entries = _entries(tmp_path, 2)
    part = tmp_path / "r.partial.jsonl"
    cer.run_utterances(entries, {"mlx": _fake("m")}, partial=part, header={"bundle": "a"}, progress=False)
    lines = [json.loads(x) for x in part.read_text().splitlines()]
    part.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "audio_sha256"}) + "\n" for x in lines))
    calls: list = []
    cer.run_utterances(entries, {"mlx": _counting("m", calls)}, partial=part, header={"bundle": "a"}, progress=False)
    assert len(calls) == 2


def test_a_file_that_is_no_partial_file_is_refused(tmp_path):
    entries = _entries(tmp_path, 1)
    part = tmp_path / "r.partial.jsonl"
    part.write_text('{"id": "u0"}\n')
    with pytest.raises(ValueError, match="is not a partial file of `cer`.*delete it"):
        cer.run_utterances(entries, {"mlx": _fake("m")}, partial=part, header={"bundle": "a"}, progress=False)
    assert part.read_text() == '{"id": "u0"}\n'


def test_progress_goes_to_stderr_and_can_be_off(tmp_path, capsys):
    entries = _entries(tmp_path, 3)
    cer.run_utterances(entries, {"mlx": _fake("m")}, progress=True)
    out = capsys.readouterr()
    assert "3/3" in out.err and out.out == ""
    cer.run_utterances(entries, {"mlx": _fake("m")}, progress=False)
    assert capsys.readouterr().err == ""


# --- the `cer` command on the tiny bundle ------------------------------------------------

def test_ctc_transcribers_load_lazily_and_strip_tags(bundle, sv_dir, clip, caplog):
    from funasr_qwen4b.app.cli import cer as cer_cmd

    b = Bundle.read(bundle)
    assert cer_cmd.transcriber_kind(b) == "ctc"
    caplog.set_level("INFO")
    for backend in Backend:
        fn = cer_cmd.lazy_transcriber(b, backend)
        assert "loading" not in caplog.text  # nothing is loaded before the first utterance
        [hyp] = fn([clip])
        assert isinstance(hyp, str) and "<|" not in hyp
        assert f"loading the {backend.value} backend" in caplog.text
        caplog.clear()


def test_llm_bundle_is_scored_on_llm_text_in_both_backends(full_bundle, tmp_path):
    """With adaptor and LLM in the bundle, CER scores the LLM's transcript."""
    from funasr_qwen4b.app.cli import cer as cer_cmd

    rep = cer_cmd.score(Bundle.read(full_bundle), DATASETS / "clips" / "clips.jsonl", tuple(Backend), limit=2,
                        progress=False)
    assert rep["meta"]["transcriber"] == "llm"
    assert rep["mlx_vs_reference"]["cer"] == 0.0 and rep["mlx_vs_reference"]["identical"] == 2


def _cli(*args):
    code = "import sys; from funasr_qwen4b.app.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def _main(capsys, *args):
    from funasr_qwen4b.app.cli import main

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_cer_both_backends_agree_and_resume(bundle, sv_dir, tmp_path, capsys):
    report = tmp_path / "reports" / "zh.json"
    args = ["cer", "-m", bundle, "--manifest", DATASETS / "zh_synth" / "test.jsonl", "--backend", "both",
            "--limit", "2", "--worst", "2", "--report", report]
    r = _main(capsys, *args)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    assert rep["meta"]["transcriber"] == "ctc" and rep["meta"]["utterances"] == 2
    assert rep["meta"]["normalisation"] == NORMALISATION
    assert rep["mlx_vs_reference"]["cer"] == 0.0
    assert rep["mlx_vs_reference"]["identical"] == 2
    assert rep["summary"]["mlx"]["cer"] == rep["summary"]["reference"]["cer"]
    assert "MLX vs reference transcript: CER 0.00%" in r.stdout
    assert "2/2" in r.stderr  # progress on stderr
    for suffix in (".md", ".png", ".partial.jsonl"):
        assert report.with_name("zh" + suffix).is_file()
    r2 = _main(capsys, *args)  # a rerun takes everything from the partial file, loads no backend
    assert r2.returncode == 0 and "4 of 4 results reused" in r2.stderr
    assert "loading" not in r2.stderr
    assert _stable(json.loads(report.read_text())) == _stable(rep)


def test_cer_english_gets_wer(bundle, sv_dir, tmp_path, capsys):
    r = _main(capsys, "cer", "-m", bundle, "--manifest", DATASETS / "en_synth" / "test.jsonl", "--limit", "1",
             "--report", tmp_path / "en.json", "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "en.json").read_text())
    assert "wer" in rep["summary"]["mlx"] and rep["mlx_vs_reference"] is None
    assert "en WER" in r.stdout


def test_cer_bad_manifest_is_one_line_exit_2(bundle, tmp_path):
    m = _manifest(tmp_path, [GOOD])
    r = _cli("cer", "-m", bundle, "--manifest", m)
    assert r.returncode == 2
    assert "line 1: audio file not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cer_parser_imports_neither_torch_nor_mlx():
    code = ("import sys; from funasr_qwen4b.app.cli import build_parser; "
            "build_parser().parse_args(['cer', '-m', 'b', '--manifest', 'm.jsonl', '--backend', 'both']); "
            "print(sorted(m for m in ('torch', 'mlx', 'mlx.core', 'funasr') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "[]", r.stderr


# --- make_manifest ------------------------------------------------------------------------

def test_make_manifest_aishell(tmp_path):
    mm = _load_script("make_manifest")
    base = tmp_path / "aishell" / "data_aishell"
    (base / "transcript").mkdir(parents=True)
    (base / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
        "BAC009S0764W0122 一二线 城市 虽然 也 处于 调整 中\n"
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n", encoding="utf-8")
    for split, uid in [("test", "BAC009S0764W0121"), ("test", "BAC009S0764W0122"), ("test", "BAC009S0764W0999"),
                       ("train", "BAC009S0002W0122")]:
        d = base / "wav" / split / uid[6:11]
        d.mkdir(parents=True, exist_ok=True)
        _wav(d / f"{uid}.wav")
    out = tmp_path / "out" / "aishell_test.jsonl"
    assert mm.main(["--aishell", str(tmp_path / "aishell"), "-o", str(out)]) == 0
    entries = load_manifest(out)  # what make_manifest writes, cer reads
    assert [(e.id, e.text, e.lang) for e in entries] == [
        ("BAC009S0764W0121", "甚至出现交易几乎停滞的情况", "zh"), ("BAC009S0764W0122", "一二线城市虽然也处于调整中", "zh")]
    assert not json.loads(out.read_text().splitlines()[0])["audio"].startswith("/")  # relative to the manifest
    assert mm.main(["--aishell", str(base), "--split", "train", "-o", str(tmp_path / "t.jsonl")]) == 0
    assert mm.main(["--aishell", str(base), "--split", "dev", "-o", str(tmp_path / "d.jsonl")]) == 2
    assert mm.main(["--aishell", str(tmp_path), "-o", str(tmp_path / "x.jsonl")]) == 2


def test_make_manifest_kaldi_pair(tmp_path, capsys):
    mm = _load_script("make_manifest")
    d = tmp_path / "data" / "test"
    d.mkdir(parents=True)
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav")
    (d / "wav.scp").write_text(f"utt_b b.wav\nutt_a {tmp_path / 'a.wav'}\nutt_c b.wav\n", encoding="utf-8")
    (d / "text").write_text("utt_a the weather today\nutt_b\tsunny with a breeze\nutt_d nothing\n", encoding="utf-8")
    out = tmp_path / "k.jsonl"
    assert mm.main(["--kaldi", str(d), "--wav-root", str(tmp_path), "--lang", "en", "-o", str(out)]) == 0
    entries = load_manifest(out)
    assert [(e.id, e.text, e.lang) for e in entries] == [("utt_a", "the weather today", "en"),
                                                         ("utt_b", "sunny with a breeze", "en")]
    assert "1 without text" in capsys.readouterr().err
    (d / "wav.scp").write_text("utt_a sox a.wav -t wav - |\n", encoding="utf-8")
    assert mm.main(["--wav-scp", str(d / "wav.scp"), "--text", str(d / "text"), "-o", str(out)]) == 2
    assert "line 1" in capsys.readouterr().err
    (d / "wav.scp").write_text("utt_a a.wav\nutt_a a.wav\n", encoding="utf-8")
    assert mm.main(["--kaldi", str(d), "--wav-root", str(tmp_path), "-o", str(out)]) == 2
    assert "line 2: duplicate id 'utt_a'" in capsys.readouterr().err
    (d / "wav.scp").write_text("utt_a missing.wav\n", encoding="utf-8")
    assert mm.main(["--kaldi", str(d), "--wav-root", str(tmp_path), "-o", str(out)]) == 2
    assert "line 1: audio file not found" in capsys.readouterr().err
    assert mm.main(["--wav-scp", str(d / "wav.scp"), "-o", str(out)]) == 2

