"""`convert adaptor`: the trained adaptor .pt → BUNDLE/adaptor.

The one layout change: each layer's `self_attn.in_proj_weight` [3d, d] (rows
q, k, v stacked) and `in_proj_bias` are split into q_proj / k_proj / v_proj.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from funasr_qwen4b.bundle import source_entry, write_component, write_component_config
from funasr_qwen4b.keys import infer_adaptor_config
from reference.torch_load import load_pt, state_dict_of

from .sensevoice import DTYPES


def mlx_layout(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if ".self_attn.in_proj_" in k:
            base, kind = k.split(".in_proj_")
            suffix = "weight" if kind == "weight" else "bias"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                out[f"{base}.{name}.{suffix}"] = part.to(dtype).contiguous()
        else:
            out[k] = v.to(dtype).contiguous()
    return out


def convert_adaptor(pt: str | Path, bundle: str | Path, *, dtype: str = "float32", nhead: int = 8,
                    norm_first: bool = False, activation: str = "gelu", eps: float = 1e-5,
                    keep_query_frames: bool = True, force: bool = False,
                    log: Callable[[str], None] = print) -> Path:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    pt = Path(pt)
    log(f"reading {pt} (weights_only=True)")
    sd = state_dict_of(load_pt(pt), pt)
    cfg = infer_adaptor_config({k: tuple(v.shape) for k, v in sd.items()}, str(pt), nhead=nhead,
                               norm_first=norm_first, activation=activation, eps=eps)
    n_params = sum(v.numel() for v in sd.values())
    log(f"adaptor: {cfg.encoder_dim}→{cfg.d_model} × {cfg.num_layers} layers ({cfg.nhead} heads, "
        f"FFN {cfg.dim_feedforward}, {'pre' if cfg.norm_first else 'post'}-norm, {cfg.activation}) "
        f"→{cfg.llm_dim}; {n_params / 1e6:.2f} M parameters")
    weights = mlx_layout(sd, DTYPES[dtype])
    entry = {"dtype": dtype, "keep_query_frames": keep_query_frames, "sources": {pt.name: source_entry(pt)}}
    with write_component(bundle, "adaptor", entry, force=force) as stage:
        log(f"writing {len(weights)} tensors ({dtype}) to {Path(bundle) / 'adaptor'}")
        save_file(weights, str(stage / "model.safetensors"), metadata={"format": "mlx"})
        write_component_config(stage, "adaptor", cfg.to_dict(), dtype=dtype)
    return Path(bundle)
