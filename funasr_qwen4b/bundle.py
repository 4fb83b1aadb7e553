"""The converted bundle: bundle.json, components, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
COMPONENTS = ("sensevoice", "adaptor", "llm")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_entry(path: str | Path) -> dict:
    path = Path(path).resolve()
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_atomic(path: str | Path, write_fn, suffix: str | None = None) -> None:
    """`write_fn(tmp_path)` writes beside `path`, then the file is renamed into
    place: a reader never sees a half-written file, and a failure leaves none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def read_bundle(bundle: str | Path) -> dict:
    bundle = Path(bundle)
    path = bundle / BUNDLE_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{bundle} is not a bundle (no {BUNDLE_JSON}); create one with `funasr-qwen4b convert`")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}; reconvert")
    return meta


def precisions(meta: dict) -> dict[str, str]:
    """What each component of a bundle computes in: its dtype, or "8bit"/"4bit" where quantized."""
    components = meta["components"]
    return {c: f"{components[c]['q_bits']}bit" if components[c].get("q_bits") else components[c]["dtype"]
            for c in ("sensevoice", "adaptor", "llm") if c in components}


def require_component(bundle: str | Path, name: str) -> Path:
    meta = read_bundle(bundle)
    if name not in meta.get("components", {}):
        raise ValueError(f"bundle {bundle} has no {name} component; add it with `funasr-qwen4b convert {name} ... -o {bundle}`")
    return Path(bundle) / name


@contextlib.contextmanager
def write_component(bundle: str | Path, name: str, entry: dict, *, force: bool = False,
                    meta: dict | None = None) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success it becomes BUNDLE/name and
    bundle.json lists it with `entry` (and takes the top-level keys in `meta`).
    On any error nothing is left behind.

    A new bundle is built beside its final path and renamed into place, so a
    half-written bundle never exists under the user's name.
    """
    assert name in COMPONENTS, name
    bundle = Path(bundle)
    if bundle.exists() and not bundle.is_dir():
        raise ValueError(f"output {bundle} exists and is not a directory")
    new_bundle = not bundle.exists()
    if not new_bundle:
        existing = read_bundle(bundle) if (bundle / BUNDLE_JSON).exists() else None
        if existing is None and any(bundle.iterdir()):
            raise ValueError(f"output {bundle} is a non-empty directory that is not a bundle; choose another -o")
        if (bundle / name).exists() and not force:
            raise ValueError(f"{bundle / name} already exists; pass --force to replace it")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    stage_root = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", dir=bundle.parent if new_bundle else bundle))
    stage = stage_root / name
    stage.mkdir()
    try:
        yield stage
        if new_bundle:
            _write_meta(stage_root, None, name, entry, meta)
            os.rename(stage_root, bundle)
            return
        old = bundle / name
        trash = stage_root / f"{name}.old"
        if old.exists():
            os.rename(old, trash)
        try:
            os.rename(stage, old)
        except BaseException:
            if trash.exists():
                os.rename(trash, old)
            raise
        _write_meta(bundle, read_bundle(bundle) if (bundle / BUNDLE_JSON).exists() else None, name, entry, meta)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)


def _write_meta(root: Path, meta: dict | None, name: str, entry: dict, extra: dict | None) -> None:
    meta = meta or {"format_version": FORMAT_VERSION, "components": {}}
    meta["components"][name] = entry
    meta.update(extra or {})
    write_json_atomic(root / BUNDLE_JSON, meta)


# Each component's config.json records the weight layout it was written in;
# loaders refuse any other, so no layout is ever guessed or flipped twice.
LAYOUTS = {
    "sensevoice": {"version": 1, "fsmn_block.weight": "mlx conv1d (C_out, K, C_in/groups)"},
    "adaptor": {"version": 1, "self_attn.in_proj": "split into q_proj, k_proj, v_proj (rows q, k, v)"},
}


def write_component_config(stage: Path, name: str, config: dict, **extra) -> None:
    write_json_atomic(stage / "config.json", {"layout": LAYOUTS[name], "config": config, **extra})


def read_component_config(path: str | Path, name: str) -> dict:
    path = Path(path) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; convert the {name} component again")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("layout") != LAYOUTS[name]:
        raise ValueError(f"{path}: layout {data.get('layout')} is not {LAYOUTS[name]}; reconvert with this version")
    return data["config"]


def component_quantization(path: str | Path) -> dict | None:
    """`{"bits", "group_size"}` when the component's linear layers were quantized at conversion."""
    return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("quantization")
