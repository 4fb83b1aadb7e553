"""`convert sensevoice`: FunASR's model.pt + config.yaml + am.mvn → BUNDLE/sensevoice.

Layouts are fixed here and nowhere else: the FSMN depthwise conv goes from
PyTorch's (C_out, 1, K) to MLX's (C_out, K, 1). Everything else keeps
FunASR's key names and layouts.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .writing import source_entry, write_component, write_component_config
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.sources import SenseVoiceSource, parse_am_mvn
from funasr_qwen4b.reference.torch_load import load_sensevoice_state

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_float(sd: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse integer (or boolean) weights: a checkpoint cast to integers keeps its shapes, and would
    convert and transcribe nonsense."""
    bad = sorted(k for k, v in sd.items() if not v.is_floating_point())
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{path}: tensor {bad[0]} holds {str(sd[bad[0]].dtype).removeprefix('torch.')} values{more}, "
                         f"not floating-point weights (cast to integers?); use the checkpoint as trained")


def check_dtype_range(weights: dict[str, torch.Tensor], dtype: str, path: str | Path) -> None:
    """Refuse weights that overflow to infinity in `dtype` (float16 stops at 65504)."""
    bad = sorted(k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise ValueError(f"{path}: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} overflow {dtype} "
                         f"(values beyond its range); convert with --dtype bfloat16 or float32")


def mlx_layout(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.endswith("fsmn_block.weight"):
            v = v.transpose(1, 2)  # (C_out, 1, K) → (C_out, K, 1)
        out[k] = v.to(dtype).contiguous()
    return out


def cmvn_weights(path: Path, dim: int) -> dict[str, torch.Tensor]:
    """The frontend's CMVN from an `am.mvn`, checked against the frontend's width. Float32 whatever
    the model dtype: it acts on raw log-mels."""
    shift, scale = parse_am_mvn(path)
    if shift.size != dim:
        raise ValueError(f"{path} has {shift.size} values per vector; the frontend makes {dim}")
    if not (np.isfinite(shift).all() and np.isfinite(scale).all()):
        raise ValueError(f"{path} holds NaN or infinite values (every feature would be too); use the am.mvn that "
                         f"came with the model")
    return {"frontend.cmvn.shift": torch.from_numpy(shift), "frontend.cmvn.scale": torch.from_numpy(scale)}


def convert_sensevoice(src_dir: str | Path, bundle: str | Path, *, dtype: str = "float32",
                       query: QueryConfig = QueryConfig(), force: bool = False) -> Path:
    """Convert an original SenseVoiceSmall directory into `bundle`/sensevoice."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    src = SenseVoiceSource.from_dir(src_dir)
    log.info(f"reading {src.model_pt} (weights_only=True)")
    cfg, sd = load_sensevoice_state(src)
    check_float(sd, src.model_pt)
    e = cfg.encoder
    log.info(f"SenseVoiceSmall: {e.num_blocks}+{e.tp_blocks} SAN-M layers, d={e.output_size}, "
        f"heads={e.attention_heads}, ffn={e.linear_units}, kernel={e.kernel_size}, vocab={cfg.vocab_size}")
    weights = mlx_layout(sd, DTYPES[dtype])
    check_dtype_range(weights, dtype, src.model_pt)
    if src.bpemodel is None:
        log.warning(f"no sentencepiece .bpe.model in {src.root}: SenseVoice's CTC transcript (--ctc, the "
                    f"sensevoice-small server model, CER of a CTC-only bundle) will be token ids, not text; put "
                    f"chn_jpn_yue_eng_ko_spectok.bpe.model beside model.pt and reconvert")
    if src.cmvn_file is None:
        log.warning("no am.mvn found beside model.pt; features will not be normalised (FunASR would do the same)")
    else:
        weights.update(cmvn_weights(src.cmvn_file, e.input_size))
    sources = {p.name: source_entry(p) for p in (src.model_pt, src.config_yaml, src.cmvn_file, src.bpemodel) if p}
    entry = {"dtype": dtype, "query": {"enabled": query.enabled, "language": query.language,
                                       "textnorm": query.textnorm}, "sources": sources}
    with write_component(bundle, "sensevoice", entry, force=force) as stage:
        log.info(f"writing {len(weights)} tensors ({dtype}) to {Path(bundle) / 'sensevoice'}")
        save_file(weights, str(stage / "model.safetensors"), metadata={"format": "mlx"})
        write_component_config(stage, "sensevoice", cfg.to_dict(), dtype=dtype)
        if src.bpemodel is not None:
            shutil.copyfile(src.bpemodel, stage / "tokenizer.model")
    return Path(bundle)
