"""Test-set manifests: JSONL, one utterance a line, read and validated once
(errors name the file and the line)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from .config import LANGUAGE_IDS
from .nospeech import MIN_SECONDS
from .text import cer_text


class ManifestError(ValueError):
    """A manifest problem; the message names the file and line."""


REQUIRED_KEYS = ("id", "audio", "text")
# SenseVoice's languages; a region may follow (zh-CN, en_US).
LANGUAGES = tuple(sorted(set(LANGUAGE_IDS) - {"auto", "nospeech"}))


def _known_lang(lang: str) -> bool:
    return lang.lower().replace("_", "-").split("-")[0] in LANGUAGES


@dataclass
class Entry:
    line: int
    id: str
    audio: Path
    text: str
    lang: str | None = None


def _entry(obj, path: Path, no: int, seen: dict[str, int], check_audio: bool) -> Entry | str:
    """The entry on line `no`, or what is wrong with it."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        return f"missing key {', '.join(repr(k) for k in missing)} (each line needs {', '.join(REQUIRED_KEYS)})"
    uid, audio, text, lang = obj["id"], obj["audio"], obj["text"], obj.get("lang")
    if not isinstance(uid, (str, int)) or isinstance(uid, bool) or str(uid) == "":
        return "'id' must be a non-empty string"
    uid = str(uid)
    if not isinstance(audio, str) or not audio:
        return "'audio' must be a non-empty path string"
    if not isinstance(text, str) or not text.strip():
        return f"empty text for id {uid!r}"
    if not cer_text(text):
        return f"text {text!r} of id {uid!r} has no characters left after normalisation"
    if lang is not None and not (isinstance(lang, str) and _known_lang(lang)):
        return (f"unknown lang {lang!r} for id {uid!r}; use one of {', '.join(LANGUAGES)} (a region may follow: "
                f"zh-CN), or leave it out")
    if uid in seen:
        return f"duplicate id {uid!r} (first on line {seen[uid]})"
    seen[uid] = no
    audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
    if check_audio:
        problem = _audio_problem(audio_path)
        if problem:
            return f"{problem} (id {uid!r})"
    return Entry(no, uid, audio_path, text, lang)


def _audio_problem(path: Path) -> str | None:
    """What makes `path` unusable, from its header alone (cheap for a whole test set)."""
    if not path.is_file():
        return f"audio file not found: {path}" if not path.is_dir() else f"audio {path} is a directory"
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile's errors have no common type
        return f"cannot read audio {path}: {' '.join(str(e).split())}"
    if info.samplerate <= 0 or info.frames < MIN_SECONDS * info.samplerate:
        return (f"audio {path} is {1000 * info.frames / max(info.samplerate, 1):.0f} ms; at least "
                f"{1000 * MIN_SECONDS:.0f} ms is needed to hold speech: fix the clip or remove the line")
    return None


def load_manifest(path: str | Path, *, check_audio: bool = True) -> list[Entry]:
    """JSONL (UTF-8), one utterance a line: {"id", "audio" (relative to the manifest or absolute), "text",
    optional "lang" (one of LANGUAGES, a region may follow), anything else ignored}. Blank lines are
    skipped. With `check_audio`, each clip's header is read: readable, at least MIN_SECONDS long.
    Raises ManifestError naming the first bad line (and how many more there are)."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"manifest {path} is a directory; give the .jsonl file")
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8-sig"))  # -sig: a BOM (Notepad) is no error
            except UnicodeDecodeError:
                problems.append(f"{path} line {no}: not UTF-8 text; save the manifest as UTF-8")
                continue
            except json.JSONDecodeError as e:
                problems.append(f"{path} line {no}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            got = _entry(obj, path, no, seen, check_audio)
            if isinstance(got, str):
                problems.append(f"{path} line {no}: {got}")
            else:
                entries.append(got)
    if problems:
        more = f" (and {len(problems) - 1} more bad line{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise ManifestError(problems[0] + more)
    if not entries:
        raise ManifestError(f"manifest {path} has no utterances")
    return entries
