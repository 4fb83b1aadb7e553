"""The server as OpenAI's official client uses it: word times in verbose_json, uploads in every
container the command line reads (M4A, MP4, WebM through ffmpeg, with the same limits and
errors), OpenAI's model names, segment statistics that are computed or left out, and
`include=logprobs` answered with the LLM's token log-probabilities (refused by name where there
are none).

One live server on the demonstration bundle answers every call; each answer is compared with
the Transcriber reading the same file directly, as `transcribe` does.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import zlib

import numpy as np
import pytest
import soundfile as sf

openai = pytest.importorskip("openai")

from funasr_qwen4b.app.server import CTC_MODEL, LLM_MODEL, NANO_MODEL  # noqa: E402
from funasr_qwen4b.app.server.slots import ALIASES  # noqa: E402
from tests.conftest import HANG_S  # noqa: E402
from tests.test_server import EN, LONG, ZH, LiveServer, _error, httpx  # noqa: E402


@pytest.fixture(scope="module")
def server(demo_bundle):
    with LiveServer(demo_bundle, max_audio_seconds=30, idle_unload=0) as s:
        yield s


@pytest.fixture(scope="module")
def direct(demo_bundle):
    from funasr_qwen4b.app.transcriber import Transcriber

    return Transcriber.load(demo_bundle)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """The English clip as M4A (AAC), MP4 (AAC beside a video stream, as a phone records) and
    WebM (Opus, as a browser's MediaRecorder writes), by ffmpeg; and the 63 s clip as M4A."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: without it only libsndfile's formats are read (test_server)")
    out = tmp_path_factory.mktemp("encoded")
    video = ["-f", "lavfi", "-i", "color=c=black:s=32x32:r=10", "-map", "1:v", "-map", "0:a", "-c:v", "mpeg4",
             "-shortest"]
    specs = {"en.m4a": (EN, ["-c:a", "aac", "-b:a", "128k"]), "en.mp4": (EN, [*video, "-c:a", "aac", "-b:a", "128k"]),
             "en.webm": (EN, ["-c:a", "libopus", "-b:a", "96k"]), "long.m4a": (LONG, ["-c:a", "aac", "-b:a", "32k"])}
    for name, (src, args) in specs.items():
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), *args, str(out / name)]
        subprocess.run(cmd, check=True, timeout=HANG_S)
    return out


def test_word_times_in_verbose_json(server, direct, demo_bundle):
    """timestamp_granularities=["word"]: OpenAI's `words`, each word of the text with its start and
    end, as the Transcriber's segments hold them (SenseVoice's CTC alignment); segments as always."""
    from funasr_qwen4b.app.transcriber import Transcriber

    client = server.client()
    for path, joiner in ((EN, " "), (ZH, "")):
        want = direct.transcribe(path)
        with open(path, "rb") as f:
            r = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json",
                                                   timestamp_granularities=["word", "segment"])
        words = [(w.word, w.start, w.end) for w in r.words]
        assert words == [(w["word"], w["start"], w["end"]) for s in want["segments"] for w in s["words"]]
        assert joiner.join(w for w, _, _ in words) == r.text == want["text"] and len(words) >= 5
        ends = [t for _, a, b in words for t in (a, b)]
        assert ends == sorted(ends) and 0 <= ends[0] and ends[-1] <= r.duration  # in order, inside the audio
        assert [(s.start, s.end, s.text) for s in r.segments] == [(s["start"], s["end"], s["text"])
                                                                  for s in want["segments"]]
    # sensevoice-small's own transcript is timed too; without "word", no words
    ctc = Transcriber.load(demo_bundle, ctc_only=True).transcribe(EN)
    with open(EN, "rb") as f:
        r = client.audio.transcriptions.create(file=f, model=CTC_MODEL, response_format="verbose_json",
                                               timestamp_granularities=["word"])
    assert [w.word for w in r.words] == [w["word"] for s in ctc["segments"] for w in s["words"]] == r.text.split()
    with open(EN, "rb") as f:
        r = client.audio.transcriptions.create(file=f, model=LLM_MODEL, response_format="verbose_json")
    assert r.words is None and len(r.segments) == 1


def test_word_times_need_a_ctc_head():
    """Fun-ASR-Nano has no CTC head to align with: its verbose_json has no `words`, the request is not refused."""
    from starlette.datastructures import FormData

    from funasr_qwen4b.app.server.requests import _word_times

    form = FormData([("timestamp_granularities[]", "word")])
    assert _word_times(form, "verbose_json", "transcribe", LLM_MODEL)
    assert not _word_times(form, "verbose_json", "transcribe", NANO_MODEL)


