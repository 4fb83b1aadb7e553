"""What one LLM pass costs at 1, 2, ... new positions, measured on this machine for one model
shape and precision (`bench --calibrate`, or the first speculation that finds none), kept in
the user's cache directory: speculation sizes each pass by it (`decoding.draft_size`). Keyed by
the device's name and the model's identity (its shapes, dtype and quantization: weights' values
do not change what a pass costs), written whole (atomic), and read leniently: a file that is
unreadable or of another key is as none, with a warning, since calibrating again replaces it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .atomic import write_json_atomic

log = logging.getLogger(__name__)


CACHE_ENV = "FUNASR_QWEN4B_CACHE"
# "off": speculation does not measure the costs where none are cached, and sizes its passes by
# the rule without them (the whole window; one draft token after a pass that kept none)
MEASURE_ENV = "FUNASR_QWEN4B_MEASURE_PASSES"
FIRST_USE_BLOCKS = 3  # enough for a median; `bench --calibrate --reps N` measures with more


def measure_on_first_use() -> bool:
    return os.environ.get(MEASURE_ENV, "").strip().lower() not in ("off", "0")


def cache_dir() -> Path:
    """$FUNASR_QWEN4B_CACHE, else $XDG_CACHE_HOME/funasr-qwen4b, else ~/.cache/funasr-qwen4b."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "funasr-qwen4b"


def path_for(device: str, identity: dict) -> Path:
    key = json.dumps({"device": device, "model": identity}, sort_keys=True)
    return cache_dir() / f"pass-costs-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def save(device: str, identity: dict, seconds: list[float], **about) -> Path:
    """Seconds of one pass over 1..len(seconds) new positions; `about`: how it was measured."""
    if not seconds or not all(s > 0 for s in seconds):
        raise ValueError(f"pass costs must be positive seconds, got {seconds}")
    path = path_for(device, identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"device": device, "model": identity, "seconds": list(seconds), **about})
    return path


def load(device: str, identity: dict) -> list[float] | None:
    """The measured costs for this device and model, or None where none are cached."""
    path = path_for(device, identity)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        seconds = rec["seconds"]
        if rec["device"] != device or rec["model"] != identity or not seconds \
                or not all(isinstance(s, (int, float)) and s > 0 for s in seconds):
            raise ValueError("not this device's and model's positive seconds")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable pass costs (%s); the next speculation measures them again and replaces "
                    "it (or `funasr-qwen4b bench --calibrate`)", path, e)
        return None
    return [float(s) for s in seconds]


def cached_or_measured(device: str, identity: dict, positions: int, context: int,
                       measure: Callable[[int], list[float]]) -> list[float] | tuple:
    """The cached costs, else `measure(FIRST_USE_BLOCKS)`'s (1..`positions`), stored; () where
    none are cached and measuring on first use is off. A cache folder that cannot be written
    costs a warning (and a measurement on the next load), not the run."""
    seconds = load(device, identity)
    if seconds or not measure_on_first_use():
        return seconds or ()
    log.info("measuring what one pass costs at 1..%d positions on %s (once for this model; %s=off skips it)",
             positions, device, MEASURE_ENV)
    seconds = measure(FIRST_USE_BLOCKS)
    try:
        save(device, identity, seconds, context=context, blocks=FIRST_USE_BLOCKS)
    except OSError as e:
        log.warning("pass costs not stored (%s): measured again on the next load; set %s to a writable folder",
                    e, CACHE_ENV)
    return seconds
