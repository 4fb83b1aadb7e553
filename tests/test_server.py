"""The OpenAI-compatible server: a live uvicorn on loopback, the official
`openai` client, raw HTTP for every fault, concurrency, disconnects, memory.

The tiny models' text is noise (random weights): every answer is compared
with what the Transcriber (or SenseVoice's CTC head) gives for the same file
directly, never with the reference transcript.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from funasr_qwen4b.audio import load_audio  # noqa: E402
from funasr_qwen4b.app.server import CTC_MODEL, LLM_MODEL, MODELS, create_app, uvicorn_options  # noqa: E402
from tests.conftest import HANG_S, poll_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets"
EN = DATA / "en_synth" / "en_weather.wav"
ZH = DATA / "clips" / "zh_open_hours.wav"
LONG = DATA / "zh_synth" / "zh_long_pauses.wav"  # 63 s, 2 MB
# the committed files under 10 s, each once (clips/ repeats two of the synthetic sets' files)
SHORT = list({p.read_bytes(): p for d in ("clips", "en_synth", "zh_synth")
              for p in sorted((DATA / d).glob("*.wav")) if p != LONG}.values())


class LiveServer:
    """uvicorn in a background thread on 127.0.0.1, stopped (and its model threads joined) on exit.
    It serves on a socket bound here, to a port the OS picks, so no other process can take the port
    between choosing it and listening on it."""

    def __init__(self, bundle, **options):
        self.app = create_app([str(b) for b in bundle] if isinstance(bundle, list) else str(bundle), **options)
        self.manager = self.app.state.manager
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="error", lifespan="on", **uvicorn_options())  # as serve's
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        if poll_until(lambda: self.server.started or not self.thread.is_alive()) and self.server.started:
            return self
        self.__exit__()
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(HANG_S)
        self.socket.close()  # uvicorn closes it too; this covers a server that never started
        assert not self.thread.is_alive()

    def client(self):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=HANG_S)

    def post(self, path="/v1/audio/transcriptions", audio=None, name="a.wav", **fields):
        files = None if audio is None else {"file": (name, audio if isinstance(audio, bytes) else Path(audio).read_bytes())}
        return httpx.post(self.url + path, files=files, data=fields, timeout=HANG_S)

    @staticmethod
    def wait(cond):
        return poll_until(cond)


class HeldDecoding:
    """The LLM model's decoding (alone or a batch's rows), its tokens counted in `produced`. While
    `on` is set, each token, once passed on, is held: until the test sets `gone` (its client has
    left), then until the request's own `on_text` raises (the server has cancelled the request:
    decoding stops there). Only a hang guard (HANG_S) ends a hold otherwise: the token then goes on,
    and the test fails on the count. `decode` changes each call's decoding rules."""

    def __init__(self, pipe, decode):
        self.pipe, self.run, self.run_batch = pipe, pipe.run, pipe.run_batch
        self.produced, self.on, self.gone = [], threading.Event(), threading.Event()
        pipe.run = lambda samples, rec=None, on_text=None, *, query=None, decode=None, template=None: self.run(
            samples, rec, self._held(on_text), query=query, decode=self.decode(decode), template=template)
        pipe.run_batch = lambda batch, on_texts=None, *, query=None, decode=None, template=None: self.run_batch(
            batch, [self._held(f) for f in on_texts or [None] * len(batch)], query=query, decode=self.decode(decode),
            template=template)
        self.decode = lambda d: decode(d or pipe.setup.decode)

    def _held(self, on_text):
        if on_text is None:
            return None

        def held(delta):
            self.produced.append(delta)
            on_text(delta)
            if self.on.is_set():
                self.gone.wait(HANG_S)
                poll_until(lambda: on_text(delta))  # returns None until it raises Cancelled

        return held

    def restore(self):
        self.pipe.run, self.pipe.run_batch = self.run, self.run_batch


@pytest.fixture(scope="module")
def direct(full_bundle):
    from funasr_qwen4b.app.transcriber import Transcriber

    return Transcriber.load(full_bundle)


@pytest.fixture(scope="module")
def ctc_direct(full_bundle):
    """sensevoice-small's text for a file, as the Transcriber gives it (SenseVoice's CTC head)."""
    from funasr_qwen4b.app.transcriber import Transcriber

    model = Transcriber.load(full_bundle, ctc_only=True)
    return lambda path: model.transcribe(path)["text"]


