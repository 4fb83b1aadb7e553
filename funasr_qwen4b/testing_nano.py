"""A Fun-ASR-Nano checkpoint with random (seeded) weights in FunASR's original layout, built
with FunASR's own `FunASRNano` class: what the tests and `bench --synthetic` start from.

The directory is shaped like the published `FunAudioLLM/Fun-ASR-Nano-2512`: config.yaml
(FunASRNano with a SenseVoiceEncoderSmall encoder, the `Transformer` adaptor, Qwen3 named by
`llm_conf.init_param_path` relative to the directory, WavFrontend with `cmvn_file: null`),
model.pt (a flat state_dict: `audio_encoder.*`, `audio_adaptor.*`, `llm.*`, and with `ctc_vocab`
FunASRNano's CTC branch `ctc_decoder.*` + `ctc.*`, built by FunASR's own classes),
configuration.json, and the Qwen3 folder (config.json and Qwen's tokenizer, no weights:
the LLM's weights are model.pt's `llm.*`).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .testing import QWEN3_TINY, TINY, qwen3_config, qwen_tokenizer

LLM_FOLDER = "Qwen3-0.6B"
NANO_ADAPTOR_TINY = dict(ffn_dim=128, n_layer=2, attention_heads=4)
# Fun-ASR-Nano-2512's own dimensions: SenseVoiceSmall's encoder, a 2-layer adaptor, Qwen3-0.6B.
NANO_ADAPTOR_REAL = dict(ffn_dim=2048, n_layer=2, attention_heads=8)
QWEN3_06B = dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                 head_dim=128, intermediate_size=3072)


def nano_config_yaml(encoder_conf: dict, adaptor_conf: dict, *, encoder_dim: int, llm_dim: int) -> dict:
    """A config.yaml shaped like Fun-ASR-Nano-2512's (its inference-relevant sections)."""
    return {
        "model": "FunASRNano",
        "model_conf": {"lsm_weight": 0.1, "length_normalized_loss": True},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {
            **encoder_conf, "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
            "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "sanm_shfit": 0, "selfattention_layer_type": "sanm", "freeze": True,
        },
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {"downsample_rate": 1, "use_low_frame_rate": True, **adaptor_conf,
                               "encoder_dim": encoder_dim, "llm_dim": llm_dim, "freeze": True},
        "llm": "Qwen3-0.6b",
        "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": "bf16", "init_param_path": LLM_FOLDER,
                     "use_lora": False},
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                          "lfr_m": 7, "lfr_n": 6, "cmvn_file": None},
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"init_param_path": "${llm_conf.init_param_path}"},
    }


def make_nano_dir(out: str | Path, encoder_conf: dict = TINY, adaptor_conf: dict = NANO_ADAPTOR_TINY,
                  qwen_dims: dict = QWEN3_TINY, *, ctc_vocab: int | None = None, seed: int = 0) -> Path:
    """Write a Fun-ASR-Nano directory in FunASR's layout; returns it."""
    import torch

    from .reference.funasr_nano import build_nano

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    llm_dir = out / LLM_FOLDER
    qwen3_config(**qwen_dims).save_pretrained(llm_dir)
    qwen_tokenizer().save_pretrained(llm_dir)
    cfg = nano_config_yaml(encoder_conf, adaptor_conf, encoder_dim=encoder_conf["output_size"],
                           llm_dim=qwen_dims["hidden_size"])
    torch.manual_seed(seed)
    model = build_nano(cfg, llm_dir)
    with torch.no_grad():  # norms away from 1/0, so a port that drops one is caught
        for name, p in model.named_parameters():
            if "norm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
            elif name.startswith("llm.") and p.dim() == 2:
                # Wider than transformers' 0.02: greedy ids then change from step to step, so a
                # decoding that goes wrong after the first token shows.
                p.normal_(0.0, 0.3)
    state = model.state_dict()
    if ctc_vocab:
        state.update(_ctc_branch(cfg, encoder_conf["output_size"], ctc_vocab))
    torch.save(state, out / "model.pt")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (out / "configuration.json").write_text(json.dumps(
        {"framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
         "file_path_metas": {"init_param": "model.pt", "config": "config.yaml"}}, indent=2), encoding="utf-8")
    return out


def _ctc_branch(cfg: dict, d: int, vocab: int) -> dict:
    """FunASRNano's CTC branch (a Transformer adaptor over the encoder, then a CTC head), random,
    as its keys in model.pt; `cfg` gains the sections that declare it. FunASRNano itself would
    also need the branch's tokenizer to build it."""
    from .reference import quiet_funasr  # noqa: F401
    from funasr.models.fun_asr_nano.ctc import CTC
    from funasr.models.llm_asr.adaptor import Transformer

    conf = {"downsample_rate": 1, "ffn_dim": 2 * d, "llm_dim": d, "encoder_dim": d, "n_layer": 1}
    cfg.update({"ctc_decoder": "Transformer", "ctc_decoder_conf": conf, "ctc_vocab_size": vocab,
                "ctc_conf": {"dropout_rate": 0.0}})
    parts = {"ctc_decoder": Transformer(**conf), "ctc": CTC(odim=vocab, encoder_output_size=d, blank_id=vocab - 1)}
    return {f"{name}.{k}": v for name, m in parts.items() for k, v in m.state_dict().items()}

