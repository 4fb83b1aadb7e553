"""The ASGI app: `create_app` wires the endpoints to the models, and `serve` runs it under uvicorn."""

from __future__ import annotations

import asyncio
import copy
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError, Cancelled, http_protocol, internal, one_line
from .formats import render, sse, token_logprobs
from .requests import TranscriptionRequest, UploadLimit, parse
from .slots import ModelManager, ServerConfig, memory_info


def create_app(cfg: ServerConfig | str, **kwargs) -> FastAPI:
    """The ASGI app. `cfg`: a ServerConfig, or a bundle path (or a list of them, one per model kind)
    with ServerConfig's fields as keywords. Nothing is loaded here: each model loads on its first
    request."""
    if not isinstance(cfg, ServerConfig):
        cfg = ServerConfig([str(b) for b in cfg] if isinstance(cfg, (list, tuple)) else str(cfg), **kwargs)
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
    app.add_middleware(UploadLimit, max_bytes=int(cfg.max_upload_mb * 2**20))

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return ApiError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return ApiError(400, one_line(exc.errors()), code="invalid_request").response()

    @app.exception_handler(Exception)
    async def _server_error(request, exc: Exception):
        return internal(exc).response()

    @app.get("/health")
    async def health():
        return {"status": "ok", "bundle": cfg.bundles[0], "bundles": {m: s.bundle for m, s in manager.slots.items()},
                "default_model": manager.default_model,
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
        return {**slot.info(), "load_seconds": slot.load_seconds, "memory": memory_info()}

    async def unload_model(model_id: str):
        slot = manager.slot(model_id)
        was = await slot.unload()
        return {**slot.info(), "unloaded": was, "memory": memory_info()}

    app.post("/v1/models/{model_id}/unload")(unload_model)
    app.delete("/v1/models/{model_id}")(unload_model)

    async def handle(request: Request, task: str):
        req = await parse(request, task, manager)
        if req.stream:
            return await stream_transcription(req)
        return await until_disconnect(request, req, task)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await handle(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await handle(request, "translate")

    return app


DISCONNECT_POLL = 0.1  # seconds between looks at whether a waiting client is still there


async def until_disconnect(request: Request, req: TranscriptionRequest, task: str) -> Response:
    """A non-streaming answer, unless the client goes first: then a queued job is skipped and
    a running one stops at its next piece of text, so the next request does not wait behind it."""
    cancel = threading.Event()

    def on_text(delta: str) -> None:  # on the model's thread
        if cancel.is_set():
            raise Cancelled()

    job = asyncio.ensure_future(req.slot.transcribe(req.samples, language=req.language, translate=task == "translate",
                                                    hotwords=req.hotwords, on_text=on_text, cancel=cancel))
    while not job.done():
        await asyncio.wait({job}, timeout=DISCONNECT_POLL)
        if not job.done() and await request.is_disconnected():
            cancel.set()
            job.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: nobody awaits it now
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    return render(job.result(), req.format, task=task, model=req.slot.id, words=req.words, logprobs=req.logprobs)


async def stream_transcription(req: TranscriptionRequest) -> StreamingResponse:
    """Server-sent events: `transcript.text.delta` as text comes, then `transcript.text.done`
    (with `logprobs` where asked for), or `error`. When the client goes, decoding stops at its
    next token."""
    await req.slot.load()  # a model that cannot load answers 503 before the stream starts
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def on_text(delta: str) -> None:  # on the model's thread
        if cancel.is_set():
            raise Cancelled()
        loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))

    job = asyncio.ensure_future(req.slot.transcribe(req.samples, language=req.language, hotwords=req.hotwords,
                                                    on_text=on_text, cancel=cancel))

    def finished(f: asyncio.Future) -> None:
        if not f.cancelled():
            f.exception()  # retrieved here: after a disconnect nobody reads the queue
            queue.put_nowait(("end", f))

    job.add_done_callback(finished)

    async def events():
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield sse({"type": "transcript.text.delta", "delta": value})
                    continue
                exc = value.exception()
                if exc is None:
                    result = value.result()
                    listed = {"logprobs": token_logprobs(result["segments"])} if req.logprobs else {}
                    yield sse({"type": "transcript.text.done", "text": result["text"], **listed})
                elif not isinstance(exc, Cancelled):
                    err = exc if isinstance(exc, ApiError) else internal(exc)
                    yield sse({"type": "error", **err.body()})
                return
        finally:
            cancel.set()  # client gone (or done): decoding stops at its next token

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def uvicorn_options() -> dict:
    """uvicorn's settings beyond the address: errors of HTTP itself in OpenAI's shape
    (http_protocol), all logging on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # uvicorn's default: stdout
    return {"http": http_protocol(), "log_config": log_config}


def serve(cfg: ServerConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(cfg), host=host, port=port, log_level=log_level, **uvicorn_options())
