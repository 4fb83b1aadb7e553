"""Tap names of Fun-ASR-Nano's adaptor (the parity contract, as funasr_qwen4b.taps is for the
rest): FunASR's `Transformer` adaptor's own module names under the adaptor prefix."""

from __future__ import annotations

from .config import NanoAdaptorConfig
from .taps import ADAPTOR

NANO_LINEAR1 = f"{ADAPTOR}linear1"  # the concatenated frames projected, before the ReLU
NANO_LINEAR2 = f"{ADAPTOR}linear2"


def nano_block(i: int) -> str:
    return f"{ADAPTOR}blocks.{i}"


def nano_adaptor_taps(cfg: NanoAdaptorConfig) -> list[str]:
    """In execution order; the last is the adaptor's output (all its rows, before the LLM keeps
    the first `audio_rows`)."""
    return [NANO_LINEAR1, NANO_LINEAR2, *(nano_block(i) for i in range(cfg.n_layer))]