def test_every_container_the_command_line_reads(server, direct, encoded, tmp_path, monkeypatch):
    """M4A, MP4 (with a video stream) and WebM uploads answer as `transcribe` reads the same file (through
    ffmpeg), and each temporary copy is gone once read, a refused one too."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the server's copies go
    wav = direct.transcribe(EN)["text"]
    client = server.client()
    for name in ("en.m4a", "en.mp4", "en.webm"):
        path = encoded / name
        want = direct.transcribe(path)
        with open(path, "rb") as f:
            r = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json",
                                                   timestamp_granularities=["word"])
        assert r.text == want["text"] == wav, name  # lossy at these rates, and still the WAV's words
        assert r.duration == pytest.approx(want["seconds"]) and len(r.words) == len(wav.split())
    # the same limits and errors as a WAV's
    err = _error(server.post(audio=encoded / "long.m4a", name="long.m4a", model=CTC_MODEL), 400, "audio_too_long",
                 "file")
    assert err["message"] == "audio 'long.m4a' is over 30 s long; this server accepts at most 30 s (--max-audio-seconds)"
    cut = (encoded / "en.m4a").read_bytes()
    err = _error(server.post(audio=cut[: len(cut) // 2], name="cut.m4a", model=CTC_MODEL), 400, "invalid_audio", "file")
    assert err["message"].startswith("cannot read audio 'cut.m4a': ffmpeg: ") and str(tmp_path) not in err["message"]
    assert list(tmp_path.iterdir()) == []
    # a server without ffmpeg says what it reads, in one line
    monkeypatch.setenv("PATH", str(tmp_path))
    err = _error(server.post(audio=encoded / "en.webm", name="en.webm", model=CTC_MODEL), 400, "invalid_audio", "file")
    assert "'en.webm'" in err["message"] and "need ffmpeg, which is not installed" in err["message"]
    assert list(tmp_path.iterdir()) == []


def test_openai_model_names(server, direct):
    """whisper-1 (what OpenAI's clients send by default) and the gpt-4o transcription models answer as
    the default model; an unknown name is a 404 that lists the ids and the names."""
    want = direct.transcribe(EN)["text"]
    for model in ALIASES:
        with open(EN, "rb") as f:
            assert server.client().audio.transcriptions.create(file=f, model=model).text == want, model
    r = server.post(audio=EN, model="gpt-4o-transcribe", response_format="verbose_json").json()
    assert r["model"] == LLM_MODEL
    with pytest.raises(openai.NotFoundError) as e:
        server.client().audio.transcriptions.create(file=("a.wav", EN.read_bytes()), model="whisper-2")
    assert e.value.code == "model_not_found" and e.value.param == "model"
    assert all(m in e.value.message for m in (LLM_MODEL, CTC_MODEL, *ALIASES))


def test_segment_statistics_are_computed_or_left_out(server, direct):
    """No constant placeholders: no_speech_prob is the no-speech rule's decision (1 for silence, 0 for
    speech), compression_ratio Whisper's zlib ratio of the segment's text, temperature 0 (greedy);
    avg_logprob the mean of the segment's token log-probabilities, as the Transcriber gives them, and
    left out where there are none (a silent piece, sensevoice-small's CTC transcript)."""
    speech = server.post(audio=EN, response_format="verbose_json").json()["segments"]
    silence = io.BytesIO()
    sf.write(silence, np.zeros(16000, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    quiet = server.post(audio=silence.getvalue(), response_format="verbose_json").json()["segments"]
    ctc = server.post(audio=EN, response_format="verbose_json", model=CTC_MODEL).json()["segments"]
    assert len(speech) == 1 and len(quiet) == 1 and quiet[0]["text"] == "" and speech[0]["text"] and ctc[0]["text"]
    for seg, no_speech in ((speech[0], 0.0), (quiet[0], 1.0), (ctc[0], 0.0)):
        text = seg["text"].encode()
        assert seg["no_speech_prob"] == no_speech and seg["temperature"] == 0.0
        assert seg["compression_ratio"] == len(text) / len(zlib.compress(text))
    (want,) = direct.transcribe(EN)["segments"]
    assert len(want["logprobs"]) == len(want["tokens"]) == len(speech[0]["tokens"]) >= 5
    assert speech[0]["avg_logprob"] == pytest.approx(np.mean(want["logprobs"]), abs=1e-4)
    assert -5 < speech[0]["avg_logprob"] < 0  # the demonstration model hears its held-out clip well
    assert "avg_logprob" not in quiet[0] and "avg_logprob" not in ctc[0]


def test_token_logprobs_with_the_openai_client(server, direct):
    """include=["logprobs"]: OpenAI's `logprobs`, each token the LLM wrote with its log-probability
    (the Transcriber's) and its bytes, which together spell the text, in json (the client's
    Transcription), verbose_json and the stream's final event."""
    want = direct.transcribe(ZH)
    (seg,) = want["segments"]
    client = server.client()
    with open(ZH, "rb") as f:
        r = client.audio.transcriptions.create(file=f, model="whisper-1", include=["logprobs"])
    assert r.text == want["text"] and len(r.logprobs) == len(seg["tokens"]) >= 5
    assert [lp.logprob for lp in r.logprobs] == pytest.approx(seg["logprobs"], abs=1e-4)
    assert all(lp.logprob <= 0 for lp in r.logprobs)
    spelled = bytes(int(b) for lp in r.logprobs for b in lp.bytes)
    assert spelled.decode().strip() == r.text
    for lp in r.logprobs:  # a token's text is its bytes (U+FFFD for a character split across tokens)
        assert lp.token == bytes(int(b) for b in lp.bytes).decode("utf-8", errors="replace")
    with open(ZH, "rb") as f:
        verbose = client.audio.transcriptions.create(file=f, model=LLM_MODEL, response_format="verbose_json",
                                                     include=["logprobs"])
    assert verbose.model_extra["logprobs"] == [lp.model_dump() for lp in r.logprobs]
    with open(ZH, "rb") as f:
        *_, done = client.audio.transcriptions.create(file=f, model=LLM_MODEL, stream=True, include=["logprobs"])
    assert done.type == "transcript.text.done" and done.text == r.text
    assert [lp.model_dump() for lp in done.logprobs] == verbose.model_extra["logprobs"]
    assert "logprobs" not in server.post(audio=ZH).json()  # only when asked for


def test_refusals_are_openai_errors(server):
    """include=logprobs is refused by name where there are none (never answered without them), and
    outside json and verbose_json; word times only where they can be."""
    with pytest.raises(openai.BadRequestError) as e:
        server.client().audio.transcriptions.create(file=("a.wav", EN.read_bytes()), model=CTC_MODEL,
                                                    include=["logprobs"])
    assert e.value.code == "unsupported_include" and e.value.param == "include" and "CTC head" in e.value.message
    r = httpx.post(server.url + "/v1/audio/translations", files={"file": ("a.wav", ZH.read_bytes())},
                   data={"include[]": "logprobs"}, timeout=HANG_S)
    assert "translation" in _error(r, 400, "unsupported_include", "include")["message"]
    for fields, param in (({"include[]": "everything"}, "include"),
                          ({"include[]": "logprobs", "response_format": "srt"}, "include"),
                          ({"timestamp_granularities[]": "char", "response_format": "verbose_json"},
                           "timestamp_granularities"),
                          ({"timestamp_granularities[]": "word"}, "timestamp_granularities")):  # json: no words
        _error(server.post(audio=EN, **fields), 400, "invalid_value", param)
    r = httpx.post(server.url + "/v1/audio/translations", files={"file": ("a.wav", ZH.read_bytes())},
                   data={"response_format": "verbose_json", "timestamp_granularities[]": "word"}, timeout=HANG_S)
    assert "not aligned" in _error(r, 400, "invalid_value", "timestamp_granularities")["message"]


def test_segmentation_settings_reach_the_models(demo_bundle, capsys):
    """serve --vad and --max-segment-seconds (ServerConfig's vad and max_segment_seconds) cut the audio
    into utterances as the Transcriber given them does; what no bundle can do is refused at the start."""
    from funasr_qwen4b.app.cli import main
    from funasr_qwen4b.app.server import ServerConfig
    from funasr_qwen4b.app.transcriber import Transcriber

    want = Transcriber.load(demo_bundle, vad="energy", max_segment_seconds=1.5).transcribe(ZH)["segments"]
    assert len(want) > 1 and len(Transcriber.load(demo_bundle).transcribe(ZH)["segments"]) == 1  # the setting shows
    with LiveServer(demo_bundle, vad="energy", max_segment_seconds=1.5, idle_unload=0) as s:
        got = s.post(audio=ZH, response_format="verbose_json", **{"timestamp_granularities[]": "word"}).json()
    assert [(g["start"], g["end"], g["text"]) for g in got["segments"]] == [(w["start"], w["end"], w["text"])
                                                                             for w in want]
    # each segment's tokens carry their own log-probabilities, its avg_logprob their mean
    assert all(len(w["logprobs"]) == len(w["tokens"]) == len(g["tokens"]) for g, w in zip(got["segments"], want))
    assert [g.get("avg_logprob") for g in got["segments"]] == pytest.approx(
        [np.mean(w["logprobs"]) if w["logprobs"] else None for w in want], abs=1e-4)
    assert [w["word"] for w in got["words"]] == [w["word"] for seg in want for w in seg["words"]]
    with pytest.raises(ValueError, match="vad must be one of"):
        ServerConfig(str(demo_bundle), vad="loud")
    assert main(["serve", "-m", str(demo_bundle), "--vad", "fsmn"]) == 2
    assert "has no vad component" in capsys.readouterr().err
    assert main(["serve", "-m", str(demo_bundle), "--max-segment-seconds", "0.5"]) == 2
    assert "--max-segment-seconds: expected a finite number of at least 1" in capsys.readouterr().err
