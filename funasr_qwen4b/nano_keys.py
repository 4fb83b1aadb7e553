"""Fun-ASR-Nano's model.pt keys and shapes expected from its config (torch-free): the encoder's
and the adaptor's; the LLM's come from transformers' own Qwen3 (reference/funasr_nano.py)."""

from __future__ import annotations

from .config import NanoAdaptorConfig, SenseVoiceConfig
from .keys import sensevoice_shapes

ENCODER, ADAPTOR, LLM = "audio_encoder.", "audio_adaptor.", "llm."
# FunASRNano's CTC branch (a second Transformer adaptor and a CTC head with their own
# tokenizer): read by nothing here, so only its presence is noted.
CTC_PREFIXES = ("ctc_decoder.", "ctc.")


def nano_encoder_shapes(cfg: SenseVoiceConfig) -> dict[str, tuple]:
    """SenseVoiceEncoderSmall's keys under `audio_encoder.` (no query table, no CTC head)."""
    return {ENCODER + k.removeprefix("encoder."): v for k, v in sensevoice_shapes(cfg).items()
            if k.startswith("encoder.")}


def nano_adaptor_shapes(cfg: NanoAdaptorConfig) -> dict[str, tuple]:
    """FunASR's Transformer adaptor's keys (without the `audio_adaptor.` prefix)."""
    d, f = cfg.llm_dim, cfg.block_ffn
    shapes = {"linear1.weight": (cfg.ffn_dim, cfg.encoder_dim * cfg.downsample_rate), "linear1.bias": (cfg.ffn_dim,),
              "linear2.weight": (d, cfg.ffn_dim), "linear2.bias": (d,)}
    for i in range(cfg.n_layer):
        p = f"blocks.{i}"
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            shapes.update({f"{p}.self_attn.{lin}.weight": (d, d), f"{p}.self_attn.{lin}.bias": (d,)})
        shapes.update({f"{p}.feed_forward.w_1.weight": (f, d), f"{p}.feed_forward.w_1.bias": (f,),
                       f"{p}.feed_forward.w_2.weight": (d, f), f"{p}.feed_forward.w_2.bias": (d,),
                       f"{p}.norm1.weight": (d,), f"{p}.norm1.bias": (d,),
                       f"{p}.norm2.weight": (d,), f"{p}.norm2.bias": (d,)})
    return shapes

