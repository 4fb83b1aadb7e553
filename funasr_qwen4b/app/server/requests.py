"""What a request asks for: the multipart form read and checked into a
`TranscriptionRequest`, the upload decoded to 16 kHz samples, and the
middleware that refuses bodies over the upload limit with 413."""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import Request
from starlette.formparsers import MultiPartException

from ...audio import SAMPLE_RATE, AudioError, read_audio
from ...config import LANGUAGE_IDS
from ...nospeech import MIN_SECONDS
from ...prompt import NANO_LANGUAGES, nano_instruction
from .errors import ApiError, one_line
from .formats import RESPONSE_FORMATS
from .slots import CTC_MODEL, HOTWORD_MODELS, NANO_MODEL, TIMED_MODELS, ModelManager, ModelSlot


@dataclass
class TranscriptionRequest:
    slot: ModelSlot
    format: str  # one of RESPONSE_FORMATS
    language: str | None  # None: the bundle's query row (Fun-ASR-Nano: its prompt names none)
    stream: bool
    samples: np.ndarray  # 16 kHz mono float32
    hotwords: tuple[str, ...] = ()  # Fun-ASR-Nano's prompt lists them
    words: bool = False  # verbose_json lists each word's times
    logprobs: bool = False  # the answer lists each token's log-probability (include[]=logprobs)


def _bool(value, name: str) -> bool:
    if value is None:
        return False
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ApiError(400, f"{name} must be true or false, got {value!r}", param=name, code="invalid_value")


def _language(value, model: str) -> str | None:
    """OpenAI's ISO-639-1 (`en`, `zh-CN`, `ja_JP`) → SenseVoice's language id (Fun-ASR-Nano: the
    codes its prompt names)."""
    if value is None or str(value).strip() == "":
        return None
    lang = str(value).strip().lower().replace("_", "-").split("-")[0]
    known = ("auto", *NANO_LANGUAGES) if model == NANO_MODEL else sorted(LANGUAGE_IDS)
    if lang not in known:
        raise ApiError(400, f"unsupported language {value!r}; {model} knows {', '.join(known)}",
                       param="language", code="unsupported_language")
    return lang


def _hotwords(fields: dict, model: str) -> tuple[str, ...]:
    """The hotwords a request gives: for a model trained with them, `prompt` (OpenAI's field, which
    other models accept and ignore, as before) or `hotwords`, words separated by commas or newlines;
    `hotwords` to any other model is refused, never silently dropped."""
    if model not in HOTWORD_MODELS:
        if (fields.get("hotwords") or "").strip():
            raise ApiError(400, f"model {model} has no hotword training; hotwords work with "
                           f"{', '.join(HOTWORD_MODELS)}", param="hotwords", code="unsupported_hotwords")
        return ()
    given = [name for name in ("prompt", "hotwords") if (fields.get(name) or "").strip()]
    if len(given) > 1:
        raise ApiError(400, "prompt and hotwords both give the hotwords: send one", param="hotwords",
                       code="invalid_value")
    if not given:
        return ()
    words = tuple(w.strip() for w in re.split("[,，\n]", fields[given[0]]) if w.strip())
    try:
        nano_instruction(words)
    except ValueError as e:
        raise ApiError(400, one_line(e), param=given[0], code="invalid_value") from None
    return words


_TOO_LONG = re.compile(r" is ([0-9.]+) s long, over the bound of ")  # audio.py's length refusal


