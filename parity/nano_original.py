"""FunASR's FunASRNano for a Fun-ASR-Nano bundle converted from transformers' -hf layout.

FunASRNano reads FunASR's layout only, so the -hf files the bundle records (checked by sha256)
are mapped onto it in a scratch directory (convert.nano_hf.write_original) and read from there:
the parity harness and the application's reference backend both take this one route."""

from __future__ import annotations

import logging
from pathlib import Path

from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.decoding import DecodeConfig
from funasr_qwen4b.nano_sources import NanoSource

log = logging.getLogger(__name__)


def converted_from_hf(b: Bundle) -> bool:
    """Whether conversion read transformers' -hf layout: FunASR's records its model.pt."""
    return b.kind == "funasr-nano" and "model.pt" not in b.components["sensevoice"].sources


def reference_from_hf(b: Bundle, work: Path, query: QueryConfig | None, template: str | None,
                      decode: DecodeConfig | None, override: str | Path | None = None):
    """(pipeline, the -hf directory it was read from). Everything is loaded before returning, so
    `work` may go once this returns."""
    from funasr_qwen4b.convert.nano_hf import write_original
    from funasr_qwen4b.reference.pipeline import Pipeline

    root = b.source("sensevoice", override)
    for name in ("adaptor", "llm"):
        b.source(name, override)
    log.info("reference: %s is transformers' layout; FunASR's FunASRNano reads it mapped onto FunASR's layout", root)
    original = write_original(root, work / "original", use_low_frame_rate=b.adaptor_config.use_low_frame_rate)
    pipe = Pipeline.from_nano_source(NanoSource.from_dir(original), query or b.query, template or b.template(),
                                     decode or b.decode)
    return pipe, root
