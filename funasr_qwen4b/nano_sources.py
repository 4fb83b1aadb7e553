"""The original Fun-ASR-Nano directory, resolved the way FunASR's AutoModel and FunASRNano
resolve it (torch-free: file lookup, config.yaml, the Qwen3 folder, am.mvn), and which of the
two published layouts a directory holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from .files import read_json
from .sources import file_path_metas, read_config_yaml, resolve_file

NANO_FILES = "config.yaml + model.pt + the Qwen3 folder its llm_conf.init_param_path names"
FUNASR, TRANSFORMERS = "funasr", "transformers"


def detect_layout(root: str | Path) -> str:
    """`funasr` (config.yaml + model.pt) or `transformers` (config.json of model_type
    fun_asr_nano); anything else is refused in one line."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Fun-ASR-Nano directory not found: {root} (expected {NANO_FILES}, or a "
                                f"transformers -hf directory)")
    if (root / "config.yaml").is_file() and (root / "model.pt").is_file():
        return FUNASR
    if (root / "config.json").is_file():
        config = read_json(root / "config.json", "expected a Fun-ASR-Nano checkpoint")
        if config.get("model_type") == "fun_asr_nano":
            return TRANSFORMERS
    raise ValueError(f"{root} is neither Fun-ASR-Nano layout: FunASR's has {NANO_FILES}; transformers' has "
                     f"config.json with model_type fun_asr_nano")


@dataclass(frozen=True)
class NanoSource:
    root: Path
    model_pt: Path
    config_yaml: Path
    config: dict
    llm_dir: Path  # the Qwen3 config and tokenizer
    cmvn_file: Path | None

    @classmethod
    def from_dir(cls, root: str | Path) -> "NanoSource":
        root = Path(root)
        if detect_layout(root) != FUNASR:
            raise ValueError(f"{root} is a transformers -hf directory, not FunASR's layout ({NANO_FILES})")
        model_pt, config_yaml = root / "model.pt", root / "config.yaml"
        config = read_config_yaml(config_yaml)
        if config.get("model") != "FunASRNano":
            raise ValueError(f"{config_yaml}: model is {config.get('model')!r}; a Fun-ASR-Nano config says FunASRNano")
        llm_conf = config.get("llm_conf")
        name = llm_conf.get("init_param_path") if isinstance(llm_conf, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{config_yaml}: llm_conf.init_param_path must name the Qwen3 folder")
        metas = file_path_metas(root)
        return cls(root, model_pt, config_yaml, config, _llm_dir(root, name, config_yaml),
                   resolve_file(root, metas, config, "frontend_conf", "cmvn_file", ["am.mvn"]))


# Weights a Qwen3 folder may also hold: FunASRNano never reads them (its LLM's are model.pt's).
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


def llm_files(llm_dir: Path) -> list[Path]:
    """The Qwen3 folder's files FunASRNano reads: config.json and the tokenizer's (no weights)."""
    return sorted(p for p in llm_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_WEIGHTS))


def _llm_dir(root: Path, name: str, config_yaml: Path) -> Path:
    """FunASR reads llm_conf.init_param_path relative to the model's directory unless it is
    absolute; an absolute path that is not there (the trainer's machine) is looked for by its
    last part beside config.yaml."""
    given = Path(name)
    tried = [given] if given.is_absolute() else []
    tried += [root / (given.name if given.is_absolute() else given)]
    for path in tried:
        if (path / "config.json").is_file():
            return path
    raise ValueError(f"{config_yaml}: llm_conf.init_param_path {name!r} names the Qwen3 folder (its "
                            f"config.json and tokenizer), not found at {' or '.join(str(p) for p in tried)}; put "
                            f"that folder beside config.yaml")
