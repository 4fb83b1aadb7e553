"""Reading original .pt checkpoints: never a full unpickle."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from funasr_qwen4b.config import SenseVoiceConfig, sensevoice_config_from_yaml
from funasr_qwen4b.ctc import CtcTokenizer
from funasr_qwen4b.keys import check_shapes, sensevoice_shapes
from funasr_qwen4b.sources import SenseVoiceSource

# Where training scripts commonly nest the weights, and the hyperparameters beside them.
STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model", "adaptor")
CONFIG_WRAPPERS = ("config", "cfg", "args", "hparams", "hyper_parameters", "model_config", "adaptor_config")


def load_pt(path: str | Path) -> object:
    """torch.load with weights_only=True: tensors and plain containers only."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the checkpoint file inside it (a .pt)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..); files of torch < 1.6 are a plain pickle (protocol 2+: 0x80).
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise ValueError(f"{path} is not a PyTorch checkpoint (it starts with {head!r}, neither a zip archive nor "
                         f"a pickle); check that it is the file you meant and that it downloaded whole")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch words a refused global two ways ("Unsupported global: GLOBAL x", "unsupported GLOBAL x whose
        # module ... is blocked"); any "Weights only load failed" is a refusal, never damage.
        found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(e), re.IGNORECASE)
        if found or str(e).startswith("Weights only load failed"):
            what = f" ({found.group(1)})" if found else ""
            raise ValueError(
                f"{path} stores a Python object{what}, not just tensors: loading it needs a full unpickle, "
                f"which can run arbitrary code, so it was refused without running it (we only load with "
                f"weights_only=True). Re-save it as a plain state_dict: torch.save(model.state_dict(), path)") from None
        raise ValueError(f"cannot read {path}: its pickle is damaged; the file is truncated or not a PyTorch "
                         f"checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read {path} ({reason}); the file is truncated or not a PyTorch checkpoint") from None


def state_dict_of(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain or wrapped state_dict, `module.` prefixes removed."""
    for _ in range(2):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, dict) and not _is_state_dict(obj):
            inner = [obj[k] for k in STATE_DICT_WRAPPERS if isinstance(obj.get(k), dict)]
            if inner:
                obj = inner[0]
    if not (isinstance(obj, dict) and _is_state_dict(obj)):
        raise ValueError(f"{path} holds no state_dict (a dict of tensors, plain or under one of {STATE_DICT_WRAPPERS})")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_state_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) for k in d) and any(isinstance(v, torch.Tensor) for v in d.values())


def embedded_config(obj: object) -> dict:
    """The hyperparameters a wrapped checkpoint carries beside its weights ({} when none)."""
    if not isinstance(obj, dict) or _is_state_dict(obj):
        return {}
    return next((obj[k] for k in CONFIG_WRAPPERS if isinstance(obj.get(k), dict)), {})


def check_finite(sd: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights with NaN or infinite values: a model holding them cannot give a meaningful transcript."""
    bad = sorted(k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise ValueError(f"{path} holds NaN or infinite weights in [{shown}]; use a checkpoint saved before "
                         f"training diverged")


def load_sensevoice_state(src: SenseVoiceSource) -> tuple[SenseVoiceConfig, dict[str, torch.Tensor]]:
    """Config and checked state_dict of an original SenseVoiceSmall directory."""
    sd = state_dict_of(load_pt(src.model_pt), src.model_pt)
    ctc = sd.get("ctc.ctc_lo.weight")
    pieces = len(CtcTokenizer(src.bpemodel)) if src.bpemodel is not None else None
    if ctc is None and pieces is None:
        raise ValueError(f"{src.model_pt} has no ctc.ctc_lo.weight and {src.root} no bpe model: cannot tell the vocabulary size")
    vocab_size = ctc.shape[0] if ctc is not None else pieces
    if pieces is not None and pieces != vocab_size:
        raise ValueError(f"{src.bpemodel.name} has {pieces} pieces but the CTC head has {vocab_size} "
                         f"outputs; they must come from the same model")
    cfg = sensevoice_config_from_yaml(src.config, vocab_size=vocab_size, has_cmvn=src.cmvn_file is not None,
                                      where=str(src.config_yaml))
    check_shapes({k: tuple(v.shape) for k, v in sd.items()}, sensevoice_shapes(cfg), str(src.model_pt))
    check_finite(sd, src.model_pt)
    return cfg, sd
