"""A Transcriber result as whisper tools write it: txt, srt, vtt, tsv, json; one
file per input, written atomically with the user's umask. The server renders
its srt and vtt responses with the same writers."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_atomic

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


def timestamp(seconds: float, sep: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT: sep ".")."""
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(segments: list[dict]) -> list[dict]:
    # A subtitle cue needs text: silent pieces (no speech) are segments but not cues.
    return [s for s in segments if s["text"].strip()]


def to_srt(segments: list[dict]) -> str:
    return "".join(f"{i}\n{timestamp(s['start'])} --> {timestamp(s['end'])}\n{s['text'].strip()}\n\n"
                   for i, s in enumerate(_cues(segments), 1))


def to_vtt(segments: list[dict], language: str | None = None) -> str:
    """WebVTT; `language` (the result's) in a `Language:` header line, as YouTube's captions carry it."""
    header = "WEBVTT\n" + (f"Language: {language}\n" if language else "") + "\n"
    return header + "".join(f"{timestamp(s['start'], '.')} --> {timestamp(s['end'], '.')}\n"
                                  f"{s['text'].strip()}\n\n" for s in _cues(segments))


def to_tsv(segments: list[dict]) -> str:
    """whisper's tsv: start and end in integer milliseconds, then the text (tabs and newlines as spaces)."""
    rows = [f"{round(s['start'] * 1000)}\t{round(s['end'] * 1000)}\t{' '.join(s['text'].split())}"
            for s in _cues(segments)]
    return "start\tend\ttext\n" + "".join(r + "\n" for r in rows)


def to_txt(result: dict) -> str:
    """One line per segment, as whisper writes it (the joined text when there are none)."""
    lines = [s["text"].strip() for s in _cues(result["segments"])] or [result["text"]]
    return "".join(line + "\n" for line in lines)


def to_json(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False) + "\n"


def render(result: dict, fmt: str) -> str:
    if fmt == "txt":
        return to_txt(result)
    if fmt == "json":
        return to_json(result)
    if fmt == "srt":
        return to_srt(result["segments"])
    if fmt == "vtt":
        return to_vtt(result["segments"], result.get("language"))
    if fmt == "tsv":
        return to_tsv(result["segments"])
    raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)} or all")


def write_text(path: Path, text: str) -> None:
    """Atomically (a reader sees the old file or the whole new one), with the user's umask."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_outputs(result: dict, out_dir: str | Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    """OUT_DIR/STEM.FORMAT for each format; the directory is created if needed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        write_text(path, render(result, fmt))
        paths.append(path)
    return paths
