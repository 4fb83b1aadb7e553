"""The original SenseVoiceSmall directory, resolved the way FunASR's AutoModel
resolves it (torch-free: file lookup, config.yaml, am.mvn)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

SENSEVOICE_FILES = "model.pt + config.yaml (+ am.mvn, the sentencepiece .bpe.model)"


@dataclass(frozen=True)
class SenseVoiceSource:
    root: Path
    model_pt: Path
    config_yaml: Path
    config: dict
    cmvn_file: Path | None
    bpemodel: Path | None

    @classmethod
    def from_dir(cls, root: str | Path) -> "SenseVoiceSource":
        root = Path(root)
        model_pt, config_yaml = original_files(root, "SenseVoice", SENSEVOICE_FILES)
        config = read_config_yaml(config_yaml)
        metas = file_path_metas(root)
        return cls(root, model_pt, config_yaml, config,
                   resolve_file(root, metas, config, "frontend_conf", "cmvn_file", ["am.mvn"]),
                   resolve_file(root, metas, config, "tokenizer_conf", "bpemodel",
                            ["chn_jpn_yue_eng_ko_spectok.bpe.model", "bpe.model"]))


def original_files(root: Path, what: str, expected: str) -> tuple[Path, Path]:
    """model.pt and config.yaml of an original FunASR directory, each there."""
    if not root.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {root} (expected {expected})")
    model_pt, config_yaml = root / "model.pt", root / "config.yaml"
    for p in (model_pt, config_yaml):
        if not p.is_file():
            raise FileNotFoundError(f"{p.name} missing in {root} (expected {expected})")
    return model_pt, config_yaml


def read_config_yaml(path: Path) -> dict:
    """A FunASR config.yaml: a mapping, or one line naming the file."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return config


def file_path_metas(root: Path) -> dict:
    """configuration.json's `file_path_metas`: how FunASR finds am.mvn and the
    bpe model although config.yaml says `cmvn_file: null`."""
    path = root / "configuration.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("file_path_metas") or {}
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"cannot parse {path}: {e}") from None


def resolve_file(root: Path, metas: dict, config: dict, section: str, key: str, fallbacks: list[str]) -> Path | None:
    """Same precedence as FunASR: configuration.json, then a file of the usual
    name beside model.pt (download_model_from_hub), then config.yaml's own value."""
    candidates = [(metas.get(section) or {}).get(key), *fallbacks, (config.get(section) or {}).get(key)]
    for name in candidates:
        if isinstance(name, str) and name and (root / name).is_file():
            return root / name
    return None


def parse_am_mvn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi nnet text `am.mvn` → (shift, scale); features become (x + shift) * scale.

    The vectors are the bracket blocks on the `<LearnRateCoef>` lines after
    `<AddShift>` and `<Rescale>`; the file's first block (`<Splice> [ 0 ]`) is not the shift.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[str, np.ndarray] = {}
    for i, line in enumerate(lines):
        head = line.split()[:1]
        if head and head[0] in ("<AddShift>", "<Rescale>") and i + 1 < len(lines):
            found[head[0]] = _bracket_vector(lines[i + 1], path, head[0])
    missing = [k for k in ("<AddShift>", "<Rescale>") if k not in found]
    if missing:
        raise ValueError(f"{path}: no {' / '.join(missing)} block; is this a FunASR am.mvn?")
    shift, scale = found["<AddShift>"], found["<Rescale>"]
    if shift.shape != scale.shape:
        raise ValueError(f"{path}: <AddShift> has {shift.size} values but <Rescale> has {scale.size}")
    return shift, scale


def _bracket_vector(line: str, path: Path, what: str) -> np.ndarray:
    parts = line.split()
    if parts[:1] != ["<LearnRateCoef>"] or "[" not in parts or parts[-1] != "]":
        raise ValueError(f"{path}: the line after {what} is not '<LearnRateCoef> c [ ... ]'")
    values = parts[parts.index("[") + 1:-1]
    try:
        return np.array([float(v) for v in values], dtype=np.float32)
    except ValueError:
        raise ValueError(f"{path}: non-numeric value in the {what} vector") from None
