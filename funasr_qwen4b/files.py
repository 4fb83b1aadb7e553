"""Reading files that must be what they claim: content hashes (sha256, and sum64 for the
check at every load), JSON objects, and safetensors tables checked against the file's size."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sum64(path: str | Path) -> str:
    """Every byte of the file, as the sum of its little-endian 64-bit words (mod 2**64; the
    tail zero-padded), in hex. Read at memory speed, it changes with any damage but changes
    that cancel exactly: the check at every load.
    sha256 (`verify`) is the check that nothing can fool."""
    size = os.stat(path).st_size
    total = 0
    if size >= 8:
        total = int(np.memmap(path, dtype="<u8", mode="r", shape=(size // 8,)).sum(dtype=np.uint64))  # wraps
    with open(path, "rb") as f:
        f.seek(size - size % 8)
        total += int.from_bytes(f.read(), "little")
    return f"{total % 2**64:016x}"


def read_json(path: Path, what: str) -> dict:
    """The JSON object in `path`; `what` says what to do when it is missing or broken."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {what}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}; {what}")
    return data


SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2,
                      "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_header(path: str | Path) -> dict[str, dict]:
    """The tensor table of a safetensors file, checked against the file's size: a
    truncated or damaged file is refused here, with its name, before any loader reads it."""
    path = Path(path)
    size = path.stat().st_size
    bad = f"{path} is not a complete safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= size - 8:
            raise ValueError(f"{bad} (its header length field is broken: truncated or overwritten); re-download it")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{bad} (its header is not JSON: overwritten or truncated); re-download it") from None
    if not isinstance(header, dict):
        raise ValueError(f"{bad} (its header is not a table of tensors); re-download it")
    header.pop("__metadata__", None)
    end = 0
    for name, t in header.items():
        try:
            begin, stop = t["data_offsets"]
            count = 1
            for d in t["shape"]:
                count *= d
            ok = 0 <= begin <= stop and stop - begin == count * SAFETENSORS_DTYPES[t["dtype"]]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{bad} (tensor {name!r} is described wrongly); re-download it")
        end = max(end, stop)
    if 8 + n + end != size:
        raise ValueError(f"{bad}: its tensors need {8 + n + end:,} bytes, the file has {size:,} (truncated or "
                         f"appended to); re-download it")
    return header


# A float is NaN or infinite exactly when its exponent bits are all set; so bfloat16 (which
# numpy lacks) is checked as the integers of its width, every float format alike.
_EXPONENT = {"F64": ("<u8", 0x7FF0000000000000), "F32": ("<u4", 0x7F800000), "F16": ("<u2", 0x7C00),
             "BF16": ("<u2", 0x7F80)}


def nonfinite_tensors(path: str | Path, chunk: int = 1 << 24) -> list[str]:
    """The float tensors of a safetensors file that hold NaN or infinity (by bit pattern, through a
    memory map `chunk` values at a time: memory stays flat whatever the file's size)."""
    header = safetensors_header(path)
    with open(path, "rb") as f:
        start = 8 + int.from_bytes(f.read(8), "little")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    bad = []
    for name, t in header.items():
        if t["dtype"] not in _EXPONENT:
            continue
        kind, mask = _EXPONENT[t["dtype"]]
        begin, stop = t["data_offsets"]
        values = data[start + begin:start + stop].view(kind)
        mask = np.array(mask, dtype=kind)
        if any(np.any((values[i:i + chunk] & mask) == mask) for i in range(0, values.size, chunk)):
            bad.append(name)
    return sorted(bad)


def refuse_overwriting(outputs, inputs, flag: str) -> None:
    """Raise (one line) when a file about to be written is one of the command's inputs: the same
    path once links are followed, or the same file (device and inode: a hard link)."""
    seen: dict[object, Path] = {}
    for p in map(Path, inputs):
        seen[os.path.realpath(p)] = p
        try:
            st = p.stat()
        except OSError:
            continue
        seen[(st.st_dev, st.st_ino)] = p
    for out in map(Path, outputs):
        hit = seen.get(os.path.realpath(out))
        if hit is None:
            try:
                st = out.stat()
            except OSError:
                continue
            hit = seen.get((st.st_dev, st.st_ino))
        if hit is not None:
            raise ValueError(f"{flag} would write {out}, which is the input {hit}: inputs are only read; "
                             f"choose another {flag}")
