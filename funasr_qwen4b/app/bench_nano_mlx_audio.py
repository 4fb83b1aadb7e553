"""`bench --synthetic nano --peer`'s second peer: mlx-audio's Fun-ASR-Nano (`fun_asr_nano`) on the
same random weights as ours, converted and run by its own code.

Its converter (`fun_asr_nano.convert.convert`) reads FunASR's original directory as downloaded
(model.pt and the `Qwen3-0.6B` folder, the name its snapshot pattern fixes) and writes
model.safetensors at any of float16/bfloat16/float32, so every side of the comparison starts from
the one directory our bundle was converted from. Its config.json carries Fun-ASR-Nano-2512's
encoder and adaptor numbers whatever the checkpoint holds; they are taken from the directory's
config.yaml (its config reader takes FunASR's names), so a model of any size loads, as the Qwen3
numbers already come from the folder. `-q` quantizes in memory with its own `quantize_model` and
`build_quant_predicate` (what `mlx_audio.convert --quantize` does before saving): every Linear and
the embedding of `llm.model` at group size 64, as ours.

Its `generate` wraps one pass of frontend, encoder and adaptor (`_build_inputs_embeds`) and its
`generate_step` loop; here its steps run one by one, each evaluated, as ours are timed: its
`prepare_audio`, `audio_encoder`, `audio_adaptor`, its prompt ids (`_build_prompt_ids`) with the
audio rows spliced in as `_build_inputs_embeds` does, then `generate_step` itself, greedy (its
default sampler). EOS is ignored: the stop on 151643/151645 lives in its wrappers, not in
`generate_step`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import yaml

log = logging.getLogger(__name__)

PACKAGE = "mlx-audio"


def installed() -> bool:
    return importlib.util.find_spec("mlx_audio") is not None


def convert_checkpoint(src: Path, out: Path, dtype: str) -> Path:
    """The original Fun-ASR-Nano directory `src` in mlx-audio's layout, by its own converter at
    `dtype`, with the encoder and adaptor numbers of `src`'s config.yaml."""
    from mlx_audio.stt.models.fun_asr_nano.convert import convert

    log.info("mlx-audio: converting %s with its fun_asr_nano converter (%s)", src / "model.pt", dtype)
    with contextlib.redirect_stdout(sys.stderr):  # it prints its progress: stdout holds the results
        convert(src, out, dtype=dtype, include_examples=False)
    cfg = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8"))
    conf = json.loads((out / "config.json").read_text(encoding="utf-8"))
    for key in ("audio_encoder_conf", "audio_adaptor_conf"):
        conf[key].update(cfg[key])
    (out / "config.json").write_text(json.dumps(conf, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


class MlxAudioNano:
    """mlx-audio's Fun-ASR-Nano loaded by its `stt.load`, run stage by stage for `tokens` ids."""

    def __init__(self, ckpt: Path, tokens: int, dtype: str, q_bits: int | None, group: int):
        import mlx.core as mx
        from mlx_audio.stt import load

        self.mx, self.tokens = mx, tokens
        self.model = load(str(ckpt))
        self.package = f"{PACKAGE} {importlib.metadata.version(PACKAGE)}"
        self.how = f"mlx-audio fun_asr_nano convert(model.pt, dtype={dtype}) + stt.load"
        if q_bits:
            from mlx_audio.convert import build_quant_predicate
            from mlx_audio.lm.convert import quantize_model

            quantize_model(self.model, {}, group, q_bits, quant_predicate=build_quant_predicate(self.model))
            mx.eval(self.model.parameters())
            self.how += f", {q_bits}-bit by its quantize_model in memory (group {group})"
        self.differs = [
            ("frontend: its compute_fbank_kaldi leaves each frame's first sample without pre-emphasis "
             "(Kaldi scales it by 1 - 0.97), so its log-mel features differ from ours in the low bins"),
            ("numerics: its LayerNorms keep MLX's eps 1e-5 (FunASR's is 1e-12) and its first encoder norm takes "
             "the uncentred features (MLX's one-pass variance loses digits there); at float32 on the tests' tiny "
             "model its adaptor rows differ from ours by a relative L2 near 6e-5 (ours from FunASR's: under 1e-6), "
             "its greedy ids on our rows are ours"),
            ("stages: its steps run one by one (its generate runs them inside _build_inputs_embeds); "
             "the prompt splice restated from _build_inputs_embeds is charged to its prefill"),
            "decode: its generate_step dispatches each next step before handing over the current token"]

    def run(self, samples: np.ndarray) -> dict:
        from mlx_audio.stt.models.fun_asr_nano.audio import prepare_audio

        mx, model = self.mx, self.model
        t0 = time.perf_counter()
        feats, lengths, fake_len = prepare_audio(samples, model.config.frontend_conf)
        mx.eval(feats)
        t1 = time.perf_counter()
        enc, enc_lengths = model.audio_encoder(feats, lengths)
        mx.eval(enc)
        t2 = time.perf_counter()
        audio, _ = model.audio_adaptor(enc, enc_lengths)
        mx.eval(audio)
        t3 = time.perf_counter()
        ids, positions, prefilled = self.decode(audio, fake_len)
        t4 = time.perf_counter()
        return {"frontend": t1 - t0, "encoder": t2 - t1, "adaptor": t3 - t2, "llm_prefill": prefilled - t3,
                "llm_decode": t4 - prefilled, "total": t4 - t0, "tokens": len(ids),
                "audio_rows": min(fake_len, int(audio.shape[1])), "prefill_positions": positions}

    def decode(self, audio, fake_len: int) -> tuple[list[int], int, float]:
        """Its prompt with the adaptor's rows `audio` [1, T, D] spliced in (`_build_inputs_embeds`'
        steps after the adaptor), then its `generate_step`: the ids, the prompt's positions and
        the clock when the first id came (the end of the prefill)."""
        from mlx_audio.lm.generate import generate_step

        mx, model = self.mx, self.model
        ids, beg = model._build_prompt_ids(fake_len, language=None, hotwords=None, itn=True)
        embeds = model.llm.model.embed_tokens(ids)
        rows = min(fake_len, int(audio.shape[1]))
        embeds = mx.concatenate([embeds[:, :beg], audio[:, :rows].astype(embeds.dtype), embeds[:, beg + rows:]], axis=1)
        steps = generate_step(prompt=ids[0], input_embeddings=embeds[0], model=model, max_tokens=self.tokens)
        first, _ = next(steps)
        prefilled = time.perf_counter()
        return [first, *(token for token, _ in steps)], int(ids.shape[1]), prefilled
