"""The models and their lifetimes: `ServerConfig`, one `ModelSlot` per model
(its own worker thread, where it loads, transcribes and unloads, in order),
the `ModelManager` that holds them, and the process's memory figures. Which
models a bundle serves follows from its kind (KIND_MODELS)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ... import segments
from ...audio import SAMPLE_RATE, AudioError
from ...bundle import Bundle
from ...config import Backend
from ...decoding import DecodeConfig, token_bytes
from .. import checks
from ..transcriber import Transcriber
from .errors import ApiError, Cancelled, ModelUnavailable, one_line

log = logging.getLogger(__name__)

LLM_MODEL = "funasr-qwen4b"
CTC_MODEL = "sensevoice-small"
NANO_MODEL = "fun-asr-nano"
MODELS = {
    LLM_MODEL: "SenseVoiceSmall → audio adaptor → Qwen3-4B (needs sensevoice, adaptor and llm in the bundle)",
    CTC_MODEL: "SenseVoiceSmall's own CTC head (needs only sensevoice; fast and small)",
    NANO_MODEL: "Fun-ASR-Nano: SenseVoice encoder → its adaptor → Qwen3-0.6B; `prompt` carries hotwords",
}
# The models a bundle serves, by Bundle.kind; a server holds one bundle of each kind at most.
KIND_MODELS = {"qwen4b": (LLM_MODEL, CTC_MODEL), "funasr-nano": (NANO_MODEL,)}
HOTWORD_MODELS = (NANO_MODEL,)  # the models trained with hotwords in their prompt
TIMED_MODELS = (LLM_MODEL, CTC_MODEL)  # word times from SenseVoice's CTC alignment (Fun-ASR-Nano has no CTC head)
# OpenAI's transcription models, by the names its clients send (whisper-1 by default): each answers as
# the server's default model, so a client or tool with a fixed model name works unchanged.
ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
OWNER = "funasr-qwen4b"
MIN_UPLOAD_MB = 0.001  # about 1 KB: below it the limit would round to no bytes at all


@dataclass
class ServerConfig:
    bundle: str | Path | list  # one bundle, or several of different kinds (a qwen4b and a Fun-ASR-Nano one)
    # None: the first bundle's: funasr-qwen4b when it has adaptor + llm, else sensevoice-small; fun-asr-nano
    default_model: str | None = None
    idle_unload: float = 600.0  # seconds without a request before a model is unloaded; 0 = never
    max_upload_mb: float = 25.0
    max_audio_seconds: float = 600.0
    max_seconds: float = 30.0  # with vad "off": long audio is split at quiet points into pieces this long (0 = never)
    vad: str = "auto"  # how audio is cut into utterances before the LLM (segments.VAD_MODES)
    max_segment_seconds: float | None = None  # the longest utterance (default: each bundle's)
    template: str | None = None  # funasr-qwen4b's prompt template text (default: the bundle's)
    decode: DecodeConfig | None = None  # generation settings of every LLM model (default: each bundle's)
    speculate: str | None = None  # "ctc" or "off" for every LLM model (default: each bundle's setting)
    batch_size: int = 8  # requests that wait together run as one batch of up to this many
    batch_wait: float = 0.02  # a batch that is not full waits while requests keep coming this often (10x at most)

    def __post_init__(self):  # the command line's rules (cli/serve.py), for the app built in Python too
        checks.number(self.idle_unload, "idle_unload", low=0)
        checks.number(self.max_upload_mb, "max_upload_mb", low=MIN_UPLOAD_MB, zero="no limit")
        checks.number(self.max_audio_seconds, "max_audio_seconds", low=0)
        checks.max_seconds(self.max_seconds)
        segments.vad_mode(self.vad)
        if self.max_segment_seconds is not None:
            segments.max_segment_seconds(self.max_segment_seconds)
        checks.positive_int(self.batch_size, "batch_size")
        checks.number(self.batch_wait, "batch_wait", low=0, high=10)
        if self.default_model is not None and self.default_model not in MODELS:
            raise ValueError(f"default_model must be one of {', '.join(MODELS)}, got {self.default_model!r}")
        if not self.bundles:
            raise ValueError("bundle: give at least one bundle")

    @property
    def bundles(self) -> list[str]:
        return [str(b) for b in self.bundle] if isinstance(self.bundle, (list, tuple)) else [str(self.bundle)]


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

@dataclass(eq=False)  # compared by identity: it holds an array
class Waiting:
    """A transcription request waiting for its model's thread."""

    samples: np.ndarray
    key: tuple  # (language, translate, hotwords): requests batch only with their like (one prompt a batch)
    on_text: Callable[[str], None] | None
    cancel: threading.Event
    future: Future


