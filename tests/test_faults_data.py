"""Fault injection, the data side (issue 23): what the user gives, as the user gives it, through
the command line and the Python API, in tests/test_faults.py's style (its `Fault` and `check`:
the exit status, no traceback, one error line with its key words, inputs unchanged).

Classes: bounds (a sample rate no audio has, a length past the bound: refused before any sample
is read), absurd signals (float samples far outside [-1, 1], non-finite ones), very short clips,
weights that are not floats or not finite (refused at conversion; `verify` finds NaN in a
re-sealed bundle), and a resumed `cer` (only what is provably the same is reused).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from funasr_qwen4b import audio
from funasr_qwen4b.app.cli import main
from funasr_qwen4b.audio import AudioError, read_audio
from funasr_qwen4b.files import safetensors_header, sha256_file, sum64
from funasr_qwen4b.text import strip_tags
from tests import test_faults
from tests.test_faults import CLIP, HEADS, Fault, adaptor_pt, check, manifest, wav

ws = test_faults.ws  # the sweep's fixture: copies of the session's originals, to break


def _transcript(capsys, *argv) -> dict:
    """`transcribe ... --json`'s result, with what it said on stderr as "stderr"."""
    capsys.readouterr()
    assert main(["transcribe", *map(str, argv), "--json"]) == 0
    out = capsys.readouterr()
    return {**json.loads(out.out), "stderr": out.err}


# --- bounds: refused from the header, before any work ----------------------------------------

def bounds_16_hz_header(w):
    """130 KB of samples whose header says 16 Hz: 68 minutes a thousandfold upsampled, once."""
    f = w.tmp / "16hz.wav"
    sf.write(str(f), np.zeros(65000, dtype=np.int16), 16, subtype="PCM_16")
    return Fault(["transcribe", "--ctc", f, "-m", w.bundle], words=(str(f), "sample rate 16 Hz",
                                                                      "outside 1000-384000 Hz"), inputs=(f,))


def bounds_rate_too_high(w):
    f = w.tmp / "fast.wav"
    sf.write(str(f), np.zeros(4000, dtype=np.int16), 1_000_000, subtype="PCM_16")
    return Fault(["transcribe", "--ctc", f, "-m", w.bundle], words=(str(f), "sample rate 1000000 Hz", "outside"),
                 inputs=(f,))


def bounds_rate_in_a_cer_manifest(w):
    f = w.tmp / "16hz.wav"
    sf.write(str(f), np.zeros(65000, dtype=np.int16), 16, subtype="PCM_16")
    m = manifest(w.tmp / "m.jsonl", [{"id": "b", "audio": str(f), "text": "时间"},
                                     {"id": "a", "audio": str(CLIP), "text": "开放"}])
    return Fault(["cer", "-m", w.bundle, "--manifest", m, "--no-progress"],
                 words=(f"{m} line 1 (id 'b')", "sample rate 16 Hz"), inputs=(f, m))


BOUNDS = [bounds_16_hz_header, bounds_rate_too_high, bounds_rate_in_a_cer_manifest]


@pytest.mark.parametrize("case", BOUNDS, ids=lambda f: f.__name__)
def test_bounds(case, ws, capsys, monkeypatch):
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("samples were read"))
    check(case(ws), capsys)


def test_bounds_api_sample_rate_and_length(bundle):
    from funasr_qwen4b.app.transcriber import Transcriber

    t = Transcriber.load(bundle, ctc_only=True)
    with pytest.raises(AudioError, match="audio array: sample rate 16 Hz is outside 1000-384000 Hz"):
        t.transcribe(np.zeros(65000, dtype=np.float32), sample_rate=16)
    with pytest.raises(AudioError, match=r"audio array is 14400.1 s long, over the bound of 14400 s"):
        # a view of one zero: the length is judged before any sample is converted or copied
        t.transcribe(np.broadcast_to(np.float32(0), (14400 * 16000 + 1600,)), sample_rate=16000)


FAKE_FFMPEG = """#!{python}
import sys
args = sys.argv[1:]
open({log!r}, "a").write(" ".join(args) + "\\n")
seconds = float(args[args.index("-t") + 1]) if "-t" in args else 100.0
sys.stdout.buffer.write(b"\\0" * (4 * int(16000 * seconds)))  # f32le silence, as long as allowed
"""


