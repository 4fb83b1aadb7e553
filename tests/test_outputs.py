"""`transcribe` like whisper tools: output files in every format (written atomically, with
the user's umask), directories, stdin, other formats through ffmpeg, a bad file skipped;
and the Python API's inputs (paths, arrays, bytes, file-likes)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from funasr_qwen4b.app import outputs
from funasr_qwen4b.audio import AudioError, load_audio
from tests.conftest import CLIPS, DATASETS, HANG_S

ZH = CLIPS / "zh_open_hours.wav"
EN = DATASETS / "en_heldout" / "en_heldout_003.flac"

RESULT = {"text": "Hello there.World", "seconds": 3725.0, "segments": [
    {"id": 0, "start": 0.0, "end": 1.2344, "text": "Hello there.", "tokens": [1, 2]},
    {"id": 1, "start": 1.5, "end": 2.0, "text": "", "tokens": [], "no_speech": "no speech: silence"},
    {"id": 2, "start": 3661.5, "end": 3724.9996, "text": " World\tagain\n", "tokens": [3]}]}


def test_writers_hand_checked():
    assert outputs.to_srt(RESULT["segments"]) == ("1\n00:00:00,000 --> 00:00:01,234\nHello there.\n\n"
                                                  "2\n01:01:01,500 --> 01:02:05,000\nWorld\tagain\n\n")
    assert outputs.to_vtt(RESULT["segments"]) == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.234\nHello there.\n\n"
                                                  "01:01:01.500 --> 01:02:05.000\nWorld\tagain\n\n")
    assert outputs.render({**RESULT, "language": "en"}, "vtt") == ("WEBVTT\nLanguage: en\n\n00:00:00.000 --> "
                                                                  "00:00:01.234\nHello there.\n\n01:01:01.500 --> "
                                                                  "01:02:05.000\nWorld\tagain\n\n")
    assert outputs.render({**RESULT, "language": None}, "vtt") == outputs.to_vtt(RESULT["segments"])
    assert outputs.to_tsv(RESULT["segments"]) == \
        "start\tend\ttext\n0\t1234\tHello there.\n3661500\t3725000\tWorld again\n"
    assert outputs.to_txt(RESULT) == "Hello there.\nWorld\tagain\n"
    assert json.loads(outputs.render(RESULT, "json")) == RESULT
    with pytest.raises(ValueError, match="unknown output format 'docx'"):
        outputs.render(RESULT, "docx")


def test_files_are_atomic_and_follow_the_umask(tmp_path):
    (tmp_path / "a.srt").write_text("old")
    old = os.umask(0o027)
    try:
        paths = outputs.write_outputs(RESULT, tmp_path, "a", outputs.FORMATS)
    finally:
        os.umask(old)
    assert [p.name for p in paths] == ["a.txt", "a.srt", "a.vtt", "a.tsv", "a.json"]
    assert {oct(p.stat().st_mode & 0o777) for p in paths} == {oct(0o640)}
    assert (tmp_path / "a.srt").read_text() == outputs.to_srt(RESULT["segments"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary left


def srt_times(text: str) -> list[tuple[float, float]]:
    def sec(t):
        h, m, s = t.replace(",", ".").split(":")
        return 3600 * int(h) + 60 * int(m) + float(s)

    return [(sec(a), sec(b)) for a, b in re.findall(r"(\S+) --> (\S+)", text)]


def test_transcribe_directory_to_every_format_skipping_a_bad_file(demo_bundle, tmp_path, capsys):
    from funasr_qwen4b.app.cli import main

    audio = tmp_path / "in"
    audio.mkdir()
    shutil.copy(ZH, audio / "zh.wav")
    shutil.copy(EN, audio / "en.flac")
    (audio / "broken.wav").write_bytes(b"RIFF1234junk")
    (audio / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    code = main(["transcribe", str(audio), "-m", str(demo_bundle), "--output-dir", str(out), "--output-format", "all"])
    captured = capsys.readouterr()
    assert code == 1  # one input failed
    assert "broken.wav: cannot read audio" in captured.err and "2 of 3 transcribed; failed:" in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{f}" for s in ("zh", "en") for f in outputs.FORMATS)
    for stem, path in (("zh", ZH), ("en", EN)):
        result = json.loads((out / f"{stem}.json").read_text())
        assert result["audio"] == str(audio / path.with_stem(stem).name) and result["text"] in captured.out
        duration = load_audio(path).size / 16000
        times = srt_times((out / f"{stem}.srt").read_text())
        assert times and all(0 <= a < b <= duration for a, b in times)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(times, times[1:]))
        assert srt_times((out / f"{stem}.vtt").read_text()) == times
        assert (out / f"{stem}.txt").read_text().split() == result["text"].split()
    assert main(["transcribe", str(tmp_path / "empty-dir-missing"), "-m", str(demo_bundle)]) != 0


def test_stdin_and_formats_through_ffmpeg(demo_bundle, tmp_path):
    """`-` reads standard input; what libsndfile cannot read goes through ffmpeg when it is installed."""
    wav = ZH.read_bytes()
    r = subprocess.run([sys.executable, "-m", "funasr_qwen4b.app.cli", "transcribe", "-", "-m", str(demo_bundle),
                        "--ctc", "--output-format", "srt"], input=wav, capture_output=True, cwd=tmp_path, timeout=HANG_S)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "stdin.srt").read_text(encoding="utf-8").startswith("1\n00:00:00")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: its error is tested in test_missing_ffmpeg_is_one_line")
    m4a = tmp_path / "zh.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(ZH), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True)
    from funasr_qwen4b import Transcriber

    t = Transcriber.load(demo_bundle)
    assert t.transcribe(m4a)["text"] == t.transcribe(ZH)["text"] == t.transcribe(m4a.read_bytes())["text"]


def test_missing_ffmpeg_is_one_line(monkeypatch, tmp_path):
    from funasr_qwen4b import audio

    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    (tmp_path / "a.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    for source in (tmp_path / "a.m4a", (tmp_path / "a.m4a").read_bytes()):
        with pytest.raises(AudioError) as e:
            audio.read_audio(source)
        assert "need ffmpeg, which is not installed" in str(e.value) and "\n" not in str(e.value)


def test_api_takes_paths_arrays_bytes_and_file_likes(demo_bundle):
    from funasr_qwen4b import Transcriber
    from funasr_qwen4b.audio import read_audio

    x, rate = sf.read(EN, dtype="float32")
    samples = load_audio(EN)
    flac = EN.read_bytes()
    np.testing.assert_array_equal(read_audio(flac), samples)
    with open(EN, "rb") as f:
        np.testing.assert_array_equal(read_audio(f), samples)
    np.testing.assert_array_equal(read_audio(x, rate), samples)
    with pytest.raises(AudioError, match="binary mode"):
        read_audio(io.StringIO("text"))
    with pytest.raises(AudioError, match="omit sample_rate"):
        read_audio(flac, 16000)
    t = Transcriber.load(demo_bundle, language="en")
    want = t.transcribe(EN)
    assert want["text"] == "It is twelve fifteen in the morning."  # what was spoken (manifest)
    assert t.transcribe(io.BytesIO(flac))["text"] == t.transcribe(x, rate)["text"] == want["text"]
    s = want["segments"]
    assert len(s) == 1 and s[0]["text"] == want["text"] and 0 <= s[0]["start"] < s[0]["end"] <= want["seconds"]
    assert [w["word"] for w in s[0]["words"]] == want["text"].split()
    ctc = Transcriber.load(demo_bundle, ctc_only=True).transcribe(flac)
    assert ctc["text"].lower().split()[:3] == ["it", "is", "twelve"] and ctc["segments"][0]["words"]


def test_parity_plot_holds_each_tap_to_its_components_tier(tmp_path, monkeypatch):
    """A float32 encoder and adaptor beside an 8-bit LLM: encoder taps against the float32
    tier, LLM taps against bfloat16's; the title names every component's precision."""
    from funasr_qwen4b.parity import report as reports
    from funasr_qwen4b.parity.harness import ParityReport
    from funasr_qwen4b.parity.metrics import TOLERANCES, TapMetrics

    taps = ["frontend.fbank", "encoder.input", "ctc.ctc_lo", "adaptor.norm", "llm.inputs_embeds", "llm.logits"]
    meta = {"audio": "a.wav", "dtype": "bfloat16", "component_dtypes": {"sensevoice": "float32",
            "adaptor": "float16", "llm": "8bit"}, "tolerance": {"value": 5e-2, "tiers": TOLERANCES}}
    assert reports.tap_tiers(meta, taps) == [("float32", "float32", 1e-5)] * 3 + [("float16", "float16", 2e-2)] + \
        [("8bit", "bfloat16", 5e-2)] * 2
    drawn = {}
    import matplotlib.axes

    real_hlines = matplotlib.axes.Axes.hlines
    monkeypatch.setattr(matplotlib.axes.Axes, "hlines", lambda ax, y, a, b, **kw: drawn.setdefault(
        "lines", []).append((y, a, b, kw["label"])) or real_hlines(ax, y, a, b, **kw))
    real_title = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda ax, t, **kw: drawn.update(title=t) or
                        real_title(ax, t, **kw))
    rows = [TapMetrics(t, [1], 0.0, 1e-6 * (i + 1), 1.0, 5e-2, True) for i, t in enumerate(taps)]
    reports.plot(ParityReport(meta, taps, {"chained": rows}, {}), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn["lines"] == [(1e-5, -0.5, 2.5, "float32 tier: rel L2 ≤ 1e-05"),
                              (2e-2, 2.5, 3.5, "float16 tier: rel L2 ≤ 0.02"),
                              (5e-2, 3.5, 5.5, "bfloat16 tier: rel L2 ≤ 0.05")]
    assert "sensevoice float32, adaptor float16, llm 8bit" in drawn["title"]