@pytest.fixture(scope="module")
def server(full_bundle):
    with LiveServer(full_bundle, max_upload_mb=4, max_audio_seconds=30, idle_unload=0) as s:
        yield s


def _error(r, status, code=None, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == ("invalid_request_error" if status < 500 else "server_error")
    if code:
        assert err["code"] == code, err
    if param:
        assert err["param"] == param, err
    return err


def test_import_needs_neither_torch_nor_mlx():
    code = ("import sys, funasr_qwen4b.app.server as s, funasr_qwen4b.app.cli as c; s.create_app('nowhere'); "
            "c.build_parser().parse_args(['serve', '-m', 'x']); "
            "bad = [m for m in ('torch', 'mlx', 'mlx.core', 'mlx_lm', 'funasr') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=HANG_S)


def test_models_and_health(server):
    ids = [m.id for m in server.client().models.list()]
    assert ids == [LLM_MODEL, CTC_MODEL]
    assert server.client().models.retrieve(CTC_MODEL).id == CTC_MODEL
    h = httpx.get(server.url + "/health", timeout=HANG_S).json()
    assert h["status"] == "ok" and h["default_model"] == LLM_MODEL and set(h["models"]) == {LLM_MODEL, CTC_MODEL}


@pytest.mark.parametrize("fmt", ["json", "text", "verbose_json", "srt", "vtt"])
def test_openai_client_transcription(server, direct, fmt):
    want = direct.transcribe(EN)
    end = want["segments"][0]["end"]  # where the Transcriber puts the end of the speech (the clip is 2.368 s)
    assert len(want["segments"]) == 1 and 1.0 < end <= 2.368  # so SRT's and VTT's times are written by hand below
    ms = f"{int(end):02d}{round(end * 1000) % 1000:03d}"  # SS and mmm, by hand
    with open(EN, "rb") as f:
        r = server.client().audio.transcriptions.create(file=f, model=LLM_MODEL, response_format=fmt)
    if fmt == "json":
        assert r.text == want["text"]
    elif fmt == "text":
        assert r == want["text"]
    elif fmt == "verbose_json":
        assert r.text == want["text"] and r.duration == pytest.approx(want["seconds"])
        assert len(r.segments) == 1 and r.segments[0].start == 0 and r.segments[0].end == pytest.approx(end)
    elif fmt == "srt":
        assert r == f"1\n00:00:00,000 --> 00:00:{ms[:2]},{ms[2:]}\n{want['text']}\n\n"
    else:
        assert r == f"WEBVTT\n\n00:00:00.000 --> 00:00:{ms[:2]}.{ms[2:]}\n{want['text']}\n\n"


def test_sensevoice_small_and_language(server, ctc_direct, full_bundle):
    with open(ZH, "rb") as f:
        r = server.client().audio.transcriptions.create(file=f, model=CTC_MODEL)
    assert r.text == ctc_direct(ZH)
    # language selects SenseVoice's query row, per request, like a Transcriber loaded with it
    from funasr_qwen4b.app.transcriber import Transcriber
    from funasr_qwen4b.config import QueryConfig

    en = Transcriber.load(full_bundle, query=QueryConfig(language="en")).transcribe(ZH)["text"]
    with open(ZH, "rb") as f:
        assert server.client().audio.transcriptions.create(file=f, model=LLM_MODEL, language="en").text == en


def test_openai_client_translation(server, direct):
    want = direct.transcribe(ZH, translate=True)["translation"]
    with open(ZH, "rb") as f:
        assert server.client().audio.translations.create(file=f, model=LLM_MODEL).text == want
    r = server.post("/v1/audio/translations", ZH, model=LLM_MODEL, response_format="verbose_json").json()
    assert r["task"] == "translate" and r["language"] == "english" and r["text"] == want


def test_openai_client_streaming(server, direct):
    want = direct.transcribe(EN)["text"]
    with open(EN, "rb") as f:
        events = list(server.client().audio.transcriptions.create(file=f, model=LLM_MODEL, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2 and "".join(deltas) == want
    assert events[-1].type == "transcript.text.done" and events[-1].text == want
    # sensevoice-small streams too: its text in one delta, then done
    with httpx.stream("POST", server.url + "/v1/audio/transcriptions", files={"file": ("a.wav", ZH.read_bytes())},
                      data={"model": CTC_MODEL, "stream": "true"}, timeout=HANG_S) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1].startswith('data: {"type": "transcript.text.done"')


def test_faults(server, tmp_path):
    wav = EN.read_bytes()
    _error(server.post(audio=b"\0" * (4 * 2**20 + 1), model=CTC_MODEL), 413, "file_too_large")

    def chunks():  # no Content-Length: refused as the body passes the limit
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(80):
            yield b"\0" * 65536
    r = httpx.post(server.url + "/v1/audio/transcriptions", content=chunks(),
                   headers={"content-type": "multipart/form-data; boundary=x"}, timeout=HANG_S)
    _error(r, 413, "file_too_large")
    assert "upload limit of 4 MB" in _error(server.post(audio=b"\0" * (5 * 2**20)), 413)["message"]
    assert "62.9 s long" in _error(server.post(audio=LONG, model=CTC_MODEL), 400, "audio_too_long", "file")["message"]
    _error(server.post(audio=b"this is not audio" * 20, model=CTC_MODEL), 400, "invalid_audio", "file")
    _error(server.post(audio=wav[:30], model=CTC_MODEL), 400, "invalid_audio", "file")
    _error(server.post(audio=b"", model=CTC_MODEL), 400, "invalid_audio", "file")
    _error(server.post(model=CTC_MODEL), 400, "missing_file", "file")
    _error(httpx.post(server.url + "/v1/audio/transcriptions", json={"model": CTC_MODEL}, timeout=HANG_S), 400, "missing_file")
    assert "`whisper-2`" in _error(server.post(audio=wav, model="whisper-2"), 404, "model_not_found", "model")["message"]
    _error(server.post(audio=wav, model=CTC_MODEL, response_format="xml"), 400, "invalid_value", "response_format")
    _error(server.post(audio=wav, model=CTC_MODEL, language="klingon"), 400, "unsupported_language", "language")
    _error(server.post(audio=wav, model=CTC_MODEL, stream="perhaps"), 400, "invalid_value", "stream")
    _error(server.post("/v1/audio/translations", wav, model=CTC_MODEL), 400, "unsupported_task", "model")
    _error(httpx.get(server.url + "/v1/nothing", timeout=HANG_S), 404, "not_found")
    _error(httpx.get(server.url + "/v1/audio/transcriptions", timeout=HANG_S), 405)
    _error(httpx.post(server.url + "/v1/models/nope/unload", timeout=HANG_S), 404, "model_not_found")
    _error(httpx.get(server.url + "/v1/models/nope", timeout=HANG_S), 404, "model_not_found")
    # the openai client raises its own typed errors from these bodies
    with pytest.raises(openai.NotFoundError) as e:
        server.client().audio.transcriptions.create(file=("a.wav", wav), model="whisper-2")
    assert e.value.code == "model_not_found"
    # and the server still answers
    assert server.post(audio=wav, model=CTC_MODEL).status_code == 200


def _raw(url: str, request: bytes) -> tuple[bytes, bytes]:
    """What the server answers to these bytes: (status line and headers, body)."""
    u = httpx.URL(url)
    with socket.create_connection((u.host, u.port), timeout=HANG_S) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("request_bytes", [
    # headers over the limit: h11 refuses them once over 16 KB are buffered without the headers' end
    # (all of it read by then: the server closes with nothing unread, so the answer is not reset away)
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000,
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost x\r\n\r\n",  # a header without its colon
    b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
], ids=["oversized_headers", "not_http", "header_without_colon", "bad_content_length"])
def test_http_errors_uvicorn_answers_are_openai_errors_too(server, request_bytes):
    """What uvicorn refuses before the app sees a request comes in OpenAI's error shape as well."""
    head, body = _raw(server.url, request_bytes)
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower(), head
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_http_request" and "headers are too large" in err["message"]
    assert server.post(audio=EN, model=CTC_MODEL).status_code == 200  # and it serves on


def test_broken_model_is_503_and_the_other_keeps_serving(full_bundle, bundle, ctc_direct, tmp_path):
    broken = Path(shutil.copytree(full_bundle, tmp_path / "broken"))
    for f in (broken / "llm").glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    with LiveServer(broken) as s:
        for stream in ("false", "true"):
            err = _error(s.post(audio=ZH, model=LLM_MODEL, stream=stream), 503, "model_unavailable", "model")
            assert err["message"].startswith(f"model {LLM_MODEL} is unavailable: ")
        r = s.post(audio=ZH, model=CTC_MODEL)
        assert r.status_code == 200 and r.json()["text"] == ctc_direct(ZH)
        h = httpx.get(s.url + "/health", timeout=HANG_S).json()["models"]
        assert h[LLM_MODEL]["last_error"] and not h[LLM_MODEL]["loaded"] and h[CTC_MODEL]["loaded"]
    with LiveServer(bundle) as s:  # SenseVoice only: it is the default, the LLM model says what is missing
        assert "has no adaptor, llm" in _error(s.post(audio=ZH, model=LLM_MODEL), 503, "model_unavailable")["message"]
        assert s.post(audio=ZH).json()["text"] == s.post(audio=ZH, model=CTC_MODEL).json()["text"]


def test_sixteen_concurrent_requests(server, direct, ctc_direct, tmp_path):
    import soundfile as sf

    long = load_audio(LONG)
    sixteen = list(SHORT)
    for i in range(16 - len(SHORT)):  # 14 distinct files; the rest: 5 s slices of the long one
        sixteen.append(tmp_path / f"long_{i}.wav")
        sf.write(sixteen[-1], long[i * 80000 + 16000:(i + 1) * 80000 + 16000], 16000)
    want = {p: (direct.transcribe(p)["text"], ctc_direct(p)) for p in sixteen}
    assert len({w[1] for w in want.values()}) == 16  # different audio, different answers

    def ask(job):
        path, model, fmt = job
        r = server.post(audio=path, name=path.name, model=model, response_format=fmt)
        assert r.status_code == 200, r.text
        return r.text if fmt == "text" else r.json()["text"]

    jobs = [(p, m, "text" if i % 2 else "json") for i, p in enumerate(sixteen) for m in (LLM_MODEL, CTC_MODEL)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(ask, jobs))
    for (path, model, _), text in zip(jobs, got):
        assert text == want[path][0 if model == LLM_MODEL else 1], (path.name, model)
    stats = httpx.get(server.url + "/health", timeout=HANG_S).json()["models"]
    assert stats[LLM_MODEL]["queued"] == 0 and stats[CTC_MODEL]["queued"] == 0
    # requests that waited together ran as batches, and still answered as each alone
    assert stats[LLM_MODEL]["batches"] >= 1 and stats[LLM_MODEL]["batched"] >= 2


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_disconnect_mid_stream_stops_decoding(server):
    from dataclasses import replace

    import mlx.core as mx

    s, slot = server, server.manager.slots[LLM_MODEL]
    assert httpx.post(s.url + f"/v1/models/{LLM_MODEL}/load", timeout=HANG_S).json()["loaded"]
    cancelled = slot.stats["cancelled"]
    # decode to the token cap; the decoding is held after the first delta until the client has left
    held = HeldDecoding(slot.model.pipeline, lambda d: replace(d, loop_guard=False))
    produced = held.produced
    try:
        full = s.post(audio=ZH, stream="true")
        n_full = full.text.count("transcript.text.delta")
        assert n_full >= 20 and len(produced) == n_full
        produced.clear()
        threads, active = threading.active_count(), mx.get_active_memory()
        held.on.set()
        with httpx.stream("POST", s.url + "/v1/audio/transcriptions", files={"file": ("a.wav", ZH.read_bytes())},
                          data={"stream": "true"}, timeout=HANG_S) as r:
            for line in r.iter_lines():
                if "transcript.text.delta" in line:
                    break  # leave after the first delta
        held.gone.set()
        assert s.wait(lambda: slot.queued == 0)
        assert slot.stats["cancelled"] == cancelled + 1
        assert len(produced) < n_full / 2, (len(produced), n_full)  # it stopped, not ran to the end
        assert threading.active_count() <= threads
        assert mx.get_active_memory() - active < 2**18  # its KV cache went with it
        held.on.clear()
        assert s.post(audio=ZH, stream="true").text == full.text  # and the model serves the next request whole
    finally:
        held.restore()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="RSS from /proc")
def test_load_unload_cycles_leave_memory_flat(server, capsys):
    """MLX's own count is exact, so every unload must give back every byte the models held. RSS is
    noisy (allocator arenas, the other threads, first-use caches), so it is judged after a warm-up
    cycle, by its growth per cycle over six more: the median of the five cycle-to-cycle changes. A
    steady leak is in every change; a one-off jump is in one (the median of all pairwise slopes,
    Theil-Sen, would move with it, since over half of them straddle it). A leak of 8 MiB a cycle
    fails."""
    import gc
    from statistics import median

    import mlx.core as mx

    s = server

    def cycle() -> tuple[int, int, int]:
        assert s.post(audio=EN, model=LLM_MODEL).status_code == 200  # loads lazily
        assert s.post(audio=EN, model=CTC_MODEL).status_code == 200
        loaded = mx.get_active_memory()
        unload = [httpx.post(f"{s.url}/v1/models/{LLM_MODEL}/unload", timeout=HANG_S).json(),
                  httpx.delete(f"{s.url}/v1/models/{CTC_MODEL}", timeout=HANG_S).json()]
        assert all(u["unloaded"] and not u["loaded"] for u in unload)
        return loaded, mx.get_active_memory(), _rss()

    for m in (LLM_MODEL, CTC_MODEL):
        httpx.delete(f"{s.url}/v1/models/{m}", timeout=HANG_S)
    gc.collect()
    base_active = mx.get_active_memory()
    rows = [cycle() for _ in range(7)]  # rows[0]: the warm-up
    rss = [r for _, _, r in rows[1:]]
    growth = median(b - a for a, b in zip(rss, rss[1:]))
    with capsys.disabled():
        print(f"\nload/unload cycles: MLX active {base_active / 2**20:.2f} MiB before; then loaded → unloaded, RSS: "
              + "; ".join(f"{a / 2**20:.1f} → {b / 2**20:.2f}, {r / 2**20:.0f}" for a, b, r in rows)
              + f" MiB; RSS growth {growth / 2**20:+.2f} MiB per cycle after the first")
    for loaded, after, _ in rows:
        assert loaded - base_active > 20 * 2**20  # the models were really there
        assert after - base_active < 2**20  # and freed: MLX active memory back within 1 MiB
    assert growth < 8 * 2**20  # RSS flat: under 8 MiB per cycle


def test_shutdown_frees_the_models(full_bundle):
    """Stopping the server unloads what it loaded, even with requests still queued behind the last one."""
    import gc

    import mlx.core as mx

    gc.collect()
    before = mx.get_active_memory()
    with LiveServer(full_bundle) as s:
        assert s.post(audio=ZH, model=LLM_MODEL).status_code == 200
        assert s.post(audio=ZH, model=CTC_MODEL).status_code == 200
        assert mx.get_active_memory() - before > 20 * 2**20
    gc.collect()
    assert mx.get_active_memory() - before < 2**20


def test_idle_unload(full_bundle):
    with LiveServer(full_bundle, idle_unload=0.3) as s:
        slot = s.manager.slots[CTC_MODEL]
        first = s.post(audio=ZH, model=CTC_MODEL).json()["text"]
        assert s.wait(lambda: slot.model is None) and slot.stats["unloads"] == 1
        assert s.post(audio=ZH, model=CTC_MODEL).json()["text"] == first and slot.stats["loads"] == 2


def test_cli_serve(tmp_path, capsys):
    from funasr_qwen4b.app.cli import main
    from funasr_qwen4b.app.cli import serve
    from funasr_qwen4b.app.server import slots

    # the parser's copies, kept without importing FastAPI
    assert serve.MODEL_IDS == tuple(MODELS) and serve.MIN_UPLOAD_MB == slots.MIN_UPLOAD_MB
    assert serve.KIND_MODELS == slots.KIND_MODELS

    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--host", "--port", "--default-model", "--idle-unload", "--max-upload-mb", "--max-audio-seconds",
                "127.0.0.1", "/v1/audio/transcriptions", "unload"):
        assert opt in out
    assert main(["serve", "-m", str(tmp_path)]) == 2
    assert "not a bundle" in capsys.readouterr().err