def test_bounds_ffmpeg_stops_one_second_past_the_bound(tmp_path, monkeypatch):
    """What libsndfile cannot read goes through ffmpeg, which is told to stop 1 s past the bound: a
    container's length is not to be trusted, the decoded one is."""
    log = tmp_path / "ffmpeg.log"
    exe = tmp_path / "bin" / "ffmpeg"
    exe.parent.mkdir()
    exe.write_text(FAKE_FFMPEG.format(python=sys.executable, log=str(log)))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    m4a = tmp_path / "talk.m4a"
    m4a.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(64))
    with pytest.raises(AudioError) as e:
        read_audio(m4a, max_seconds=2)
    assert str(e.value).startswith(f"audio {m4a} is 3.0 s long, over the bound of 2 s")
    assert "-t 3.000" in log.read_text()
    assert read_audio(m4a, max_seconds=None).size == 100 * 16000  # no bound: decoded whole
    with pytest.raises(AudioError, match="audio bytes is 6.0 s long, over the bound of 5 s"):
        read_audio(m4a.read_bytes(), max_seconds=5)  # an upload: the same bound
    assert "-t 6.000" in log.read_text()


# --- absurd signals: never a confident transcript ----------------------------------------------

def _float_wav(path: Path, x: np.ndarray) -> Path:
    sf.write(str(path), x.astype(np.float32), 16000, subtype="FLOAT")
    return path


def test_signal_scaled_by_1e30_is_transcribed_at_peak_1_with_a_warning(demo_bundle, tmp_path, capsys):
    """A float WAV of speech scaled by 1e30 (once: "!", exit 0) gives what the same speech at
    full scale gives, and says what it did."""
    x = sf.read(str(CLIP), dtype="float32")[0]
    huge = (x.astype(np.float64) * 1e30).astype(np.float32)
    scaled = _float_wav(tmp_path / "huge.wav", huge)
    sane = _float_wav(tmp_path / "sane.wav", huge / np.float32(np.abs(huge).max()))  # what the warning says it did
    r = _transcript(capsys, scaled, "-m", demo_bundle)
    assert f"audio {scaled} peaks at {np.abs(huge).max():.3g}, far outside [-1, 1]" in r["stderr"]
    assert "scaled to peak 1" in r["stderr"]
    expected = _transcript(capsys, sane, "-m", demo_bundle)
    assert r["text"] == expected["text"] and r["text"] not in ("", "!")
    assert r["text"] == _transcript(capsys, CLIP, "-m", demo_bundle)["text"]  # the clip as recorded


def test_signal_api_far_outside_full_scale(bundle, caplog):
    from funasr_qwen4b.app.transcriber import Transcriber

    t = Transcriber.load(bundle, ctc_only=True)
    x = audio.load_audio(CLIP)
    for scale in (32768.0, 1e30):  # int16 values stored as float; an absurd gain
        y = (x.astype(np.float64) * scale).astype(np.float32)
        assert t.transcribe(y, sample_rate=16000)["text"] == t.transcribe(y / np.abs(y).max(), sample_rate=16000)["text"]
    assert f"audio array peaks at {1e30 * np.abs(x).max():.3g}, far outside [-1, 1]" in caplog.text


def signal_nan_float_wav(w):
    x = sf.read(str(CLIP), dtype="float32")[0]
    x[1000] = np.nan
    f = _float_wav(w.tmp / "nan.wav", x)
    return Fault(["transcribe", "--ctc", f, "-m", w.bundle], words=(str(f), "NaN or infinite samples"), inputs=(f,))


def signal_inf_float_wav_in_cer(w):
    x = sf.read(str(CLIP), dtype="float32")[0]
    x[5] = -np.inf
    f = _float_wav(w.tmp / "inf.wav", x)
    m = manifest(w.tmp / "m.jsonl", [{"id": "a", "audio": str(f), "text": "开放"}])
    return Fault(["cer", "-m", w.bundle, "--manifest", m, "--no-progress"],
                 words=(f"{m} line 1 (id 'a')", "NaN or infinite samples"), inputs=(f, m))


@pytest.mark.parametrize("case", [signal_nan_float_wav, signal_inf_float_wav_in_cer], ids=lambda f: f.__name__)
def test_signal_refused(case, ws, capsys):
    check(case(ws), capsys)


@pytest.mark.parametrize("peak", [1.0, 1.9])
def test_signal_hot_float_wav_is_read_as_it_is(peak, tmp_path, caplog):
    x = sf.read(str(CLIP), dtype="float32")[0]
    y = x * np.float32(peak / np.abs(x).max())
    f = _float_wav(tmp_path / "hot.wav", y)
    np.testing.assert_array_equal(audio.load_audio(f), y)
    assert "peaks at" not in caplog.text


# --- very short clips: empty text and the reason, exit 0; never the frontend -----------------------

