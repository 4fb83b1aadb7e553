"""`convert llm`: a Hugging Face Qwen3 directory → BUNDLE/llm through
mlx-lm's own conversion, so `mlx_lm.load(BUNDLE/llm)` works as is."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import shutil
from pathlib import Path

from funasr_qwen4b.bundle import llm_hidden_size
from funasr_qwen4b.files import nonfinite_tensors, read_json, safetensors_header

from .writing import source_entry, write_component
from funasr_qwen4b.decoding import DecodeConfig
from funasr_qwen4b.prompt import DEFAULT_TEMPLATE, PRESETS

log = logging.getLogger(__name__)

LLM_DTYPES = ("float32", "float16", "bfloat16")
_INTEGER = ("I", "U", "BOOL")  # safetensors dtypes that hold no floating-point weights


def check_hf_dir(path: Path) -> dict:
    """The Hugging Face Qwen3 directory's config, after checking what conversion needs: the
    config's types, every safetensors file whole, of float weights, all finite, the tokenizer
    there and within the vocabulary."""
    if not path.is_dir():
        raise FileNotFoundError(f"LLM directory not found: {path} (a Hugging Face Qwen3 directory)")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"config.json missing in {path}; expected a Hugging Face Qwen3 directory")
    config = read_json(cfg_path, "expected a Hugging Face Qwen3 config.json")
    if config.get("model_type") != "qwen3":
        raise ValueError(f"{cfg_path}: model_type is {config.get('model_type')!r}; only qwen3 is supported")
    llm_hidden_size(config, cfg_path)
    for key in ("num_hidden_layers", "vocab_size"):
        v = config.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{cfg_path}: {key} must be a positive integer, got {v!r}")
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no *.safetensors in {path}; save the model with save_pretrained (safetensors)")
    for shard in shards:
        ints = sorted((name, t["dtype"]) for name, t in safetensors_header(shard).items()
                      if t["dtype"].startswith(_INTEGER))
        if ints:
            more = f" (and {len(ints) - 1} more)" if len(ints) > 1 else ""
            raise ValueError(f"{shard}: tensor {ints[0][0]} holds {ints[0][1]} values{more}, not floating-point "
                             f"weights (cast to integers?); use the checkpoint as trained")
        bad = nonfinite_tensors(shard)  # by bit pattern, at memory speed: before the long conversion
        if bad:
            raise ValueError(f"{shard} holds NaN or infinite weights in [{', '.join(bad[:5])}"
                             f"{', ...' if len(bad) > 5 else ''}]; use a checkpoint saved before training diverged")
    if (path / "tokenizer.json").is_file():
        check_vocabulary(path / "tokenizer.json", config["vocab_size"])
    elif not (path / "vocab.json").is_file():
        raise FileNotFoundError(f"no tokenizer files in {path}; the LLM directory must carry its tokenizer")
    return config


def check_vocabulary(tokenizer_json: Path, vocab_size: int) -> None:
    """Every token id of the tokenizer must have a row in the embedding table."""
    tok = read_json(tokenizer_json, "re-download the tokenizer")
    vocab = (tok.get("model") or {}).get("vocab") if isinstance(tok.get("model"), dict) else None
    ids = list(vocab.values()) if isinstance(vocab, dict) else []
    ids += [t.get("id") for t in tok.get("added_tokens") or [] if isinstance(t, dict)]
    ids = [i for i in ids if isinstance(i, int)]
    if not ids:
        raise ValueError(f"{tokenizer_json} has no vocabulary; re-download the tokenizer")
    if max(ids) >= vocab_size:
        raise ValueError(f"{tokenizer_json} has token ids up to {max(ids)} but the model's embedding table has "
                         f"{vocab_size} rows (config.json vocab_size): the tokenizer belongs to another model")


def check_finite_mlx(stage: Path, dtype: str) -> None:
    """Refuse converted LLM weights holding NaN or infinity (in the source, or beyond `dtype`'s range)."""
    import mlx.core as mx

    for f in sorted(stage.glob("*.safetensors")):
        bad = [k for k, a in mx.load(str(f)).items()
               if mx.issubdtype(a.dtype, mx.floating) and not bool(mx.all(mx.isfinite(a)))]
        if bad:
            raise ValueError(f"the converted LLM holds NaN or infinite weights in [{', '.join(sorted(bad)[:5])}] "
                             f"(NaN in the source, or values beyond {dtype}'s range); use finite weights, or "
                             f"another --dtype")


def convert_llm(hf_dir: str | Path, bundle: str | Path, *, q_bits: int | None = None, dtype: str = "bfloat16",
                embeddings_8bit: bool = False, q_group_size: int = 64, force: bool = False) -> Path:
    """bf16 (default), float32/float16, or quantized to 8/4 bits (group size 64);
    `embeddings_8bit` keeps the tied embedding / LM head at 8 bits in a 4-bit model."""
    from mlx_lm.convert import convert

    hf_dir = Path(hf_dir)
    config = check_hf_dir(hf_dir)
    if dtype not in LLM_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {LLM_DTYPES}")
    if q_bits not in (None, 4, 8):
        raise ValueError(f"-q must be 4 or 8, got {q_bits}")
    def embeddings_at_8bit(path, module):
        return {"bits": 8, "group_size": q_group_size} if path.endswith(("embed_tokens", "lm_head")) else True

    predicate = embeddings_at_8bit if embeddings_8bit and q_bits == 4 else None
    log.info(f"Qwen3: hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, vocab {config['vocab_size']}; "
        f"{'%d-bit' % q_bits if q_bits else dtype}{' (embeddings 8-bit)' if predicate else ''}")
    sources = {p.name: source_entry(p) for p in sorted(hf_dir.glob("*.safetensors"))}
    entry = {"dtype": dtype, "q_bits": q_bits, "embeddings_8bit": bool(predicate), "sources": sources,
             "source_dir": str(hf_dir.resolve())}
    # Templates and decoding defaults travel with the bundle (editable there).
    meta = {"prompt": {"default": DEFAULT_TEMPLATE, "presets": PRESETS},
            "generation": dataclasses.asdict(DecodeConfig())}
    with write_component(bundle, "llm", entry, force=force, meta=meta) as stage:
        out = stage / "mlx"
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints its own progress lines
            convert(str(hf_dir), str(out), quantize=q_bits is not None, q_bits=q_bits,
                    q_group_size=q_group_size if q_bits else None, dtype=dtype, quant_predicate=predicate)
        for p in out.iterdir():
            shutil.move(str(p), stage / p.name)
        out.rmdir()
        check_finite_mlx(stage, f"{q_bits}-bit" if q_bits else dtype)
    return Path(bundle)
