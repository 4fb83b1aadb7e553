"""Fun-ASR-Nano in transformers' native layout (a `-hf` repository: config.json of model_type
fun_asr_nano, safetensors, processor and tokenizer files) → FunASR's original layout: a
config.yaml as FunASRNano reads it, model.pt with FunASR's keys, and the Qwen3 folder that
`llm_conf.init_param_path` names (its config.json and tokenizer). The -hf layout then converts
through the same path as the original one.

The two layouts hold the same tensors: transformers splits the encoder's fused
`linear_q_k_v` into q/k/v projections, counts every SAN-M layer in one list (FunASR:
`encoders0`, `encoders`, `tp_encoders`) and puts FunASR's `after_norm`/`tp_norm` on the last
transcription and the last timestamp layer as `final_layernorm`. What transformers' config
cannot say is taken from FunASR: the adaptor's LayerNorm eps is FunASR's own 1e-12 (the -hf
config's `adaptor_config.layer_norm_eps` is transformers' and has no place in FunASR's
config), and `use_low_frame_rate` is the published config's (the LLM reads the first
ceil(T/8) adaptor rows; transformers reads all T).

torch only: conversion runs without FunASR installed.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from funasr_qwen4b.atomic import staging, swap_in
from funasr_qwen4b.files import read_json, safetensors_header

log = logging.getLogger(__name__)

MODEL_TYPE = "fun_asr_nano"
QWEN_DIR = "Qwen3-0.6B"  # the folder name the published config.yaml gives llm_conf.init_param_path
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json")
SENSEVOICE_EPS = 1e-5  # FunASR's SenseVoice LayerNorm: torch's default, not a config value
QWEN3_HEAD_DIM = 128  # Qwen3Config's default where config.json leaves head_dim out
LLM_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # FunASRNano's llm_dtype names
# Inside one SAN-M or adaptor layer: transformers' name → FunASR's.
_LAYER = {"input_layernorm": "norm1", "post_attention_layernorm": "norm2", "mlp.fc1": "feed_forward.w_1",
          "mlp.fc2": "feed_forward.w_2", "self_attn.o_proj": "self_attn.linear_out",
          "self_attn.fsmn.conv": "self_attn.fsmn_block", "self_attn.q_proj": "self_attn.linear_q",
          "self_attn.k_proj": "self_attn.linear_k", "self_attn.v_proj": "self_attn.linear_v"}
_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")  # fused into linear_q_k_v in the encoder


@dataclass
class NanoOriginal:
    """A -hf checkpoint in FunASR's terms. `config` is config.yaml (its paths relative to the
    folder it is written in), `state_dict` model.pt, `qwen_config` the Qwen3 folder's
    config.json, `tokenizer_files` what goes beside it."""

    config: dict
    state_dict: dict[str, torch.Tensor]
    qwen_config: dict
    tokenizer_files: list[Path] = field(default_factory=list)


def read_hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    cfg = read_json(path, "expected the config.json of a Fun-ASR-Nano -hf repository")
    if cfg.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path}: model_type is {cfg.get('model_type')!r}; a Fun-ASR-Nano -hf config says "
                         f"{MODEL_TYPE!r}")
    for name in ("audio_config", "adaptor_config", "text_config"):
        if not isinstance(cfg.get(name), dict):
            raise ValueError(f"{path}: {name} is missing or not a mapping; re-download the repository")
    return cfg


def _int(cfg: dict, key: str, where: str, low: int = 1) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"{where}: {key} must be an integer >= {low}, got {v!r}")
    return v


def original_config(cfg: dict, where: str, *, features: dict | None = None, use_low_frame_rate: bool = True) -> dict:
    """config.yaml for the -hf config `cfg` (and its feature extractor's settings `features`),
    refusing what FunASR's classes cannot express."""
    audio, adaptor, text = cfg["audio_config"], cfg["adaptor_config"], cfg["text_config"]
    if text.get("model_type") != "qwen3":
        raise ValueError(f"{where}: text_config.model_type is {text.get('model_type')!r}; FunASRNano's LLM is qwen3")
    for sec, key in (("audio_config", "hidden_act"), ("adaptor_config", "hidden_act"),
                     ("adaptor_config", "projector_hidden_act")):
        if cfg[sec].get(key, "relu") != "relu":
            raise ValueError(f"{where}: {sec}.{key} is {cfg[sec][key]!r}; FunASR's layers use ReLU")
    if audio.get("layer_norm_eps", SENSEVOICE_EPS) != SENSEVOICE_EPS:
        raise ValueError(f"{where}: audio_config.layer_norm_eps is {audio['layer_norm_eps']}; FunASR's SenseVoice "
                         f"encoder has {SENSEVOICE_EPS}")
    layers, tp = _int(audio, "num_hidden_layers", where), _int(audio, "num_timestamp_prediction_layers", where, 0)
    if layers <= tp:
        raise ValueError(f"{where}: audio_config has {layers} layers, not more than its {tp} timestamp layers")
    for key in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size"):
        _int(text, key, f"{where} text_config")
    width, llm_width = _int(adaptor, "hidden_size", where), _int(text, "hidden_size", where)
    if width != llm_width or _int(adaptor, "intermediate_size", where) != width // 4:
        raise ValueError(f"{where}: adaptor_config hidden_size {width} / intermediate_size "
                         f"{adaptor.get('intermediate_size')} must be the LLM width {llm_width} and a quarter of it "
                         f"(FunASR's adaptor blocks)")
    fe = features or {}
    mels, stack = _int(audio, "num_mel_bins", where), _int(audio, "num_stacked_frames", where)
    if fe.get("feature_size", mels) != mels or fe.get("num_frames_lfr", stack) != stack:
        raise ValueError(f"{where}: the feature extractor's {fe.get('feature_size')} bins × {fe.get('num_frames_lfr')} "
                         f"frames disagree with audio_config's {mels} × {stack}")
    dropout = audio.get("hidden_dropout", 0.1)
    return {
        "model": "FunASRNano",
        "model_conf": {},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {
            "output_size": _int(audio, "hidden_size", where),
            "attention_heads": _int(audio, "num_attention_heads", where),
            "linear_units": _int(audio, "intermediate_size", where), "num_blocks": layers - tp, "tp_blocks": tp,
            "dropout_rate": dropout, "positional_dropout_rate": dropout,
            "attention_dropout_rate": audio.get("attention_dropout", 0.1), "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "kernel_size": _int(audio, "fsmn_kernel_size", where), "sanm_shfit": 0, "selfattention_layer_type": "sanm",
            "freeze": True,
        },
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {
            "downsample_rate": 1, "use_low_frame_rate": use_low_frame_rate,
            "ffn_dim": _int(adaptor, "projector_hidden_size", where), "llm_dim": width,
            "encoder_dim": audio["hidden_size"], "n_layer": _int(adaptor, "num_hidden_layers", where, 0),
            "attention_heads": _int(adaptor, "num_attention_heads", where),
            "dropout_rate": adaptor.get("hidden_dropout", 0.0),
            "attention_dropout_rate": adaptor.get("attention_dropout", 0.0), "freeze": True,
        },
        "llm": "Qwen3-0.6b",
        "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": LLM_DTYPES.get(cfg.get("dtype"), "fp32"),
                     "init_param_path": QWEN_DIR},
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": fe.get("sampling_rate", 16000), "window": fe.get("window", "hamming"),
                          "n_mels": mels, "frame_length": fe.get("frame_length", 25),
                          "frame_shift": fe.get("frame_shift", 10), "lfr_m": stack, "lfr_n": fe.get("stride_lfr", 6),
                          "cmvn_file": None},
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"init_param_path": QWEN_DIR},
    }