@pytest.mark.parametrize("seconds", [1 / 16000, 0.01, 0.024, 0.099])
def test_short_clip_is_empty_text_with_the_reason(seconds, bundle, tmp_path, capsys):
    """Under one 25 ms frame the frontends would refuse; under 100 ms the no-speech rule answers first."""
    f = wav(tmp_path / "short.wav", seconds)
    r = _transcript(capsys, "--ctc", f, "-m", bundle)
    ms = round(1000 * int(16000 * seconds) / 16000)
    assert r["text"] == "" and r["no_speech"] == f"no speech: {ms} ms is shorter than 100 ms"


# --- weights: floats, finite --------------------------------------------------------------------------

def weights_int32_adaptor(w):
    pt = adaptor_pt(w.tmp / "a.pt", edit=lambda sd: sd.update({k: v.to(torch.int32) for k, v in sd.items()}))
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS],
                 words=(str(pt), "holds int32 values", "not floating-point weights"), out=w.tmp / "out", inputs=(pt,))


def weights_int_sensevoice(w):
    src = w.sv()
    sd = torch.load(src / "model.pt", weights_only=True)
    sd["encoder.encoders0.0.self_attn.linear_out.weight"] = sd["encoder.encoders0.0.self_attn.linear_out.weight"].to(
        torch.int64)
    torch.save(sd, src / "model.pt")
    return Fault(["convert", "sensevoice", src, "-o", w.tmp / "out"],
                 words=(str(src / "model.pt"), "encoder.encoders0.0.self_attn.linear_out.weight", "int64"),
                 out=w.tmp / "out", inputs=(src,))


def weights_int_llm(w):
    q = w.qwen()
    shard = min(q.glob("*.safetensors"))
    sd = load_file(str(shard))
    name = min(k for k, v in sd.items() if v.ndim == 2)
    sd[name] = sd[name].to(torch.int32)
    save_file(sd, str(shard), metadata={"format": "pt"})
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=(str(shard), name, "I32", "not floating-point"),
                 out=w.tmp / "out", inputs=(q,))


def weights_nan_llm(w):
    """NaN in the source LLM: refused before mlx-lm converts anything, naming the file and the tensor."""
    q = w.qwen()
    shard = max(q.glob("*.safetensors"))
    sd = load_file(str(shard))
    name = max(k for k, v in sd.items() if v.ndim == 2)
    sd[name][1, 2] = float("nan")
    save_file(sd, str(shard), metadata={"format": "pt"})
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=(str(shard), name, "NaN or infinite"),
                 out=w.tmp / "out", inputs=(q,))


def weights_nan_am_mvn(w):
    src = w.sv()
    mvn = src / "am.mvn"
    lines = mvn.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("<Rescale>")) + 1
    parts = lines[i].split()
    parts[parts.index("[") + 1] = "nan"  # one scale of the features
    lines[i] = " ".join(parts)
    mvn.write_text("\n".join(lines) + "\n")
    return Fault(["convert", "sensevoice", src, "-o", w.tmp / "out"], words=(str(mvn), "NaN or infinite"),
                 out=w.tmp / "out", inputs=(src,))


WEIGHTS = [weights_int32_adaptor, weights_int_sensevoice, weights_int_llm, weights_nan_llm, weights_nan_am_mvn]


@pytest.mark.parametrize("case", WEIGHTS, ids=lambda f: f.__name__)
def test_weights_refused_at_conversion(case, ws, capsys):
    check(case(ws), capsys)


