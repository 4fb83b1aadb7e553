"""The two models and their lifetimes: `ServerConfig`, one `ModelSlot` per
model (its own worker thread, where it loads, transcribes and unloads, in
order), the `ModelManager` that holds both, and the process's memory figures."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...audio import AudioError
from ...bundle import Bundle
from ...config import Backend
from ...decoding import DecodeConfig
from ..transcriber import Transcriber
from .errors import ApiError, Cancelled, ModelUnavailable, one_line

log = logging.getLogger(__name__)

LLM_MODEL = "funasr-qwen4b"
CTC_MODEL = "sensevoice-small"
MODELS = {
    LLM_MODEL: "SenseVoiceSmall → audio adaptor → Qwen3-4B (needs sensevoice, adaptor and llm in the bundle)",
    CTC_MODEL: "SenseVoiceSmall's own CTC head (needs only sensevoice; fast and small)",
}
OWNER = "funasr-qwen4b"


@dataclass
class ServerConfig:
    bundle: str | Path
    default_model: str | None = None  # None: funasr-qwen4b when the bundle has adaptor + llm, else sensevoice-small
    idle_unload: float = 600.0  # seconds without a request before a model is unloaded; 0 = never
    max_upload_mb: float = 25.0
    max_audio_seconds: float = 600.0
    max_seconds: float = 30.0  # long audio is split at quiet points into pieces this long (0 = never)
    template: str | None = None  # prompt template text (default: the bundle's)
    decode: DecodeConfig | None = None  # generation settings (default: the bundle's)


# --- memory --------------------------------------------------------------------

def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
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


# --- one model -------------------------------------------------------------------

class ModelSlot:
    """One model: its own worker thread (the queue), loaded lazily, unloadable."""

    def __init__(self, model_id: str, cfg: ServerConfig):
        self.id, self.cfg = model_id, cfg
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{model_id}")
        self.model: Transcriber | None = None
        self.created = int(time.time())
        self.loaded_at: float | None = None
        self.load_seconds: float | None = None
        self.last_used = time.monotonic()
        self.last_error: str | None = None
        self._count_lock = threading.Lock()
        self.queued = 0  # submitted and not finished (waiting + running)
        self.stats = {"requests": 0, "cancelled": 0, "failed": 0, "loads": 0, "unloads": 0}

    # Everything named _in_worker runs on the slot's own thread.
    def _load_in_worker(self) -> Transcriber:
        if self.model is not None:
            return self.model
        t0 = time.perf_counter()
        try:
            bundle = Bundle.read(self.cfg.bundle)
            if self.id == LLM_MODEL:
                bundle.require("adaptor", "llm", why=f"{LLM_MODEL} needs them; {CTC_MODEL} needs only sensevoice")
                model = Transcriber.load(bundle, Backend.MLX, template=self.cfg.template, decode=self.cfg.decode,
                                         max_seconds=self.cfg.max_seconds)
            else:
                if not (bundle.dir("sensevoice") / "tokenizer.model").is_file():
                    raise ValueError(f"{bundle.root / 'sensevoice'} has no tokenizer.model (its source had no "
                                     f".bpe.model), so CTC transcripts would be token ids; reconvert with it")
                model = Transcriber.load(bundle, Backend.MLX, ctc_only=True, max_seconds=self.cfg.max_seconds)
        except Exception as e:  # missing component, missing/broken files, bad config
            self.last_error = f"{type(e).__name__}: {one_line(e)}"
            log.warning("cannot load %s: %s", self.id, self.last_error)
            gc.collect()
            raise ModelUnavailable(self.id, self.last_error) from None
        self.model, self.loaded_at, self.last_error = model, time.time(), None
        self.stats["loads"] += 1
        self.load_seconds = round(time.perf_counter() - t0, 3)
        log.info("loaded %s in %.2f s", self.id, self.load_seconds)
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
        log.info("unloaded %s", self.id)
        return True

    def _job(self, fn: Callable[[Transcriber], object], cancel: threading.Event):
        try:
            if cancel.is_set():
                raise Cancelled()
            return fn(self._load_in_worker())
        except BaseException as e:
            # Drop the frames' locals here, on this thread: an abandoned mlx-lm generator
            # (and its KV cache) is closed now, not later by whichever thread frees the error.
            traceback.clear_frames(e.__traceback__)
            self.stats["cancelled" if isinstance(e, Cancelled) else "failed"] += 1
            if isinstance(e, AudioError):  # the request's audio, past what parsing checks
                raise ApiError(400, one_line(e), param="file", code="invalid_audio") from None
            if isinstance(e, (ValueError, OSError)):  # the request was checked: what fails now is the model's
                self.last_error = f"{type(e).__name__}: {one_line(e)}"
                raise ModelUnavailable(self.id, self.last_error) from None
            raise
        finally:
            self.stats["requests"] += 1
            self.last_used = time.monotonic()
            with self._count_lock:
                self.queued -= 1

    async def run(self, fn: Callable[[Transcriber], object], cancel: threading.Event | None = None):
        """Queue `fn(transcriber)` on this model's thread and await its result."""
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

    async def load(self) -> None:
        await asyncio.wrap_future(self.executor.submit(self._load_in_worker))

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
        # The running job finishes and queued ones are dropped; then, the worker gone, the model
        # is freed here (an unload queued behind them would be dropped with them).
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._unload_in_worker()


# --- both ----------------------------------------------------------------------------

class ModelManager:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.slots = {m: ModelSlot(m, cfg) for m in MODELS}
        self.default_model = cfg.default_model or self._auto_default()
        if self.default_model not in MODELS:
            raise ValueError(f"unknown default model {self.default_model!r}; use one of {sorted(MODELS)}")

    def _auto_default(self) -> str:
        try:
            bundle = Bundle.read(self.cfg.bundle)
        except (OSError, ValueError):  # no bundle yet: requests will say why
            return LLM_MODEL
        return LLM_MODEL if bundle.has("adaptor", "llm") else CTC_MODEL

    def slot(self, model: str | None) -> ModelSlot:
        model = model or self.default_model
        if model not in self.slots:
            raise ApiError(404, f"The model `{model}` does not exist; this server has {', '.join(MODELS)}",
                           param="model", code="model_not_found")
        return self.slots[model]

    async def idle_loop(self) -> None:
        """Unload each model `idle_unload` seconds after its last request."""
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
