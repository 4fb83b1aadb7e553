"""The one place a backend is chosen: a bundle and a `Backend` → a pipeline.
Both pipelines share `from_bundle`'s signature, so everything past this
point drives either without asking which it holds."""

from __future__ import annotations

from pathlib import Path

from ..atomic import scratch
from ..bundle import Bundle, as_bundle
from ..config import Backend, QueryConfig
from ..decoding import DecodeConfig
from funasr_qwen4b.parity.nano_original import converted_from_hf, reference_from_hf


def load_pipeline(bundle: str | Path | Bundle, backend: Backend | str = Backend.MLX, *,
                  query: QueryConfig | None = None, ctc_only: bool = False, template: str | None = None,
                  decode: DecodeConfig | None = None, sources: dict | None = None):
    """`sources`: where the reference's original files are, when not where conversion recorded them."""
    backend = Backend.parse(backend)
    b = as_bundle(bundle)
    try:
        if backend == Backend.MLX:
            from funasr_qwen4b.mlx_port.pipeline import Pipeline
        else:
            from funasr_qwen4b.reference.pipeline import Pipeline
    except ModuleNotFoundError as e:
        raise ValueError(f"the {backend.value} backend needs the {backend.value} extra ({e.name} is not installed): "
                         f"pip install 'funasr-qwen4b-mlx[{backend.value}]'") from None
    if backend == Backend.REFERENCE and converted_from_hf(b) and not ctc_only:
        with scratch("funasr-qwen4b-nano-original-") as work:
            return reference_from_hf(b, work, query, template, decode, (sources or {}).get("sensevoice"))[0]
    return Pipeline.from_bundle(b, query, ctc_only=ctc_only, template=template, decode=decode, sources=sources)