def _reseal(bundle: Path, component: str, rel: str) -> None:
    """Record the file's bytes in bundle.json again, as one who edits a bundle on purpose would."""
    meta = json.loads((bundle / "bundle.json").read_text())
    f = bundle / component / rel
    meta["components"][component]["files"][rel] = {"bytes": f.stat().st_size, "sha256": sha256_file(f),
                                                   "sum64": sum64(f)}
    (bundle / "bundle.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("component, value", [("adaptor", np.nan), ("llm", np.inf), ("sensevoice", -np.inf)])
def test_weights_verify_finds_nan_in_a_resealed_bundle(component, value, ws, capsys):
    b = ws.full()
    f = b / component / "model.safetensors"
    header = safetensors_header(f)
    name = min(k for k, t in header.items() if t["dtype"] == "F32" and k.endswith("weight"))
    start = 8 + int.from_bytes(f.read_bytes()[:8], "little") + header[name]["data_offsets"][0]
    with open(f, "r+b") as out:
        out.seek(start + 4 * 3)
        out.write(np.array([value], dtype="<f4").tobytes())
    _reseal(b, component, "model.safetensors")
    check(Fault(["verify", "-m", b], code=1, words=("is damaged", "reconvert"), inputs=(b,)), capsys)
    assert main(["verify", "-m", str(b)]) == 1
    out = capsys.readouterr().out
    assert f"{component}: DAMAGED" in out
    assert f"{component}/model.safetensors holds NaN or infinite weights in [{name}]" in out
    assert all(f"{c}: OK" in out for c in ("sensevoice", "adaptor", "llm") if c != component)


# --- a resumed cer: only what is provably the same ------------------------------------------------

def test_resume_cer_recomputes_changed_audio_and_counts_the_reused(bundle, tmp_path, capsys):
    clips = [shutil.copy(CLIP, tmp_path / f"c{i}.wav") for i in range(3)]
    m = manifest(tmp_path / "m.jsonl", [{"id": f"c{i}", "audio": f"c{i}.wav", "text": "开放时间"} for i in range(3)])
    report = tmp_path / "r.json"
    argv = ["cer", "-m", str(bundle), "--manifest", str(m), "--report", str(report), "--no-progress"]
    assert main(argv) == 0
    first = json.loads(report.read_text())
    assert first["resume"] == {"reused": 0, "computed": 3}
    x = sf.read(str(CLIP), dtype="int16")[0]
    sf.write(str(clips[1]), x[::-1].copy(), 16000, subtype="PCM_16")  # same path, other audio
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    rep = json.loads(report.read_text())
    assert rep["resume"] == {"reused": 2, "computed": 1}
    assert "the audio of 1 utterance(s) is not the one their stored results were computed on (c1)" in err
    assert "2 of 3 results reused" in err and "Resumed: 2 of 3 results reused" in (tmp_path / "r.md").read_text()
    by_id = {u["id"]: u for u in rep["utterances"]}
    fresh = {u["id"]: u for u in first["utterances"]}
    assert by_id["c0"]["mlx"] == fresh["c0"]["mlx"] and by_id["c2"]["mlx"] == fresh["c2"]["mlx"]
    assert by_id["c1"]["mlx"]["hyp"] == strip_tags(_transcript(capsys, "--ctc", clips[1], "-m", bundle)["text"])


def test_resume_cer_after_a_changed_setting_reuses_nothing(bundle, tmp_path, capsys):
    m = manifest(tmp_path / "m.jsonl", [{"id": f"c{i}", "audio": str(CLIP), "text": "开放时间"} for i in range(2)])
    report = tmp_path / "r.json"
    argv = ["cer", "-m", str(bundle), "--manifest", str(m), "--report", str(report), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--language", "en"]) == 0  # another query row: other transcripts
    err = capsys.readouterr().err
    assert "holds results of another run (query.language differ): none are reused" in err
    assert json.loads(report.read_text())["resume"] == {"reused": 0, "computed": 2}
    lines = [json.loads(x) for x in (tmp_path / "r.partial.jsonl").read_text().splitlines()]
    assert lines[0]["partial_header"]["query"]["language"] == "en" and len(lines) == 3  # this run's alone


# --- streams and pickles ------------------------------------------------------------------------

def _fifo_of(tmp_path: Path, data: bytes) -> tuple[Path, threading.Thread]:
    """A named pipe fed `data` by a thread; the write blocks until a reader opens the pipe."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return fifo, writer


@pytest.mark.parametrize("reader", [audio.load_audio, read_audio])
def test_stream_path_is_read_once_as_the_file_it_carries(reader, tmp_path):
    """A FIFO (what /dev/fd/N of a shell's <(...) is) holds the same audio as the file fed into it."""
    fifo, writer = _fifo_of(tmp_path, CLIP.read_bytes())
    got = reader(str(fifo))
    writer.join()
    np.testing.assert_array_equal(got, audio.load_audio(CLIP))


def test_stream_path_of_no_audio_names_it(tmp_path):
    fifo, writer = _fifo_of(tmp_path, b"not audio at all" * 64)
    with pytest.raises(AudioError, match=str(fifo)):
        read_audio(fifo)
    writer.join()


def test_pickle_that_calls_os_system_is_refused_unrun(ws, capsys):
    """torch words this refusal differently from a refused `open` ("unsupported GLOBAL posix.system
    whose module posix is blocked"): still a refusal, never "truncated", and never run."""
    pt, marker = ws.tmp / "system.pt", ws.tmp / "ran"
    torch.save({"state_dict": torch.load(adaptor_pt(ws.tmp / "a.pt"), weights_only=True),
                "hook": _System(f"touch {marker}")}, pt)
    check(Fault(["convert", "adaptor", pt, "-o", ws.tmp / "out", *HEADS],
                words=("refused without running it", "posix.system"), out=ws.tmp / "out", inputs=(pt,)), capsys)
    assert not marker.exists()


class _System:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))
