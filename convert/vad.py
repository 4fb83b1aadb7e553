"""`convert vad`: FunASR's FSMN VAD (model.pt + config.yaml + am.mvn) → BUNDLE/vad.

Layouts are fixed here and nowhere else: the FSMN memory goes from PyTorch's Conv2d
(C, 1, K, 1) to MLX's depthwise conv1d (C, K, 1). Every key keeps FunASR's name; the CMVN
rides along as frontend.cmvn.{shift,scale}, float32 whatever the model dtype.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from .sensevoice import DTYPES, check_dtype_range, check_float, cmvn_weights
from .writing import source_entry, write_component
from funasr_qwen4b.atomic import write_json_atomic
from funasr_qwen4b.reference.vad import load_vad_state
from funasr_qwen4b.vad import LAYOUT, VadSource

log = logging.getLogger(__name__)


def mlx_layout(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.endswith("fsmn_block.conv_left.weight"):
            v = v[:, 0, :, :]  # (C, 1, K, 1) → (C, K, 1)
        out[k] = v.to(dtype).contiguous()
    return out


def write_vad(src: VadSource, out: Path, *, dtype: str = "float32") -> None:
    """Write the converted VAD into the existing, empty directory `out`: model.safetensors and
    config.json (the config and the layout its weights are in)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    log.info(f"reading {src.model_pt} (weights_only=True)")
    cfg, sd = load_vad_state(src)
    check_float(sd, src.model_pt)
    e = cfg.encoder
    log.info(f"FSMN VAD: {e.fsmn_layers} FSMN layers, {e.linear_dim}/{e.proj_dim} wide, memory {e.lorder} frames, "
             f"{e.output_dim} outputs")
    weights = mlx_layout(sd, DTYPES[dtype])
    check_dtype_range(weights, dtype, src.model_pt)
    if src.cmvn_file is None:
        log.warning("no am.mvn found beside model.pt; features will not be normalised (FunASR would do the same)")
    else:
        weights.update(cmvn_weights(src.cmvn_file, e.input_dim))
    log.info(f"writing {len(weights)} tensors ({dtype})")
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "mlx"})
    write_json_atomic(out / "config.json", {"layout": LAYOUT, "config": cfg.to_dict(), "dtype": dtype})


def convert_vad(src_dir: str | Path, bundle: str | Path, *, dtype: str = "float32", force: bool = False) -> Path:
    """Convert an original FSMN VAD directory into `bundle`/vad: added to an existing bundle
    (swapped in whole), or a new bundle holding the VAD alone."""
    src = VadSource.from_dir(src_dir)
    sources = {p.name: source_entry(p) for p in (src.model_pt, src.config_yaml, src.cmvn_file) if p}
    log.info(f"converting {src.root} into {Path(bundle) / 'vad'}")
    with write_component(bundle, "vad", {"dtype": dtype, "sources": sources}, force=force) as stage:
        write_vad(src, stage, dtype=dtype)
    return Path(bundle)
