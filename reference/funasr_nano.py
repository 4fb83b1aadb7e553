"""FunASR's own FunASRNano, built from config.yaml the way AutoModel builds it and loaded
strictly from the original model.pt: the reference path's Fun-ASR-Nano."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from funasr_qwen4b.config import (NanoAdaptorConfig, SenseVoiceConfig, nano_adaptor_config_from_yaml,
                                  nano_encoder_config_from_yaml)
from funasr_qwen4b.bundle import llm_hidden_size
from funasr_qwen4b.files import read_json
from funasr_qwen4b.keys import check_shapes
from funasr_qwen4b.nano_keys import ADAPTOR, CTC_PREFIXES, LLM, nano_adaptor_shapes, nano_encoder_shapes
from funasr_qwen4b.nano_sources import NanoSource

from .torch_load import check_finite, load_pt, state_dict_of


def build_nano(cfg: dict, llm_dir: str | Path, *, llm_dtype: str | None = None):
    """FunASR's FunASRNano from a config.yaml dict (input_size from the frontend, as AutoModel
    passes it), its Qwen3 config read from `llm_dir`; `llm_dtype` overrides llm_conf's. Its CTC
    branch is left out: it needs a tokenizer of its own and nothing here reads it."""
    from . import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
    from funasr.models.fun_asr_nano.model import FunASRNano
    # The registry entries config.yaml names, which FunASR's package __init__ fills by importing
    # every model (skipped where only its model modules are installed: funasr_modules.py).
    import funasr.models.llm_asr.adaptor  # noqa: F401
    import funasr.models.sense_voice.model  # noqa: F401

    fe = cfg.get("frontend_conf") or {}
    llm_conf = {**cfg["llm_conf"], "init_param_path": str(llm_dir), **({"llm_dtype": llm_dtype} if llm_dtype else {})}
    conf = {k: v for k, v in cfg.items() if k not in ("ctc_decoder", "ctc_decoder_conf")}
    return FunASRNano(**{**(cfg.get("model_conf") or {}), **conf, "llm_conf": llm_conf,
                         "audio_encoder_conf": dict(cfg["audio_encoder_conf"]),
                         "audio_adaptor_conf": dict(cfg["audio_adaptor_conf"]),
                         "input_size": fe.get("n_mels", 80) * fe.get("lfr_m", 1)})


@dataclass
class NanoCheckpoint:
    encoder: SenseVoiceConfig
    adaptor: NanoAdaptorConfig
    llm_config: dict  # the Qwen3 folder's config.json
    state: dict[str, torch.Tensor]  # model.pt without its CTC branch
    has_ctc: bool  # whether model.pt holds FunASRNano's CTC branch


def load_nano_state(src: NanoSource) -> NanoCheckpoint:
    """model.pt read once, every key and shape checked against config.yaml and the Qwen3 config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    where = str(src.config_yaml)
    llm_config = read_json(src.llm_dir / "config.json", "expected the Qwen3 folder's config.json")
    hidden = llm_hidden_size(llm_config, src.llm_dir / "config.json")
    sv = nano_encoder_config_from_yaml(src.config, has_cmvn=src.cmvn_file is not None, where=where)
    ad = nano_adaptor_config_from_yaml(src.config, encoder_dim=sv.encoder.output_size, llm_dim=hidden, where=where)
    sd = state_dict_of(load_pt(src.model_pt), src.model_pt)
    has_ctc = any(k.startswith(CTC_PREFIXES) for k in sd)
    sd = {k: v for k, v in sd.items() if not k.startswith(CTC_PREFIXES)}
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(src.llm_dir)))
    expected = {**nano_encoder_shapes(sv), **{ADAPTOR + k: v for k, v in nano_adaptor_shapes(ad).items()},
                **{LLM + k: tuple(v.shape) for k, v in llm.state_dict().items()}}
    check_shapes({k: tuple(v.shape) for k, v in sd.items()}, expected,
                 f"{src.model_pt} (with {src.config_yaml.name} and {src.llm_dir.name}/config.json)")
    check_finite(sd, src.model_pt)
    return NanoCheckpoint(sv, ad, llm_config, sd, has_ctc)


def load_nano(src: NanoSource):
    """FunASRNano in float32 (whatever llm_conf.llm_dtype says: the reference is the oracle),
    loaded strictly from model.pt; with the encoder and adaptor configs."""
    ckpt = load_nano_state(src)
    model = build_nano(src.config, src.llm_dir, llm_dtype="fp32")
    model.load_state_dict({k: v.float() for k, v in ckpt.state.items()}, strict=True)
    return model.eval(), ckpt.encoder, ckpt.adaptor