def hf_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor a -hf checkpoint of `cfg` holds (lm_head aside: tied), with its shape."""
    audio, adaptor, text = cfg["audio_config"], cfg["adaptor_config"], cfg["text_config"]
    out: dict[str, tuple[int, ...]] = {}

    def linear(key, n_out, n_in, bias=True):
        out[f"{key}.weight"] = (n_out, n_in)
        if bias:
            out[f"{key}.bias"] = (n_out,)

    def norm(key, n, bias=True):
        out[f"{key}.weight"] = (n,)
        if bias:
            out[f"{key}.bias"] = (n,)

    def layer(key, n_in, d, ffn, fsmn):
        for proj in _QKV:
            linear(f"{key}.{proj}", d, n_in)
        linear(f"{key}.self_attn.o_proj", d, d)
        linear(f"{key}.mlp.fc1", ffn, d)
        linear(f"{key}.mlp.fc2", d, ffn)
        norm(f"{key}.input_layernorm", n_in)
        norm(f"{key}.post_attention_layernorm", d)
        if fsmn:
            out[f"{key}.self_attn.fsmn.conv.weight"] = (d, 1, audio["fsmn_kernel_size"])

    d, n = audio["hidden_size"], audio["num_hidden_layers"]
    normed = (n - audio["num_timestamp_prediction_layers"] - 1, n - 1)
    for i in range(n):
        layer(f"model.audio_tower.layers.{i}", audio["num_mel_bins"] * audio["num_stacked_frames"] if i == 0 else d,
              d, audio["intermediate_size"], True)
        if i in normed:
            norm(f"model.audio_tower.layers.{i}.final_layernorm", d)
    a = adaptor["hidden_size"]
    linear("model.multi_modal_projector.linear_1", adaptor["projector_hidden_size"], d)
    linear("model.multi_modal_projector.linear_2", a, adaptor["projector_hidden_size"])
    for i in range(adaptor["num_hidden_layers"]):
        layer(f"model.multi_modal_projector.layers.{i}", a, a, adaptor["intermediate_size"], False)
    h, hd = text["hidden_size"], text.get("head_dim", QWEN3_HEAD_DIM)
    q, kv, bias = text["num_attention_heads"] * hd, text["num_key_value_heads"] * hd, bool(text.get("attention_bias"))
    out["model.language_model.embed_tokens.weight"] = (text["vocab_size"], h)
    for i in range(text["num_hidden_layers"]):
        key = f"model.language_model.layers.{i}"
        linear(f"{key}.self_attn.q_proj", q, h, bias)
        linear(f"{key}.self_attn.k_proj", kv, h, bias)
        linear(f"{key}.self_attn.v_proj", kv, h, bias)
        linear(f"{key}.self_attn.o_proj", h, q, bias)
        norm(f"{key}.self_attn.q_norm", hd, False)
        norm(f"{key}.self_attn.k_norm", hd, False)
        for proj, shape in (("gate_proj", (text["intermediate_size"], h)), ("up_proj", (text["intermediate_size"], h)),
                            ("down_proj", (h, text["intermediate_size"]))):
            out[f"{key}.mlp.{proj}.weight"] = shape
        norm(f"{key}.input_layernorm", h, False)
        norm(f"{key}.post_attention_layernorm", h, False)
    norm("model.language_model.norm", h, False)
    return out


def weight_files(hf_dir: Path) -> list[Path]:
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        names = read_json(index, "re-download the repository").get("weight_map")
        if not isinstance(names, dict) or not names:
            raise ValueError(f"{index}: weight_map is missing or empty; re-download the repository")
        files = [hf_dir / n for n in sorted(set(names.values()))]
    else:
        files = [hf_dir / "model.safetensors"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found; a -hf repository holds its weights as safetensors "
                                    f"(re-download it)")
    return files


def read_hf_state(hf_dir: Path, cfg: dict) -> dict[str, torch.Tensor]:
    """The -hf tensors, checked against `cfg` by name and shape before any is read."""
    expected = hf_shapes(cfg)
    tied = cfg.get("tie_word_embeddings", True) and cfg["text_config"].get("tie_word_embeddings", True)
    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for f in weight_files(hf_dir):
        for k, t in safetensors_header(f).items():
            found[k] = (tuple(t["shape"]), f)
    lm_head = (cfg["text_config"]["vocab_size"], cfg["text_config"]["hidden_size"])
    for k, (shape, f) in found.items():
        want = lm_head if k == "lm_head.weight" else expected.get(k)
        if want is None:
            raise ValueError(f"{f}: unexpected tensor {k}; not a Fun-ASR-Nano -hf checkpoint of "
                             f"{hf_dir / 'config.json'}")
        if shape != want:
            raise ValueError(f"{f}: {k} has shape {list(shape)}, config.json says {list(want)}")
    missing = sorted(set(expected) - set(found)) + ([] if tied or "lm_head.weight" in found else ["lm_head.weight"])
    if missing:
        raise ValueError(f"{hf_dir}: {len(missing)} tensors missing from the safetensors ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}); re-download the repository")
    sd = {}
    for f in sorted({f for _, f in found.values()}):
        sd.update(load_file(str(f)))
    if tied and "lm_head.weight" in sd and not torch.equal(sd["lm_head.weight"],
                                                           sd["model.language_model.embed_tokens.weight"]):
        raise ValueError(f"{hf_dir}: lm_head.weight differs from the embeddings, yet config.json ties them")
    return sd


def original_state(sd: dict[str, torch.Tensor], cfg: dict) -> dict[str, torch.Tensor]:
    """FunASR's keys for the -hf tensors `sd` (checked by read_hf_state)."""
    audio = cfg["audio_config"]
    n, blocks = audio["num_hidden_layers"], audio["num_hidden_layers"] - audio["num_timestamp_prediction_layers"]

    def encoder_layer(i: int) -> str:
        if i == 0:
            return "audio_encoder.encoders0.0"
        return f"audio_encoder.encoders.{i - 1}" if i < blocks else f"audio_encoder.tp_encoders.{i - blocks}"

    out: dict[str, torch.Tensor] = {}
    for i in range(n):
        src, dst = f"model.audio_tower.layers.{i}", encoder_layer(i)
        for part in ("weight", "bias"):
            out[f"{dst}.self_attn.linear_q_k_v.{part}"] = torch.cat([sd[f"{src}.{p}.{part}"] for p in _QKV])
        for name, new in _LAYER.items():
            for part in ("weight", "bias"):
                if name not in _QKV and f"{src}.{name}.{part}" in sd:
                    out[f"{dst}.{new}.{part}"] = sd[f"{src}.{name}.{part}"]
        for i_norm, name in ((blocks - 1, "after_norm"), (n - 1, "tp_norm")):
            if i == i_norm:
                for part in ("weight", "bias"):
                    out[f"audio_encoder.{name}.{part}"] = sd[f"{src}.final_layernorm.{part}"]
    for k, v in sd.items():
        if k.startswith("model.multi_modal_projector."):
            rest = k.removeprefix("model.multi_modal_projector.")
            rest = rest.replace("linear_1.", "linear1.").replace("linear_2.", "linear2.")
            if rest.startswith("layers."):
                i, inner = rest.removeprefix("layers.").split(".", 1)
                name, part = inner.rsplit(".", 1)
                rest = f"blocks.{i}.{_LAYER[name]}.{part}"
            out[f"audio_adaptor.{rest}"] = v
        elif k.startswith("model.language_model."):
            out["llm.model." + k.removeprefix("model.language_model.")] = v
    # FunASR saves Qwen3ForCausalLM's whole state_dict: the tied head is stored beside the embeddings.
    out["llm.lm_head.weight"] = sd.get("lm_head.weight", sd["model.language_model.embed_tokens.weight"])
    return out


