"""A Transcriber result in OpenAI's response formats (json, text, verbose_json,
srt, vtt) and as server-sent events."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse, PlainTextResponse

from ..outputs import to_srt, to_vtt

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")

# OpenAI's verbose_json segments carry decoding statistics this model does not
# compute (greedy, one window per segment); they are given neutral values so
# that typed clients parse the segments.
_SEGMENT_STATS = {"temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}


def openai_segment(s: dict) -> dict:
    """A Transcriber segment ({id, start, end, text, tokens}) with OpenAI's other fields."""
    return {"id": s["id"], "seek": 0, "start": s["start"], "end": s["end"], "text": s["text"],
            "tokens": [int(t) for t in s["tokens"]], **_SEGMENT_STATS}


def render(result: dict, fmt: str, *, task: str, model: str) -> JSONResponse | PlainTextResponse:
    """`result`: what Transcriber.transcribe returned (with `translation` for task "translate")."""
    text, segments, duration = result["text"], result["segments"], result["seconds"]
    if task == "translate":  # one segment over the whole audio: the translation is not aligned to the pieces
        text = result["translation"]
        segments = [{"id": 0, "start": 0.0, "end": duration, "text": text, "tokens": []}] if segments else []
    if fmt == "json":
        return JSONResponse({"text": text})
    if fmt == "text":
        return PlainTextResponse(text)
    if fmt == "srt":
        return PlainTextResponse(to_srt(segments))
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(segments), media_type="text/vtt")
    assert fmt == "verbose_json", fmt
    return JSONResponse({
        "task": task, "language": "english" if task == "translate" else result["language"],
        "duration": duration, "text": text, "segments": [openai_segment(s) for s in segments],
        "usage": {"type": "duration", "seconds": duration},
        "model": model, "tags": list(result.get("tags", [])), "tokens": result["tokens"]})  # no tags: no CTC head


def sse(event: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
