"""Tap names: the parity contract (docs/parity.md, "Taps").

Names follow the reference module names, prefixed by component; both paths
record under exactly these names.
"""

from __future__ import annotations

from .config import AdaptorConfig, EncoderConfig

FBANK = "frontend.fbank"
LFR = "frontend.lfr"
CMVN = "frontend.cmvn"
FRONTEND_TAPS = (FBANK, LFR, CMVN)

ENCODER_INPUT = "encoder.input"  # after the query rows, before sqrt(d) scaling
ENCODERS0 = "encoder.encoders0.0"
AFTER_NORM = "encoder.after_norm"
TP_NORM = "encoder.tp_norm"  # the encoder output
CTC_LOGITS = "ctc.ctc_lo"


def encoder_layer(i: int) -> str:
    return f"encoder.encoders.{i}"


def tp_layer(i: int) -> str:
    return f"encoder.tp_encoders.{i}"


def encoder_taps(cfg: EncoderConfig) -> list[str]:
    """Encoder taps in execution order."""
    return [
        ENCODER_INPUT,
        ENCODERS0,
        *(encoder_layer(i) for i in range(cfg.num_blocks - 1)),
        AFTER_NORM,
        *(tp_layer(i) for i in range(cfg.tp_blocks)),
        TP_NORM,
    ]


def sensevoice_taps(cfg: EncoderConfig) -> list[str]:
    return [*FRONTEND_TAPS, *encoder_taps(cfg), CTC_LOGITS]



ADAPTOR = "adaptor."  # prefix: the reference module names inside the adaptor follow
ADAPTOR_INPUT_PROJ = "adaptor.input_proj"
ADAPTOR_OUTPUT_PROJ = "adaptor.output_proj"
ADAPTOR_NORM = "adaptor.norm"  # the adaptor output


def adaptor_layer(i: int) -> str:
    return f"adaptor.transformer.layers.{i}"


def adaptor_taps(cfg: AdaptorConfig) -> list[str]:
    return [ADAPTOR_INPUT_PROJ, *(adaptor_layer(i) for i in range(cfg.num_layers)), ADAPTOR_OUTPUT_PROJ, ADAPTOR_NORM]


LLM = "llm."  # prefix: Qwen3ForCausalLM module names follow
LLM_INPUTS_EMBEDS = "llm.inputs_embeds"  # template text embeddings + audio rows
LLM_NORM = "llm.model.norm"
LLM_LOGITS = "llm.logits"  # prefill, last position
LLM_TOKENS = "llm.tokens"  # generated ids (compared for identity, not by error)


def llm_layer(i: int) -> str:
    return f"llm.model.layers.{i}"


def llm_taps(num_layers: int) -> list[str]:
    return [LLM_INPUTS_EMBEDS, *(llm_layer(i) for i in range(num_layers)), LLM_NORM, LLM_LOGITS]