def qwen_config(cfg: dict) -> dict:
    """The Qwen3 folder's config.json: the -hf text config as a causal LM of its own."""
    text = dict(cfg["text_config"])
    text["architectures"] = ["Qwen3ForCausalLM"]
    text["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings", True) and text.get("tie_word_embeddings", True))
    if cfg.get("dtype"):
        text["dtype"] = cfg["dtype"]
    return text


def read_hf(hf_dir: str | Path, *, use_low_frame_rate: bool = True) -> NanoOriginal:
    """A -hf directory in FunASR's original naming (nothing written)."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise FileNotFoundError(f"Fun-ASR-Nano -hf directory not found: {hf_dir}")
    cfg = read_hf_config(hf_dir)
    where = str(hf_dir / "config.json")
    features = None
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (hf_dir / name).is_file():
            data = read_json(hf_dir / name, "re-download the repository")
            features = data.get("feature_extractor", data)
            break
    config = original_config(cfg, where, features=features, use_low_frame_rate=use_low_frame_rate)
    tokenizer = [hf_dir / n for n in TOKENIZER_FILES if (hf_dir / n).is_file()]
    if not any(p.name in ("tokenizer.json", "vocab.json") for p in tokenizer):
        raise FileNotFoundError(f"no tokenizer (tokenizer.json or vocab.json) in {hf_dir}; the -hf repository "
                                f"carries Qwen3's tokenizer")
    state = original_state(read_hf_state(hf_dir, cfg), cfg)
    return NanoOriginal(config, state, qwen_config(cfg), tokenizer)


def write_original(hf_dir: str | Path, out_dir: str | Path, *, use_low_frame_rate: bool = True,
                   force: bool = False) -> Path:
    """Write the -hf directory `hf_dir` as FunASR's original layout in `out_dir`: config.yaml,
    model.pt, configuration.json and the Qwen3 folder (config.json + tokenizer). Whole or not at all."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise ValueError(f"{out} already exists; pass --force to replace it")
    nano = read_hf(hf_dir, use_low_frame_rate=use_low_frame_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging(out.parent, out.name) as work:
        stage = work / "new"
        (stage / QWEN_DIR).mkdir(parents=True)
        torch.save(nano.state_dict, stage / "model.pt")
        (stage / "config.yaml").write_text(yaml.safe_dump(nano.config, sort_keys=False, allow_unicode=True),
                                           encoding="utf-8")
        # What FunASR's hub loader joins onto the folder (its file_path_metas).
        metas = {"init_param": "model.pt", "config": "config.yaml", "llm_conf": {"init_param_path": QWEN_DIR},
                 "tokenizer_conf": {"init_param_path": QWEN_DIR}}
        (stage / "configuration.json").write_text(json.dumps(
            {"framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
             "file_path_metas": metas}, indent=2), encoding="utf-8")
        (stage / QWEN_DIR / "config.json").write_text(json.dumps(nano.qwen_config, indent=2), encoding="utf-8")
        for f in nano.tokenizer_files:
            shutil.copyfile(f, stage / QWEN_DIR / f.name)
        log.info("wrote %d tensors in FunASR's layout to %s", len(nano.state_dict), out)
        swap_in(stage, out, work / "old")
    return out