class ModelSlot:
    """One model: its own worker thread (the queue), loaded lazily, unloadable."""

    def __init__(self, model_id: str, cfg: ServerConfig, bundle: str | None = None):
        self.id, self.cfg, self.bundle = model_id, cfg, bundle or cfg.bundles[0]  # the bundle it loads
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{model_id}")
        self.model: Transcriber | None = None
        self.created = int(time.time())
        self.loaded_at: float | None = None
        self.load_seconds: float | None = None
        self.last_used = time.monotonic()
        self.last_error: str | None = None
        self._count_lock = threading.Lock()
        self.queued = 0  # submitted and not finished (waiting + running)
        self.waiting: list[Waiting] = []  # requests not yet taken into a batch
        # batches: runs of more than one request together; batched: the requests they held
        self.stats = {"requests": 0, "cancelled": 0, "failed": 0, "loads": 0, "unloads": 0, "batches": 0,
                      "batched": 0}

    # Everything named _in_worker runs on the slot's own thread.
    def _load_in_worker(self) -> Transcriber:
        if self.model is not None:
            return self.model
        t0 = time.perf_counter()
        # the upload was bounded when it was read (requests.decode_upload): the same bound, or none
        bounds = {"max_seconds": self.cfg.max_seconds, "max_audio_seconds": self.cfg.max_audio_seconds or None,
                  "vad": self.cfg.vad, "max_segment_seconds": self.cfg.max_segment_seconds}
        try:
            bundle = Bundle.read(self.bundle)
            if self.id not in KIND_MODELS[bundle.kind]:  # the bundle changed kind since the server started
                raise ValueError(f"{bundle.root} is now a {bundle.kind} bundle, which does not serve {self.id}; "
                                 "restart the server")
            if self.id == NANO_MODEL:
                model = Transcriber.load(bundle, Backend.MLX, decode=self.cfg.decode, speculate=self.cfg.speculate,
                                         **bounds)
            elif self.id == LLM_MODEL:
                bundle.require("adaptor", "llm", why=f"{LLM_MODEL} needs them; {CTC_MODEL} needs only sensevoice")
                model = Transcriber.load(bundle, Backend.MLX, template=self.cfg.template, decode=self.cfg.decode,
                                         speculate=self.cfg.speculate, **bounds)
            else:
                if not (bundle.dir("sensevoice") / "tokenizer.model").is_file():
                    raise ValueError(f"{bundle.root / 'sensevoice'} has no tokenizer.model (its source had no "
                                     f".bpe.model), so CTC transcripts would be token ids; reconvert with it")
                model = Transcriber.load(bundle, Backend.MLX, ctc_only=True, **bounds)
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

    def _fail(self, item: "Waiting", e: BaseException) -> None:
        """A request's error as the client sees it."""
        traceback.clear_frames(e.__traceback__)  # an abandoned decoder's cache is freed now, on this thread
        cancelled = isinstance(e, Cancelled) or item.cancel.is_set()
        self.stats["cancelled" if cancelled else "failed"] += 1
        if cancelled:
            e = Cancelled()
        elif isinstance(e, AudioError):  # the request's audio, past what parsing checks
            e = ApiError(400, one_line(e), param="file", code="invalid_audio")
        elif isinstance(e, (ValueError, OSError)):  # the request was checked: what fails now is the model's
            self.last_error = f"{type(e).__name__}: {one_line(e)}"
            e = ModelUnavailable(self.id, self.last_error)
        item.future.set_exception(e)

    def _next_batch(self) -> list["Waiting"]:
        """The waiting requests that run together: the oldest, and those after it with the same
        language, task and hotwords, up to batch_size; cancelled ones are answered and dropped."""
        with self._count_lock:
            for item in [i for i in self.waiting if i.cancel.is_set()]:
                self.waiting.remove(item)
                self._done(item, Cancelled())
            if not self.waiting:
                return []
            key = self.waiting[0].key
            batch = [i for i in self.waiting if i.key == key][: self.cfg.batch_size]
            self.waiting = [i for i in self.waiting if i not in batch]
            return batch

    def _done(self, item: "Waiting", outcome) -> None:
        self.stats["requests"] += 1
        self.last_used = time.monotonic()
        self.queued -= 1  # before the outcome is given: a client that has its answer sees the counters final
        if isinstance(outcome, BaseException):
            self._fail(item, outcome)
        else:
            item.future.set_result(outcome)

    def _gather(self) -> None:
        """Requests sent together arrive some ms apart (each upload is read and decoded first): a
        batch that is not full waits while more keep coming, batch_wait at a time, at most ten."""
        for _ in range(10):
            with self._count_lock:
                n = len(self.waiting)
            if not 0 < n < self.cfg.batch_size or self.cfg.batch_wait <= 0:
                return
            time.sleep(self.cfg.batch_wait)
            with self._count_lock:
                if len(self.waiting) == n:  # none came: the burst is over
                    return

    def _drain_in_worker(self) -> None:
        """Run what is waiting as a batch (one job is queued per request; a job finding nothing
        left, its request taken by an earlier batch, returns). Each request gets its own outcome:
        a batch that fails runs again one at a time (the Transcriber's batching policy), so that
        only the request at fault is told."""
        self._gather()
        batch = self._next_batch()
        if not batch:
            return
        try:
            outcomes = list(self._transcribe_in_worker(batch))
        except Exception as e:  # the model's (it cannot load), not one request's: each is told
            outcomes = [(k, e) for k in range(len(batch))]
        with self._count_lock:
            for k, r in outcomes:
                item = batch[k]
                # a client gone mid-batch: its row stopped early, and its text is nobody's
                self._done(item, Cancelled() if item.cancel.is_set() and not isinstance(r, Exception) else r)

    def _transcribe_in_worker(self, batch: list["Waiting"]) -> Iterator[tuple[int, dict | Exception]]:
        model = self._load_in_worker()
        language, translate, hotwords = batch[0].key
        if len(batch) > 1:
            self.stats["batches"] += 1
            self.stats["batched"] += len(batch)
        outcomes = model.transcribe_each([i.samples for i in batch], SAMPLE_RATE, language=language,
                                         translate=translate, hotwords=list(hotwords) or None,
                                         on_texts=[i.on_text for i in batch], batch_size=self.cfg.batch_size)
        return ((k, _with_token_bytes(r, model) if isinstance(r, dict) else r) for k, r in outcomes)

    async def transcribe(self, samples, *, language: str | None = None, translate: bool = False,
                         hotwords: tuple[str, ...] = (), on_text: Callable[[str], None] | None = None,
                         cancel: threading.Event | None = None) -> dict:
        """Queue a transcription on this model's thread and await its result. Requests that wait
        together (same language, task and hotwords) run as one batch of up to batch_size; each
        streams and is cancelled on its own (`on_text` raising Cancelled ends its row alone)."""
        item = Waiting(samples, (language, translate, tuple(hotwords)), on_text, cancel or threading.Event(), Future())
        with self._count_lock:
            self.queued += 1
            self.waiting.append(item)
        try:
            self.executor.submit(self._drain_in_worker)
        except RuntimeError:  # shutting down
            with self._count_lock:
                self.queued -= 1
                self.waiting.remove(item)
            raise ApiError(503, "server is shutting down", code="shutting_down") from None
        try:
            return await asyncio.wrap_future(item.future)
        except asyncio.CancelledError:
            item.cancel.set()  # the request is gone: a waiting one is dropped, a running row stops at its next text
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


