"""Checkpoint keys and shapes expected from a config, and the strict check
that conversion and the reference loader both apply."""

from __future__ import annotations

import re

from .config import EMBED_ROWS, AdaptorConfig, SenseVoiceConfig


def _sanm_layer(prefix: str, d_in: int, d: int, ffn: int, kernel: int) -> dict[str, tuple]:
    return {
        f"{prefix}.self_attn.linear_q_k_v.weight": (3 * d, d_in),
        f"{prefix}.self_attn.linear_q_k_v.bias": (3 * d,),
        f"{prefix}.self_attn.linear_out.weight": (d, d),
        f"{prefix}.self_attn.linear_out.bias": (d,),
        f"{prefix}.self_attn.fsmn_block.weight": (d, 1, kernel),  # PyTorch Conv1d layout
        f"{prefix}.feed_forward.w_1.weight": (ffn, d),
        f"{prefix}.feed_forward.w_1.bias": (ffn,),
        f"{prefix}.feed_forward.w_2.weight": (d, ffn),
        f"{prefix}.feed_forward.w_2.bias": (d,),
        f"{prefix}.norm1.weight": (d_in,),
        f"{prefix}.norm1.bias": (d_in,),
        f"{prefix}.norm2.weight": (d,),
        f"{prefix}.norm2.bias": (d,),
    }


def sensevoice_shapes(cfg: SenseVoiceConfig) -> dict[str, tuple]:
    """The flat state_dict of FunASR's SenseVoiceSmall for `cfg` (PyTorch layouts)."""
    e = cfg.encoder
    d, ffn, k = e.output_size, e.linear_units, e.kernel_size
    shapes = {"embed.weight": (EMBED_ROWS, e.input_size)}
    shapes.update(_sanm_layer("encoder.encoders0.0", e.input_size, d, ffn, k))
    for i in range(e.num_blocks - 1):
        shapes.update(_sanm_layer(f"encoder.encoders.{i}", d, d, ffn, k))
    for i in range(e.tp_blocks):
        shapes.update(_sanm_layer(f"encoder.tp_encoders.{i}", d, d, ffn, k))
    for norm in ("after_norm", "tp_norm"):
        shapes[f"encoder.{norm}.weight"] = (d,)
        shapes[f"encoder.{norm}.bias"] = (d,)
    shapes["ctc.ctc_lo.weight"] = (cfg.vocab_size, d)
    shapes["ctc.ctc_lo.bias"] = (cfg.vocab_size,)
    return shapes


def adaptor_shapes(cfg: AdaptorConfig) -> dict[str, tuple]:
    """The state_dict of the trained adaptor (PyTorch nn.TransformerEncoderLayer keys)."""
    d, f = cfg.d_model, cfg.dim_feedforward
    shapes = {"input_proj.weight": (d, cfg.encoder_dim), "input_proj.bias": (d,)}
    for i in range(cfg.num_layers):
        p = f"transformer.layers.{i}"
        shapes.update({
            f"{p}.self_attn.in_proj_weight": (3 * d, d), f"{p}.self_attn.in_proj_bias": (3 * d,),
            f"{p}.self_attn.out_proj.weight": (d, d), f"{p}.self_attn.out_proj.bias": (d,),
            f"{p}.linear1.weight": (f, d), f"{p}.linear1.bias": (f,),
            f"{p}.linear2.weight": (d, f), f"{p}.linear2.bias": (d,),
            f"{p}.norm1.weight": (d,), f"{p}.norm1.bias": (d,),
            f"{p}.norm2.weight": (d,), f"{p}.norm2.bias": (d,),
        })
    shapes.update({"output_proj.weight": (cfg.llm_dim, d), "output_proj.bias": (cfg.llm_dim,),
                   "norm.weight": (cfg.llm_dim,), "norm.bias": (cfg.llm_dim,)})
    return shapes


def infer_adaptor_config(found: dict[str, tuple], what: str, **structure) -> AdaptorConfig:
    """Dimensions from the shapes (then every shape checked against them);
    `structure` (nhead, norm_first, activation, eps) cannot be read from shapes."""
    needed = ["input_proj.weight", "output_proj.weight", "transformer.layers.0.linear1.weight"]
    missing = [k for k in needed if k not in found]
    if missing:
        raise ValueError(f"{what} is not an audio adaptor checkpoint: missing keys {_some(missing)}")
    flat = [f"{k} {tuple(found[k])}" for k in needed if len(found[k]) != 2]
    if flat:
        raise ValueError(f"{what} is not an audio adaptor checkpoint: {', '.join(flat)} should be 2-D")
    layers = {int(m.group(1)) for k in found if (m := re.match(r"transformer\.layers\.(\d+)\.", k))}
    d, enc = found["input_proj.weight"]
    cfg = AdaptorConfig(encoder_dim=enc, d_model=d, num_layers=max(layers) + 1,
                        dim_feedforward=found["transformer.layers.0.linear1.weight"][0],
                        llm_dim=found["output_proj.weight"][0], **structure)
    check_shapes(found, adaptor_shapes(cfg), what)
    return cfg


def check_shapes(found: dict[str, tuple], expected: dict[str, tuple], what: str) -> None:
    """Raise one ValueError naming every missing, unexpected and mis-shaped key."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(f"{k} {tuple(found[k])} != {tuple(expected[k])}"
                   for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"missing keys {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_some(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_some(wrong)}")
    if problems:
        raise ValueError(f"{what} does not match its config: " + "; ".join(problems))


def _some(items: list[str], n: int = 8) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > n else ''}]"
