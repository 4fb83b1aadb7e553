"""Writing one component into a bundle: built in a staging directory, checked to fit the
components already there, recorded in bundle.json with its files' sizes and hashes, and only
then renamed into place."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from funasr_qwen4b.atomic import apply_umask, staging, swap_in, write_json_atomic
from funasr_qwen4b.bundle import BUNDLE_JSON, COMPONENTS, FORMAT_VERSION, LAYOUTS, Bundle, check_fit
from funasr_qwen4b.files import sha256_file, sum64


def source_entry(path: str | Path) -> dict:
    path = Path(path).resolve()
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def file_records(root: Path) -> dict[str, dict]:
    """Every file under `root` (hidden ones aside): what conversion wrote, as bundle.json records it."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = {"bytes": p.stat().st_size, "sha256": sha256_file(p), "sum64": sum64(p)}
    return out


@contextlib.contextmanager
def write_component(bundle: str | Path, name: str, entry: dict, *, force: bool = False,
                    meta: dict | None = None) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success it becomes BUNDLE/name and
    bundle.json lists it with `entry` (plus the files written, with their sizes and
    checksums) and takes the top-level keys in `meta`. On any error nothing is left behind.

    A new bundle is built beside its final path and renamed into place, so a
    half-written bundle never exists under the user's name.
    """
    assert name in COMPONENTS, name
    bundle = Path(bundle)
    if bundle.exists() and not bundle.is_dir():
        raise ValueError(f"output {bundle} exists and is not a directory; choose another -o")
    new_bundle = not bundle.exists()
    existing = None
    if not new_bundle:
        existing = Bundle.read(bundle) if (bundle / BUNDLE_JSON).exists() else None
        if existing is None and any(p for p in bundle.iterdir() if not p.name.startswith(".")):
            raise ValueError(f"output {bundle} is a non-empty directory that is not a bundle; choose another -o")
        if (bundle / name).exists() and not force:
            raise ValueError(f"{bundle / name} already exists; pass --force to replace it")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with staging(bundle.parent if new_bundle else bundle, bundle.name) as stage_root:
        stage = stage_root / name
        stage.mkdir()
        yield stage
        if existing is not None:  # what is already in the bundle must fit what comes
            check_fit({**{n: existing.root / n for n in existing.components if n != name}, name: stage},
                      f"{name} for {bundle}")
        apply_umask(stage)
        entry = {**entry, "files": file_records(stage)}
        if new_bundle:
            _write_meta(stage_root, None, name, entry, meta)
            apply_umask(stage_root)
            os.rename(stage_root, bundle)
            return
        swap_in(stage, bundle / name, stage_root / f"{name}.old")
        _write_meta(bundle, existing.meta if existing is not None else None, name, entry, meta)


def _write_meta(root: Path, meta: dict | None, name: str, entry: dict, extra: dict | None) -> None:
    meta = meta or {"format_version": FORMAT_VERSION, "components": {}}
    meta["components"][name] = entry
    meta.update(extra or {})
    write_json_atomic(root / BUNDLE_JSON, meta)


def write_component_config(stage: Path, name: str, config: dict, **extra) -> None:
    write_json_atomic(stage / "config.json", {"layout": LAYOUTS[name], "config": config, **extra})