# --- all of them ----------------------------------------------------------------------

def _with_token_bytes(result: dict, model: Transcriber) -> dict:
    """Each segment with the LLM's token log-probabilities gets its tokens' bytes (`token_bytes`),
    from the model's tokenizer while it is loaded: what include=logprobs answers with."""
    for s in result["segments"]:
        if "logprobs" in s:
            s["token_bytes"] = token_bytes(model.pipeline.setup.tokenizer, s["tokens"])
    return result


def _read(path: str) -> Bundle | None:
    try:
        return Bundle.read(path)
    except (OSError, ValueError):  # no bundle yet: requests will say why
        return None


class ModelManager:
    def __init__(self, cfg: ServerConfig):
        self.cfg, self.slots = cfg, {}
        defaults = []
        for path in cfg.bundles:
            bundle = _read(path)
            kind = bundle.kind if bundle is not None else "qwen4b"  # unreadable: served as the one it was
            taken = [m for m in KIND_MODELS[kind] if m in self.slots]
            if taken:
                raise ValueError(f"{path} and {self.slots[taken[0]].bundle} are both {kind} bundles; a server holds "
                                 f"one bundle of each kind (one serves {', '.join(KIND_MODELS[kind])})")
            self.slots.update({m: ModelSlot(m, cfg, path) for m in KIND_MODELS[kind]})
            defaults.append(CTC_MODEL if kind == "qwen4b" and bundle is not None and not bundle.has("adaptor", "llm")
                            else KIND_MODELS[kind][0])
        self.default_model = cfg.default_model or defaults[0]
        if self.default_model not in self.slots:
            raise ValueError(f"default model {self.default_model!r} is not served here; use one of "
                             f"{', '.join(self.slots)}")

    def slot(self, model: str | None) -> ModelSlot:
        """The model a request names: none or one of OpenAI's (ALIASES) is the default model."""
        model = self.default_model if not model or model in ALIASES else model
        if model not in self.slots:
            raise ApiError(404, f"The model `{model}` does not exist; this server has {', '.join(self.slots)} "
                           f"({', '.join(ALIASES)} name {self.default_model}, the default)", param="model",
                           code="model_not_found")
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