def decode_upload(data: bytes, filename: str, max_audio_seconds: float) -> np.ndarray:
    """Uploaded bytes → 16 kHz mono float32, read exactly as the command line reads a file
    (read_audio: libsndfile's formats directly, M4A, MP4, WebM and the rest through ffmpeg).
    ffmpeg needs a file it can seek in (an MP4's index may come last), so the upload is
    written to a private temporary directory, removed once read. Audio longer than
    `max_audio_seconds` (0: no limit) is refused from its header before it is decoded, or,
    where the container does not say, once ffmpeg has decoded 1 s past it; audio shorter than
    100 ms (OpenAI's minimum too) after."""
    if not data:
        raise ApiError(400, f"uploaded file {filename!r} is empty", param="file", code="invalid_audio")
    limit = max_audio_seconds or None
    with tempfile.TemporaryDirectory(prefix="funasr-qwen4b-upload-") as tmp:
        # the upload's own name, as far as it is safe, so that the server's log names it
        safe = re.sub(r"[^\w.-]+", "_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip(".")[-100:]
        path = Path(tmp) / (safe or "upload")
        path.write_bytes(data)
        try:
            samples = read_audio(path, max_seconds=limit)
        except AudioError as e:
            message = one_line(str(e).replace(str(path), repr(filename)))
            if limit is not None and (long := _TOO_LONG.search(message)):
                seconds = float(long[1])  # ffmpeg's formats: what it decoded, at most 1 s past the limit
                length = f"{seconds:.1f} s long" if seconds > limit + 1 else f"over {limit:g} s long"
                raise ApiError(400, f"audio {filename!r} is {length}; this server accepts at most {limit:g} s "
                               f"(--max-audio-seconds)", param="file", code="audio_too_long") from None
            raise ApiError(400, message, param="file", code="invalid_audio") from None
    if samples.size < MIN_SECONDS * SAMPLE_RATE:
        raise ApiError(400, f"audio {filename!r} is {1000 * samples.size / SAMPLE_RATE:.0f} ms long; at least "
                       f"{1000 * MIN_SECONDS:.0f} ms is needed", param="file", code="audio_too_short")
    return samples


def _listed(form, name: str) -> list[str]:
    """A list field as OpenAI's clients send it (`name[]`, once per item) or as plain `name` fields."""
    return [v.strip() for key in (f"{name}[]", name) for v in form.getlist(key) if isinstance(v, str) and v.strip()]


def _include(form, fmt: str, task: str, model: str) -> bool:
    """OpenAI's `include[]`: its one value, logprobs, lists each token the LLM wrote with its
    log-probability, in json and verbose_json (and the stream's final event). Where there are
    none it is refused by name rather than answered without them: a CTC transcript, a translation."""
    items = _listed(form, "include")
    if bad := sorted(set(items) - {"logprobs"}):
        raise ApiError(400, f"unknown include value {bad[0]!r}; OpenAI's one is logprobs", param="include",
                       code="invalid_value")
    if not items:
        return False
    if model == CTC_MODEL:
        raise ApiError(400, f"{model} transcribes with its CTC head, which gives no token log-probabilities; use "
                       f"an LLM model for include=logprobs", param="include", code="unsupported_include")
    if task == "translate":
        raise ApiError(400, "a translation has no token log-probabilities; transcribe for include=logprobs",
                       param="include", code="unsupported_include")
    if fmt not in ("json", "verbose_json"):
        raise ApiError(400, f"token log-probabilities come in json or verbose_json; set response_format to one of "
                       f"them (got {fmt})", param="include", code="invalid_value")
    return True


def _word_times(form, fmt: str, task: str, model: str) -> bool:
    """Whether the answer lists each word's times: `timestamp_granularities[]` holds word (segments
    are always given). Only verbose_json carries them, and only a transcript aligned by a CTC head
    has them (TIMED_MODELS); a model without one answers without `words`."""
    grains = _listed(form, "timestamp_granularities")
    if bad := sorted(set(grains) - {"word", "segment"}):
        raise ApiError(400, f"unsupported timestamp_granularities {', '.join(map(repr, bad))}; use word, segment "
                       f"or both", param="timestamp_granularities", code="invalid_value")
    if "word" not in grains:
        return False
    if fmt != "verbose_json":
        raise ApiError(400, f"word timestamps come in verbose_json; set response_format=verbose_json (got {fmt})",
                       param="timestamp_granularities", code="invalid_value")
    if task == "translate":
        raise ApiError(400, "a translation is not aligned to the audio: it has no word timestamps; transcribe "
                       "for them", param="timestamp_granularities", code="invalid_value")
    return model in TIMED_MODELS


async def parse(request: Request, task: str, manager: ModelManager) -> TranscriptionRequest:
    """The form of a transcription (`task` "transcribe") or translation ("translate") request.
    `prompt` carries Fun-ASR-Nano's hotwords; other models accept it and ignore it, as
    `temperature` is; `include[]` and `timestamp_granularities[]` are answered or refused."""
    try:
        form = await request.form(max_files=1, max_fields=64)
    except MultiPartException as e:
        raise ApiError(400, f"bad multipart body: {e.message}", code="invalid_request") from None
    except ApiError:  # the upload limit, raised while the body is read
        raise
    except Exception as e:
        raise ApiError(400, f"cannot parse the request body: {one_line(e)}", code="invalid_request") from None
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
    language = _language(fields.get("language"), slot.id) if task == "transcribe" else None
    stream = _bool(fields.get("stream"), "stream") if task == "transcribe" else False
    hotwords = _hotwords(fields, slot.id)
    logprobs = _include(form, fmt, task, slot.id)
    words = _word_times(form, fmt, task, slot.id)
    if task == "translate" and slot.id == CTC_MODEL:
        llms = [m for m in manager.slots if m != CTC_MODEL]
        raise ApiError(400, f"model {slot.id} cannot translate (it has no LLM)" +
                       (f"; use {', '.join(llms)}" if llms else ""), param="model", code="unsupported_task")
    data = await upload.read()
    name = upload.filename or "file"
    await upload.close()
    samples = await asyncio.to_thread(decode_upload, data, name, manager.cfg.max_audio_seconds)
    return TranscriptionRequest(slot, fmt, language, stream, samples, hotwords, words, logprobs)


class UploadLimit:
    """ASGI middleware: refuses request bodies over `max_bytes` (0: no limit) with 413,
    at once from Content-Length, or as soon as a chunked body goes past it."""

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
