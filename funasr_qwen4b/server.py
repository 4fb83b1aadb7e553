"""An OpenAI-compatible transcription server on the MLX port.

    funasr-qwen4b serve -m bundle/ --port 8000
    curl -F file=@clip.wav -F model=funasr-qwen4b http://127.0.0.1:8000/v1/audio/transcriptions

Endpoints (OpenAI's request and response shapes, its error shape
`{"error": {"message", "type", "param", "code"}}` for every 4xx/5xx):

    POST   /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format, stream
    POST   /v1/audio/translations     multipart: file, model, prompt, response_format (English text)
    GET    /v1/models                 both models, with `loaded`
    GET    /v1/models/{id}
    POST   /v1/models/{id}/load       load now (otherwise the first request loads it)
    POST   /v1/models/{id}/unload     free it now (DELETE /v1/models/{id} does the same)
    GET    /health                    per-model state, queue, counters, memory

Two models: `funasr-qwen4b` (SenseVoice → adaptor → Qwen3, the Transcriber)
and `sensevoice-small` (SenseVoice's own CTC head). Each model has one worker
thread: loading, decoding and unloading all happen there, in order, so the
requests for one model queue behind each other while the event loop stays
free. A model is loaded on first use and unloaded after `idle_unload`
seconds without a request, or on request.

Importing this module imports neither torch nor MLX; MLX is imported when a
model loads.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from .audio import SAMPLE_RATE, AudioError, load_audio, split_long
from .config import LANGUAGE_IDS

LLM_MODEL = "funasr-qwen4b"
CTC_MODEL = "sensevoice-small"
MODELS = {
    LLM_MODEL: "SenseVoiceSmall → audio adaptor → Qwen3-4B (needs sensevoice, adaptor and llm in the bundle)",
    CTC_MODEL: "SenseVoiceSmall's own CTC head (needs only sensevoice; fast and small)",
}
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
OWNER = "funasr-qwen4b"


# --- errors ------------------------------------------------------------------

class ApiError(Exception):
    """Rendered as OpenAI's error body with `status`."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class ModelUnavailable(ApiError):
    def __init__(self, model: str, reason: str):
        super().__init__(503, f"model {model} is unavailable: {reason}", param="model", code="model_unavailable")


class Cancelled(Exception):
    """Raised inside decoding when the client has gone."""


