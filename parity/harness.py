"""Run the reference and the MLX path on one clip and compare them tap by tap.

Stages that exist are compared; later stages add their taps to the same
lists (funasr_qwen4b.taps) and their runs to the two pipelines.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from funasr_qwen4b import nano_taps, taps
from funasr_qwen4b.audio import SAMPLE_RATE
from funasr_qwen4b.bundle import Bundle, as_bundle
from funasr_qwen4b.config import NanoAdaptorConfig, QueryConfig
from funasr_qwen4b.decoding import DecodeConfig

from .metrics import TOLERANCES, TapMetrics, compare

MODES = ("chained", "isolated")
log = logging.getLogger(__name__)


@dataclass
class ParityReport:
    meta: dict
    taps: list[str]
    results: dict[str, list[TapMetrics]]  # mode -> per-tap metrics, in tap order
    ctc: dict | None  # None where the model has no CTC head (Fun-ASR-Nano)
    reference_taps: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    mlx_taps: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    llm: dict | None = None  # generated ids compared, logits top-k agreement, texts

    def first_failure(self, mode: str) -> str | None:
        return next((m.name for m in self.results.get(mode, []) if not m.passed), None)

    @property
    def passed(self) -> bool:
        # CTC ids must match in the strict tier; at reduced precision a near-tie
        # may flip a frame's argmax, so there the agreement is reported, not required.
        strict = self.meta["dtype"] == "float32"
        ids_ok = self.ctc is None or self.ctc["ids_equal"] or not strict
        tokens_ok = self.llm is None or self.llm["tokens"]["equal"] or not strict
        return all(self.first_failure(m) is None for m in self.results) and ids_ok and tokens_ok

    def to_dict(self) -> dict:
        return {
            "meta": self.meta,
            "passed": self.passed,
            "first_failure": {m: self.first_failure(m) for m in self.results},
            "ctc": self.ctc,
            "llm": self.llm,
            "taps": {m: [r.to_dict() for r in rs] for m, rs in self.results.items()},
        }


def compare_tokens(ref: np.ndarray, mlx: np.ndarray) -> dict:
    n = min(len(ref), len(mlx))
    diff = np.nonzero(ref[:n] != mlx[:n])[0]
    first = int(diff[0]) if diff.size else (None if len(ref) == len(mlx) else n)
    return {"equal": first is None, "first_difference": first, "reference": ref.tolist(), "mlx": mlx.tolist()}


def topk_agreement(ref_logits: np.ndarray, mlx_logits: np.ndarray) -> dict:
    top5_ref, top5_mlx = np.argsort(-ref_logits)[:5], np.argsort(-mlx_logits)[:5]
    return {"top1": bool(top5_ref[0] == top5_mlx[0]), "top5_overlap": len(set(top5_ref) & set(top5_mlx)) / 5,
            "top5_same_order": bool((top5_ref == top5_mlx).all())}


def run_parity(bundle: str | Path | Bundle, samples: np.ndarray, *, audio_name: str = "<samples>",
               sources: dict[str, str | Path | None] | None = None, template: str | None = None,
               decode: DecodeConfig | None = None, query: QueryConfig | None = None,
               modes: tuple[str, ...] = MODES) -> ParityReport:
    """Every stage the bundle has, in both paths, compared tap by tap. `sources`:
    where the originals are, when not where conversion recorded them."""
    # Imported here: the two paths are heavy, and the command line stays light.
    from funasr_qwen4b.mlx_port.pipeline import Pipeline as MlxPipeline
    from funasr_qwen4b.mlx_port.taps import TapRecorder as MlxRecorder
    from funasr_qwen4b.reference.pipeline import Pipeline as RefPipeline
    from funasr_qwen4b.reference.taps import TapRecorder as RefRecorder

    from .isolated import run_isolated

    b = as_bundle(bundle)
    template = template or (b.template() if b.has("llm") else None)
    mlx = MlxPipeline.from_bundle(b, query, template=template, decode=decode)
    query = mlx.query
    dtypes = b.precisions
    dtype = "float32" if b.strict else next(d for d in dtypes.values() if d != "float32")
    dtype = {"8bit": "bfloat16", "4bit": "bfloat16"}.get(dtype, dtype)  # quantized: bf16 tier, and reported
    tol = TOLERANCES[dtype]
    has_ctc = mlx.sensevoice.cfg.vocab_size is not None
    names = [*taps.FRONTEND_TAPS, *taps.encoder_taps(mlx.sensevoice.cfg.encoder),
             *([taps.CTC_LOGITS] if has_ctc else [])]
    ref = RefPipeline.from_bundle(b, query, template=template, decode=mlx.setup.decode if mlx.setup else None,
                                  sources=sources)
    if mlx.adaptor:
        cfg = mlx.adaptor.cfg
        names += nano_taps.nano_adaptor_taps(cfg) if isinstance(cfg, NanoAdaptorConfig) else taps.adaptor_taps(cfg)
    names += taps.llm_taps(mlx.llm.num_layers) if mlx.llm else []

    ref_rec, mlx_rec = RefRecorder(), MlxRecorder()
    t0 = time.perf_counter()
    ref_out = ref.run(samples, ref_rec)
    t1 = time.perf_counter()
    mlx_out = mlx.run(samples, mlx_rec)
    t2 = time.perf_counter()
    log.info("ran both paths on %.2f s of audio (reference %.2f s, MLX %.2f s)", samples.size / SAMPLE_RATE, t1 - t0, t2 - t1)

    results = {}
    if "chained" in modes:
        results["chained"] = [compare(n, mlx_rec.outputs[n], ref_rec.outputs[n], tol) for n in names]
    if "isolated" in modes:
        iso = run_isolated(mlx, samples, ref_rec.inputs, names)
        results["isolated"] = [compare(n, iso[n], ref_rec.outputs[n], tol) for n in names]
    llm = None
    if mlx.llm is not None:
        llm = {"tokens": compare_tokens(ref_rec.outputs[taps.LLM_TOKENS], mlx_rec.outputs[taps.LLM_TOKENS]),
               "logits": topk_agreement(ref_rec.outputs[taps.LLM_LOGITS], mlx_rec.outputs[taps.LLM_LOGITS]),
               "reference_text": ref_out.text, "mlx_text": mlx_out.text,
               "stop": {"reference": ref_out.decoded.stop, "mlx": mlx_out.decoded.stop}, "template": template}
    ctc = None
    if has_ctc:
        frames_ref = ref_rec.outputs[taps.CTC_LOGITS].argmax(-1)
        frames_mlx = mlx_rec.outputs[taps.CTC_LOGITS].argmax(-1)
        ctc = {
            "ids_equal": ref_out.ctc.ids == mlx_out.ctc.ids,
            "frame_agreement": float(np.mean(frames_ref == frames_mlx)),
            "reference": ref_out.ctc.to_dict(),
            "mlx": mlx_out.ctc.to_dict(),
        }
    meta = {
        "bundle": str(b.root.resolve()),
        "kind": b.kind,
        "audio": audio_name,
        "seconds": round(samples.size / SAMPLE_RATE, 3),
        "dtype": dtype,
        "component_dtypes": dtypes,
        "tolerance": {"metric": "rel_l2", "value": tol, "tiers": TOLERANCES},
        "query": {"enabled": query.enabled, "language": query.language, "textnorm": query.textnorm},
        "adaptor": {**mlx.adaptor.cfg.to_dict(), "keep_query_frames": mlx.keep_query_frames} if mlx.adaptor else None,
        "dither": 0.0,
        "MLX_ENABLE_TF32": os.environ.get("MLX_ENABLE_TF32"),
        "versions": _versions(),
        "machine": f"{platform.system()} {platform.machine()}",
    }
    return ParityReport(meta, names, results, ctc, ref_rec.outputs, mlx_rec.outputs, llm)


def _versions() -> dict:
    import funasr
    import mlx.core as mx
    import torch

    return {"mlx": mx.__version__, "torch": torch.__version__, "funasr": funasr.__version__}
