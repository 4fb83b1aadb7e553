"""`convert adaptor`: the trained adaptor .pt → BUNDLE/adaptor.

The one layout change: each layer's `self_attn.in_proj_weight` [3d, d] (rows
q, k, v stacked) and `in_proj_bias` are split into q_proj / k_proj / v_proj.
With `q_bits`, every linear weight is quantized (MLX's affine scheme, as
`nn.QuantizedLinear` stores it: packed `weight`, `scales`, `biases`); biases and
LayerNorms stay in `dtype`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from .writing import source_entry, write_component, write_component_config
from funasr_qwen4b.config import AdaptorConfig
from funasr_qwen4b.keys import infer_adaptor_config
from funasr_qwen4b.reference.torch_load import check_finite, embedded_config, load_pt, state_dict_of

from .sensevoice import DTYPES, check_dtype_range, check_float

log = logging.getLogger(__name__)

Q_GROUP_SIZE = 64
# How training scripts name the adaptor's hyperparameters in a checkpoint's embedded config.
_CONFIG_NAMES = {
    "encoder_dim": ("encoder_dim", "input_dim"), "d_model": ("d_model",), "llm_dim": ("llm_dim", "output_dim"),
    "num_layers": ("num_layers", "n_layers", "num_encoder_layers"), "nhead": ("nhead", "num_heads", "n_heads"),
    "dim_feedforward": ("dim_feedforward", "ffn_dim"), "norm_first": ("norm_first",),
    "activation": ("activation",), "eps": ("eps", "layer_norm_eps"),
}
_FLAGS = {"nhead": "--heads", "norm_first": "--norm-first", "activation": "--activation", "eps": "--eps"}


def check_embedded_config(cfg: AdaptorConfig, embedded: dict, pt: Path) -> None:
    """Refuse a checkpoint whose own config disagrees with what its weights hold or what was given."""
    problems = []
    for name, aliases in _CONFIG_NAMES.items():
        for alias in aliases:
            said, have = embedded.get(alias), getattr(cfg, name)
            if said is None or said == have or (isinstance(have, float) and isinstance(said, (int, float))
                                                and not isinstance(said, bool) and float(said) == have):
                continue
            flag = f" (pass {_FLAGS[name]} to match)" if name in _FLAGS else " (the weights hold this)"
            problems.append(f"{alias}={said!r} where the conversion has {have!r}{flag}")
    if problems:
        raise ValueError(f"{pt}: its embedded config disagrees: {'; '.join(problems)}")


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
                    keep_query_frames: bool = True, q_bits: int | None = None, force: bool = False) -> Path:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    if q_bits not in (None, 4, 8):
        raise ValueError(f"adaptor quantization must be 4 or 8 bits, got {q_bits}")
    pt = Path(pt)
    log.info(f"reading {pt} (weights_only=True)")
    obj = load_pt(pt)
    sd = state_dict_of(obj, pt)
    cfg = infer_adaptor_config({k: tuple(v.shape) for k, v in sd.items()}, str(pt), nhead=nhead,
                               norm_first=norm_first, activation=activation, eps=eps)
    check_embedded_config(cfg, embedded_config(obj), pt)
    check_float(sd, pt)
    check_finite(sd, pt)
    n_params = sum(v.numel() for v in sd.values())
    log.info(f"adaptor: {cfg.encoder_dim}→{cfg.d_model} × {cfg.num_layers} layers ({cfg.nhead} heads, "
        f"FFN {cfg.dim_feedforward}, {'pre' if cfg.norm_first else 'post'}-norm, {cfg.activation}) "
        f"→{cfg.llm_dim}; {n_params / 1e6:.2f} M parameters")
    weights = mlx_layout(sd, DTYPES[dtype])
    check_dtype_range(weights, dtype, pt)
    quantization = None
    if q_bits:
        small = sorted({v.shape[1] for v in weights.values() if v.ndim == 2 and v.shape[1] % Q_GROUP_SIZE})
        if small:
            raise ValueError(f"adaptor input widths {small} are not multiples of the quantization group size "
                             f"{Q_GROUP_SIZE}; convert this adaptor without --adaptor-q-bits")
        quantization = {"bits": q_bits, "group_size": Q_GROUP_SIZE}
    entry = {"dtype": dtype, "q_bits": q_bits, "keep_query_frames": keep_query_frames,
             "sources": {pt.name: source_entry(pt)}}
    with write_component(bundle, "adaptor", entry, force=force) as stage:
        what = f"{q_bits}-bit linear layers, the rest {dtype}" if q_bits else dtype
        log.info(f"writing {len(weights)} tensors ({what}) to {Path(bundle) / 'adaptor'}")
        if quantization:
            save_quantized(weights, stage / "model.safetensors", **quantization)
        else:
            save_file(weights, str(stage / "model.safetensors"), metadata={"format": "mlx"})
        write_component_config(stage, "adaptor", cfg.to_dict(), dtype=dtype,
                               **({"quantization": quantization} if quantization else {}))
    return Path(bundle)


def save_quantized(weights: dict[str, torch.Tensor], path: Path, *, bits: int, group_size: int) -> None:
    """Every 2-D tensor (the linear weights) through `mx.quantize`; the rest as they are."""
    import mlx.core as mx

    out = {}
    for k, v in weights.items():
        a = mx.array(v.float().numpy()).astype(getattr(mx, str(v.dtype).removeprefix("torch.")))
        if v.ndim == 2:
            base = k.removesuffix(".weight")
            out[k], out[f"{base}.scales"], out[f"{base}.biases"] = mx.quantize(a, group_size=group_size, bits=bits)
        else:
            out[k] = a
    mx.save_safetensors(str(path), out, metadata={"format": "mlx"})