def _one_line(text: object) -> str:
    return " ".join(re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the upload", str(text)).split())


# --- models ------------------------------------------------------------------

@dataclass
class ServerConfig:
    bundle: str
    default_model: str | None = None  # None: funasr-qwen4b when the bundle has adaptor + llm, else sensevoice-small
    idle_unload: float = 600.0  # seconds without a request before a model is unloaded; 0 = never
    max_upload_mb: float = 25.0
    max_audio_seconds: float = 600.0
    max_seconds: float = 30.0  # long audio is split at quiet points into pieces this long (0 = never)
    template: str | None = None  # prompt template text (default: the bundle's)
    decode: object | None = None  # a DecodeConfig (default: the bundle's generation settings)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return peak if sys.platform == "darwin" else peak * 1024  # a peak, not current, off Linux
        except Exception:
            return None


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so RSS falls after an unload too."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def memory_info() -> dict:
    """Process RSS and, once MLX is imported, MLX's active and cache memory (bytes)."""
    out = {"rss_bytes": _rss_bytes()}
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        out["mlx_active_bytes"] = int(mx.get_active_memory())
        out["mlx_cache_bytes"] = int(mx.get_cache_memory())
    return out


class ModelSlot:
    """One model: its own worker thread (the queue), loaded lazily, unloadable."""

    def __init__(self, model_id: str, cfg: ServerConfig):
        self.id, self.cfg = model_id, cfg
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{model_id}")
        self.model = None  # Transcriber (funasr-qwen4b) or ctc-only Pipeline (sensevoice-small)
        self.created = int(time.time())
        self.loaded_at: float | None = None
        self.last_used = time.monotonic()
        self.last_error: str | None = None
        self._count_lock = threading.Lock()
        self.queued = 0  # submitted and not finished (waiting + running)
        self.stats = {"requests": 0, "cancelled": 0, "failed": 0, "loads": 0, "unloads": 0}

    # Everything below named _in_worker runs on the slot's own thread.
    def _load_in_worker(self):
        if self.model is not None:
            return self.model
        t0 = time.perf_counter()
        try:
            if self.id == LLM_MODEL:
                from .transcriber import Transcriber

                model = Transcriber.load(self.cfg.bundle, "mlx", template=self.cfg.template, decode=self.cfg.decode,
                                         max_seconds=self.cfg.max_seconds)
            else:
                from mlx_port.pipeline import Pipeline

                model = Pipeline.from_bundle(self.cfg.bundle, ctc_only=True)
        except Exception as e:  # missing component, missing/broken files, bad config
            self.last_error = f"{type(e).__name__}: {_one_line(e)}"
            gc.collect()
            raise ModelUnavailable(self.id, self.last_error) from None
        self.model, self.loaded_at, self.last_error = model, time.time(), None
        self.stats["loads"] += 1
        self.load_seconds = round(time.perf_counter() - t0, 3)
        return model

    def _unload_in_worker(self, only_if_idle_for: float | None = None) -> bool:
        if self.model is None:
            return False
        if only_if_idle_for is not None:
            with self._count_lock:
                busy = self.queued > 0
            if busy or time.monotonic() - self.last_used < only_if_idle_for:
                return False
        self.model, self.loaded_at = None, None
        self.stats["unloads"] += 1
        gc.collect()
        mx = sys.modules.get("mlx.core")
        if mx is not None:
            mx.clear_cache()
        _trim_heap()
        return True

    def _job(self, fn: Callable, cancel: threading.Event):
        try:
            if cancel.is_set():
                raise Cancelled()
            return fn(self._load_in_worker())
        except BaseException as e:
            # Drop the frames' locals here, on this thread: an abandoned mlx-lm generator
            # (and its KV cache) is closed now, not later by whichever thread frees the error.
            traceback.clear_frames(e.__traceback__)
            self.stats["cancelled" if isinstance(e, Cancelled) else "failed"] += 1
            raise
        finally:
            self.stats["requests"] += 1
            self.last_used = time.monotonic()
            with self._count_lock:
                self.queued -= 1

    async def run(self, fn: Callable, cancel: threading.Event | None = None):
        """Queue `fn(model)` on this model's thread and await its result."""
        cancel = cancel or threading.Event()
        with self._count_lock:
            self.queued += 1
        try:
            fut = self.executor.submit(self._job, fn, cancel)
        except RuntimeError:  # shutting down
            with self._count_lock:
                self.queued -= 1
            raise ApiError(503, "server is shutting down", code="shutting_down") from None
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            cancel.set()  # the request is gone: a queued job is skipped, a running one stops at its next token
            raise

    async def load(self):
        return await asyncio.wrap_future(self.executor.submit(lambda: (self._load_in_worker(), None)[1]))

    async def unload(self, only_if_idle_for: float | None = None) -> bool:
        return await asyncio.wrap_future(self.executor.submit(self._unload_in_worker, only_if_idle_for))

    def info(self) -> dict:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": OWNER,
                "description": MODELS[self.id], "loaded": self.model is not None}

    def state(self) -> dict:
        return {"loaded": self.model is not None, "queued": self.queued, "last_error": self.last_error,
                "loaded_at": self.loaded_at, "idle_seconds": round(time.monotonic() - self.last_used, 1),
                **self.stats}

    def shutdown(self) -> None:
        self.executor.submit(self._unload_in_worker)
        self.executor.shutdown(wait=True, cancel_futures=True)


