"""The rules arguments are checked by, once for the command line (cli/args.py's parse-time
types) and the Python API (`Transcriber`): a value that breaks one is refused by the name
of the argument (or flag), before any work."""

from __future__ import annotations

import math
from numbers import Integral, Real

from ..audio import SAMPLE_RATE

# split_points looks for its cut at the quietest 100 ms window of the last half of each
# span: below 2 windows (0.2 s) that half holds no window at all.
MIN_SPLIT_SECONDS = 2 * (SAMPLE_RATE // 10) / SAMPLE_RATE


def number(value, name: str, *, integer: bool = False, low: float | None = None, high: float | None = None,
           above: float | None = None, zero: str | None = None):
    """`value` when it is a finite number (an int with `integer`) with low <= value <= high and
    value > above; else ValueError naming `name` and what it takes. `zero`: what 0 means, when
    0 is allowed outside the range (e.g. "never split")."""
    kind = "an integer" if integer else "a finite number"
    ok = (not isinstance(value, bool) and isinstance(value, Integral if integer else Real)
          and math.isfinite(value))
    if ok and not (zero is not None and value == 0):
        ok = (low is None or value >= low) and (high is None or value <= high) and (above is None or value > above)
    if not ok:
        raise ValueError(f"{name} must be {kind}{describe(low, high, above, zero)}, got {value!r}")
    return value


def describe(low=None, high=None, above=None, zero: str | None = None) -> str:
    """The range in words: " from 1 to 600", " above 0", " of at least 0.2, or 0 (never split)"."""
    if low is not None and high is not None:
        text = f" from {low:g} to {high:g}"
    elif above is not None:
        text = f" above {above:g}" + (f" and at most {high:g}" if high is not None else "")
    elif low is not None:
        text = f" of at least {low:g}"
    elif high is not None:
        text = f" of at most {high:g}"
    else:
        text = ""
    return text + (f", or 0 ({zero})" if zero is not None else "")


def max_seconds(value) -> float:
    """Where long audio is split: 0 (never) or at least MIN_SPLIT_SECONDS."""
    return number(value, "max_seconds", low=MIN_SPLIT_SECONDS, zero="never split")


def positive_int(value, name: str) -> int:
    return number(value, name, integer=True, low=1)


def sample_rate(value) -> int:
    """The rate of sample arrays: a whole number of Hz (44100 or 44100.0), at least 1."""
    number(value, "sample_rate", low=1)
    if value != int(value):
        raise ValueError(f"sample_rate must be a whole number of samples a second, got {value!r}")
    return int(value)
