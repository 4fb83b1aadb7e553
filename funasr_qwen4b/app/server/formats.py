"""A Transcriber result in OpenAI's response formats (json, text, verbose_json,
srt, vtt) and as server-sent events."""

from __future__ import annotations

import json
import zlib

from fastapi.responses import JSONResponse, PlainTextResponse

from ..outputs import to_srt, to_vtt

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: the text's UTF-8 bytes over their zlib-compressed size."""
    data = text.encode()
    return len(data) / len(zlib.compress(data))


def openai_segment(s: dict) -> dict:
    """A Transcriber segment ({id, start, end, text, tokens}, the tokens' `logprobs` where the LLM
    decoded them, `no_speech` where the rule found none) with OpenAI's statistics, each computed:
    decoding is greedy (temperature 0), `avg_logprob` the mean of the segment's token
    log-probabilities (left out where there are none: a CTC transcript, a segment without tokens),
    `no_speech_prob` the no-speech rule's decision (1 for a piece it found silent, whose text is
    then empty, else 0)."""
    logprobs = s.get("logprobs")
    return {"id": s["id"], "seek": 0, "start": s["start"], "end": s["end"], "text": s["text"],
            "tokens": [int(t) for t in s["tokens"]], "temperature": 0.0,
            **({"avg_logprob": sum(logprobs) / len(logprobs)} if logprobs else {}),
            "compression_ratio": compression_ratio(s["text"]), "no_speech_prob": 1.0 if s.get("no_speech") else 0.0}


def token_logprobs(segments: list[dict]) -> list[dict]:
    """OpenAI's `logprobs`: each token the LLM wrote, in order, as its text, its log-probability
    and its bytes (`token_bytes`, which the model's thread adds); a character split across tokens
    reads as U+FFFD in `token`, its bytes are in `bytes`."""
    return [{"token": b.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(b)}
            for s in segments for b, lp in zip(s.get("token_bytes", []), s.get("logprobs", []))]


def render(result: dict, fmt: str, *, task: str, model: str, words: bool = False,
           logprobs: bool = False) -> JSONResponse | PlainTextResponse:
    """`result`: what Transcriber.transcribe returned (with `translation` for task "translate");
    `words`: verbose_json lists every word with its times, as OpenAI's `words` (the segments' own);
    `logprobs`: json and verbose_json list every token's log-probability, as OpenAI's `logprobs`."""
    text, segments, duration = result["text"], result["segments"], result["seconds"]
    listed = {"logprobs": token_logprobs(segments)} if logprobs else {}
    if task == "translate":  # one segment over the whole audio: the translation is not aligned to the pieces
        text = result["translation"]
        segments = [{"id": 0, "start": 0.0, "end": duration, "text": text, "tokens": []}] if segments else []
    if fmt == "json":
        return JSONResponse({"text": text, **listed})
    if fmt == "text":
        return PlainTextResponse(text)
    if fmt == "srt":
        return PlainTextResponse(to_srt(segments))
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(segments), media_type="text/vtt")
    assert fmt == "verbose_json", fmt
    body = {"task": task, "language": "english" if task == "translate" else result["language"],
            "duration": duration, "text": text, "segments": [openai_segment(s) for s in segments]}
    if words:
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]} for s in segments
                         for w in s["words"]]
    return JSONResponse({**body, **listed, "usage": {"type": "duration", "seconds": duration},
                         "model": model, "tags": list(result.get("tags", [])),  # no tags: no CTC head
                         "tokens": result["tokens"]})


def sse(event: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