class ModelManager:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.slots = {m: ModelSlot(m, cfg) for m in MODELS}
        self.default_model = cfg.default_model or self._auto_default()
        if self.default_model not in MODELS:
            raise ValueError(f"unknown default model {self.default_model!r}; use one of {sorted(MODELS)}")

    def _auto_default(self) -> str:
        try:
            meta = json.loads((Path(self.cfg.bundle) / "bundle.json").read_text())
            comps = meta.get("components", {})
        except (OSError, ValueError):
            return LLM_MODEL
        return LLM_MODEL if {"adaptor", "llm"} <= set(comps) else CTC_MODEL

    def slot(self, model: str | None) -> ModelSlot:
        model = model or self.default_model
        if model not in self.slots:
            raise ApiError(404, f"The model `{model}` does not exist; this server has {', '.join(MODELS)}",
                           param="model", code="model_not_found")
        return self.slots[model]

    async def idle_loop(self) -> None:
        idle = self.cfg.idle_unload
        period = min(max(idle / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(period)
            for s in self.slots.values():
                if s.model is not None and s.queued == 0 and time.monotonic() - s.last_used >= idle:
                    await s.unload(only_if_idle_for=idle)

    def shutdown(self) -> None:
        for s in self.slots.values():
            s.shutdown()


# --- request parsing -----------------------------------------------------------

def _bool(value, name: str) -> bool:
    if value is None:
        return False
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ApiError(400, f"{name} must be true or false, got {value!r}", param=name, code="invalid_value")


def _language(value) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    lang = str(value).strip().lower().replace("_", "-").split("-")[0]
    if lang not in LANGUAGE_IDS:
        raise ApiError(400, f"unsupported language {value!r}; SenseVoice knows {', '.join(sorted(LANGUAGE_IDS))}",
                       param="language", code="unsupported_language")
    return lang


def decode_upload(data: bytes, filename: str, max_audio_seconds: float) -> np.ndarray:
    """Uploaded bytes → 16 kHz mono float32, exactly as load_audio reads a file."""
    if not data:
        raise ApiError(400, f"uploaded file {filename!r} is empty", param="file", code="invalid_audio")
    try:
        info = sf.info(io.BytesIO(data))
        frames, rate = info.frames, info.samplerate
    except Exception as e:
        raise ApiError(400, f"cannot read audio {filename!r}: {_one_line(e)}; WAV or FLAC expected (anything "
                       f"libsndfile reads)", param="file", code="invalid_audio") from None
    limit = max_audio_seconds
    if limit and rate > 0 and 0 < frames < 2**62 and frames / rate > limit:
        raise ApiError(400, f"audio is {frames / rate:.1f} s long; this server accepts at most {limit:g} s "
                       f"(--max-audio-seconds)", param="file", code="audio_too_long")
    try:
        raw, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as e:
        raise ApiError(400, f"cannot decode audio {filename!r}: {_one_line(e)}", param="file",
                       code="invalid_audio") from None
    try:
        samples = load_audio(raw, rate)
    except AudioError as e:
        raise ApiError(400, f"{filename!r}: {e}", param="file", code="invalid_audio") from None
    if limit and samples.size / SAMPLE_RATE > limit:
        raise ApiError(400, f"audio is {samples.size / SAMPLE_RATE:.1f} s long; this server accepts at most "
                       f"{limit:g} s (--max-audio-seconds)", param="file", code="audio_too_long")
    return samples


# --- the work (runs on a model's thread) ------------------------------------------

def transcribe_job(model_id: str, samples: np.ndarray, *, language: str | None, translate: bool,
                   max_seconds: float, on_text: Callable[[str], None] | None) -> dict:
    """Returns a function of the loaded model → result dict (text, segments, duration, ...)."""
    from .transcriber import _JoinedStream, join_texts

    def fn(model) -> dict:
        pieces = split_long(samples, max_seconds) if max_seconds else [samples]
        stream = _JoinedStream(on_text) if on_text is not None else None
        pipe = model.pipeline if model_id == LLM_MODEL else model
        saved = (pipe.query, pipe.setup)
        if language is not None:
            pipe.query = replace(pipe.query, language=language)
            if model_id == LLM_MODEL and language == "en":
                from .transcriber import EN_TOKENS_PER_SECOND

                d = pipe.setup.decode
                pipe.setup = replace(pipe.setup, decode=replace(
                    d, tokens_per_second=max(d.tokens_per_second, EN_TOKENS_PER_SECOND)))
        segments, texts, tokens, tags, start = [], [], 0, [], 0
        try:
            for i, piece in enumerate(pieces):
                if stream is not None:
                    stream.new_chunk()
                if model_id == LLM_MODEL:
                    r = model.transcribe(piece, SAMPLE_RATE, on_text=stream)
                    text, n = r["text"], r["tokens"]
                    tags = tags or r["tags"]
                else:
                    ctc = pipe.run(piece).ctc
                    text, n = ctc.text.strip(), len(ctc.text_ids)
                    tags = tags or list(ctc.tags)
                    if stream is not None:
                        stream(text)
                texts.append(text)
                end = start + piece.size
                segments.append({"id": i, "seek": 0, "start": round(start / SAMPLE_RATE, 3),
                                 "end": round(end / SAMPLE_RATE, 3), "text": text, "tokens": [],
                                 "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0,
                                 "no_speech_prob": 0.0})
                tokens += n
                start = end
        finally:
            pipe.query, pipe.setup = saved
        result = {"text": join_texts(texts), "segments": segments, "duration": round(samples.size / SAMPLE_RATE, 3),
                  "language": language or pipe.query.language, "tokens": tokens, "tags": list(tags)}
        if translate:
            result["translation"] = model.translate(result["text"])
        return result

    return fn


# --- responses ----------------------------------------------------------------------

def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: list[dict]) -> str:
    return "".join(f"{i}\n{_timestamp(s['start'], ',')} --> {_timestamp(s['end'], ',')}\n{s['text'].strip()}\n\n"
                   for i, s in enumerate(segments, 1))


def to_vtt(segments: list[dict]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_timestamp(s['start'], '.')} --> {_timestamp(s['end'], '.')}\n"
                                  f"{s['text'].strip()}\n\n" for s in segments)


def render(result: dict, fmt: str, *, task: str, model: str) -> JSONResponse | PlainTextResponse:
    text, segments = result["text"], result["segments"]
    if task == "translate":
        text = result["translation"]
        segments = [{**segments[0], "start": 0.0, "end": result["duration"], "text": text}] if segments else []
    if fmt == "json":
        return JSONResponse({"text": text})
    if fmt == "text":
        return PlainTextResponse(text)
    if fmt == "srt":
        return PlainTextResponse(to_srt(segments))
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(segments), media_type="text/vtt")
    body = {"task": task, "language": "english" if task == "translate" else result["language"],
            "duration": result["duration"], "text": text, "segments": segments,
            "usage": {"type": "duration", "seconds": result["duration"]},
            "model": model, "tags": result["tags"], "tokens": result["tokens"]}
    return JSONResponse(body)


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


# --- the app --------------------------------------------------------------------------

class _UploadLimit:
    """Refuses request bodies over the limit with 413: at once from Content-Length,
    or as soon as a chunked body goes past it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _error(self) -> ApiError:
        return ApiError(413, f"request body exceeds the upload limit of {self.max_bytes / 2**20:g} MB "
                        f"(--max-upload-mb)", param="file", code="file_too_large")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.max_bytes:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._error().response()(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise self._error()
            return msg

        await self.app(scope, limited, send)


def create_app(cfg: ServerConfig | str, **kwargs) -> FastAPI:
    """The ASGI app. `cfg`: a ServerConfig, or a bundle path with ServerConfig's fields as keywords."""
    if not isinstance(cfg, ServerConfig):
        cfg = ServerConfig(str(cfg), **kwargs)
    manager = ModelManager(cfg)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(manager.idle_loop()) if cfg.idle_unload else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await asyncio.to_thread(manager.shutdown)

    app = FastAPI(title="funasr-qwen4b", summary="OpenAI-compatible transcription on the MLX port",
                  lifespan=lifespan)
    app.state.manager = manager
    app.add_middleware(_UploadLimit, max_bytes=int(cfg.max_upload_mb * 2**20))

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return ApiError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return ApiError(400, _one_line(exc.errors()), code="invalid_request").response()

    @app.exception_handler(Exception)
    async def _server_error(request, exc: Exception):
        return ApiError(500, f"internal error: {type(exc).__name__}: {_one_line(exc)}").response()

    @app.get("/health")
    async def health():
        return {"status": "ok", "bundle": cfg.bundle, "default_model": manager.default_model,
                "models": {m: s.state() for m, s in manager.slots.items()}, "memory": memory_info(),
                "limits": {"max_upload_mb": cfg.max_upload_mb, "max_audio_seconds": cfg.max_audio_seconds,
                           "idle_unload_seconds": cfg.idle_unload}}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [s.info() for s in manager.slots.values()]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str):
        return manager.slot(model_id).info()

    @app.post("/v1/models/{model_id}/load")
    async def load_model(model_id: str):
        slot = manager.slot(model_id)
        await slot.load()
        return {**slot.info(), "load_seconds": getattr(slot, "load_seconds", None), "memory": memory_info()}

    async def _unload(model_id: str):
        slot = manager.slot(model_id)
        was = await slot.unload()
        return {**slot.info(), "unloaded": was, "memory": memory_info()}

    app.post("/v1/models/{model_id}/unload")(_unload)
    app.delete("/v1/models/{model_id}")(_unload)

    async def parse(request: Request, task: str) -> dict:
        try:
            form = await request.form(max_files=1, max_fields=64)
        except MultiPartException as e:
            raise ApiError(400, f"bad multipart body: {e.message}", code="invalid_request") from None
        except ApiError:
            raise
        except Exception as e:
            raise ApiError(400, f"cannot parse the request body: {_one_line(e)}", code="invalid_request") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "missing `file`: send the audio as a multipart file field named file",
                           param="file", code="missing_file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        slot = manager.slot(fields.get("model") or None)
        fmt = fields.get("response_format") or "json"
        if fmt not in RESPONSE_FORMATS:
            raise ApiError(400, f"unsupported response_format {fmt!r}; use one of {', '.join(RESPONSE_FORMATS)}",
                           param="response_format", code="invalid_value")
        language = _language(fields.get("language")) if task == "transcribe" else None
        stream = _bool(fields.get("stream"), "stream") if task == "transcribe" else False
        if task == "translate" and slot.id != LLM_MODEL:
            raise ApiError(400, f"model {slot.id} cannot translate; use {LLM_MODEL}", param="model",
                           code="unsupported_task")
        data = await upload.read()
        name = upload.filename or "file"
        await upload.close()
        samples = await asyncio.to_thread(decode_upload, data, name, cfg.max_audio_seconds)
        return {"slot": slot, "format": fmt, "language": language, "stream": stream, "samples": samples}

    async def handle(request: Request, task: str):
        req = await parse(request, task)
        slot: ModelSlot = req["slot"]
        if req["stream"]:
            return await stream_transcription(slot, req)
        fn = transcribe_job(slot.id, req["samples"], language=req["language"], translate=task == "translate",
                            max_seconds=cfg.max_seconds, on_text=None)
        result = await slot.run(fn)
        return render(result, req["format"], task=task, model=slot.id)

    async def stream_transcription(slot: ModelSlot, req: dict):
        await slot.load()  # a model that cannot load answers 503 before the stream starts
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def on_text(delta: str) -> None:
            if cancel.is_set():
                raise Cancelled()
            loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))

        fn = transcribe_job(slot.id, req["samples"], language=req["language"], translate=False,
                            max_seconds=cfg.max_seconds, on_text=on_text)
        task = asyncio.ensure_future(slot.run(fn, cancel))

        def finished(t: asyncio.Future) -> None:
            if not t.cancelled():
                t.exception()  # retrieved here: after a disconnect nobody reads the queue
                queue.put_nowait(("end", t))

        task.add_done_callback(finished)

        async def events():
            try:
                while True:
                    kind, value = await queue.get()
                    if kind == "delta":
                        yield _sse({"type": "transcript.text.delta", "delta": value})
                        continue
                    exc = value.exception()
                    if exc is None:
                        yield _sse({"type": "transcript.text.done", "text": value.result()["text"]})
                    elif not isinstance(exc, Cancelled):
                        err = exc if isinstance(exc, ApiError) else ApiError(
                            500, f"internal error: {type(exc).__name__}: {_one_line(exc)}")
                        yield _sse({"type": "error", **err.body()})
                    return
            finally:
                cancel.set()  # client gone (or done): decoding stops at its next token

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await handle(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await handle(request, "translate")

    return app


def serve(cfg: ServerConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    import uvicorn

    uvicorn.run(create_app(cfg), host=host, port=port, log_level=log_level)
