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
from funasr_qwen4b.atomic import scratch
from funasr_qwen4b.audio import SAMPLE_RATE
from funasr_qwen4b.bundle import Bundle, as_bundle
from funasr_qwen4b.config import NanoAdaptorConfig, QueryConfig
from funasr_qwen4b.decoding import DecodeConfig
from funasr_qwen4b.files import read_json
from funasr_qwen4b.nano_sources import TRANSFORMERS, detect_layout

from .metrics import TOLERANCES, TapMetrics, compare
from .nano_original import converted_from_hf, reference_from_hf

MODES = ("chained", "isolated")
# What the reference side runs: FunASR's own modules (every kind), or transformers' own
# Fun-ASR-Nano (FunAsrNanoForConditionalGeneration, a funasr-nano bundle only).
ORACLES = ("funasr", "transformers")
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
        return self.failure() is None

    def failure(self) -> str | None:
        """Why the run fails, in words (None when it passes): the first tap over tolerance, else
        ids that differ. CTC and generated ids must match in the strict tier; at reduced
        precision a near-tie may flip an argmax, so there their agreement is reported, not required."""
        for mode in self.results:
            if self.first_failure(mode):
                return f"{mode}: {self.first_failure(mode)} over tolerance"
        if self.meta["dtype"] != "float32":
            return None
        if self.ctc is not None and not self.ctc["ids_equal"]:
            return "CTC ids differ"
        if self.llm is not None and not self.llm["tokens"]["equal"]:
            return f"generated ids differ from position {self.llm['tokens']['first_difference']}"
        return None

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


def compare_logprobs(ref: list[float], mlx: list[float], first_difference: int | None) -> dict:
    """The generated ids' log-probabilities, where both paths chose the same id after the same ids."""
    n = min(len(ref), len(mlx)) if first_difference is None else first_difference
    diff = np.abs(np.asarray(ref[:n], dtype=np.float64) - np.asarray(mlx[:n], dtype=np.float64))
    return {"compared": n, "max_abs_diff": float(diff.max()) if n else 0.0, "reference": list(ref), "mlx": list(mlx)}


def topk_agreement(ref_logits: np.ndarray, mlx_logits: np.ndarray) -> dict:
    top5_ref, top5_mlx = np.argsort(-ref_logits)[:5], np.argsort(-mlx_logits)[:5]
    return {"top1": bool(top5_ref[0] == top5_mlx[0]), "top5_overlap": len(set(top5_ref) & set(top5_mlx)) / 5,
            "top5_same_order": bool((top5_ref == top5_mlx).all())}


def run_parity(bundle: str | Path | Bundle, samples: np.ndarray, *, audio_name: str = "<samples>",
               sources: dict[str, str | Path | None] | None = None, template: str | None = None,
               decode: DecodeConfig | None = None, query: QueryConfig | None = None,
               modes: tuple[str, ...] = MODES, oracle: str = "funasr") -> ParityReport:
    """Every stage the bundle has, in both paths, compared tap by tap. `sources`:
    where the originals are, when not where conversion recorded them (a Fun-ASR-Nano
    bundle's one directory: `sources["sensevoice"]`). `oracle`: what the reference side
    runs (ORACLES); "transformers" reads a Fun-ASR-Nano's -hf directory."""
    # Imported here: the two paths are heavy, and the command line stays light.
    from funasr_qwen4b.mlx_port.pipeline import Pipeline as MlxPipeline
    from funasr_qwen4b.mlx_port.taps import TapRecorder as MlxRecorder
    from funasr_qwen4b.reference.taps import TapRecorder as RefRecorder

    from .isolated import run_isolated

    b = as_bundle(bundle)
    if oracle not in ORACLES:
        raise ValueError(f"unknown oracle {oracle!r}; use one of {', '.join(ORACLES)}")
    if oracle == "transformers" and b.kind != "funasr-nano":
        raise ValueError(f"the transformers oracle runs Fun-ASR-Nano; {b.root} is a {b.kind} bundle: use the "
                         f"funasr oracle")
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
    with scratch("funasr-qwen4b-parity-") as work:  # an -hf source's FunASR layout, while it loads
        ref, oracle_meta = _reference(b, oracle, query, template, mlx.setup.decode if mlx.setup else None,
                                      sources or {}, work)
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
        tokens = compare_tokens(ref_rec.outputs[taps.LLM_TOKENS], mlx_rec.outputs[taps.LLM_TOKENS])
        llm = {"tokens": tokens,
               "logprobs": compare_logprobs(ref_out.decoded.logprobs, mlx_out.decoded.logprobs,
                                            tokens["first_difference"]),
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
        "oracle": oracle_meta,
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


def _reference(b: Bundle, oracle: str, query: QueryConfig, template: str | None, decode: DecodeConfig | None,
               sources: dict, work: Path):
    """The reference side and what the report says of it: FunASR's modules from the originals
    the bundle records (a Fun-ASR-Nano converted from transformers' -hf layout: that directory
    mapped onto FunASR's layout in `work`), or transformers' Fun-ASR-Nano from an -hf directory."""
    from funasr_qwen4b.reference.pipeline import Pipeline as RefPipeline

    if b.kind != "funasr-nano":
        given = {k: str(v) for k, v in sources.items() if v}  # else where bundle.json records
        return RefPipeline.from_bundle(b, query, template=template, decode=decode, sources=sources), \
            {"name": oracle, **({"source": given} if given else {})}
    override = sources.get("sensevoice")
    if oracle == "transformers":
        return _transformers(b, template, decode, override)
    if not converted_from_hf(b):
        ref = RefPipeline.from_bundle(b, query, template=template, decode=decode, sources=sources)
        return ref, {"name": oracle, "source": str(override or b.components["sensevoice"].entry["source_dir"]),
                     "layout": "funasr"}
    ref, root = reference_from_hf(b, work, query, template, decode, override)
    return ref, {"name": oracle, "source": str(root), "layout": "transformers",
                 "read_as": "FunASR's layout written from it by convert.nano_hf.write_original"}


def _transformers(b: Bundle, template: str | None, decode: DecodeConfig | None, override: str | Path | None):
    """transformers' Fun-ASR-Nano from the -hf directory the bundle was converted from (checked by
    sha256), or from `override` (checked only where the bundle records -hf files), aligned to FunASR
    where the two oracles read the model differently: the adaptor's LayerNorm eps and the adaptor
    rows the prompt takes. The ×32768 waveform scaling FunASR's frontend applies the runner always
    applies."""
    from funasr_qwen4b.reference.nano_transformers import TransformersNano

    from_hf = converted_from_hf(b)
    if override is None and not from_hf:
        raise ValueError(f"{b.root} was converted from FunASR's layout; the transformers oracle reads transformers' "
                         f"-hf layout of the same model: pass that directory (--hf-dir DIR)")
    if from_hf:
        root = b.source("sensevoice", override)
        for name in ("adaptor", "llm"):
            b.source(name, override)
    else:
        root = Path(override)
        if detect_layout(root) != TRANSFORMERS:
            raise ValueError(f"{root} is not transformers' -hf layout (config.json of model_type fun_asr_nano); the "
                             f"transformers oracle reads that layout")
    cfg = b.adaptor_config
    hf_eps = read_json(root / "config.json", "the -hf repository's config").get("adaptor_config", {}).get(
        "layer_norm_eps")
    ref = TransformersNano.load(root, template or b.template(), decode or b.decode, adaptor_eps=cfg.eps,
                                audio_rows=cfg.audio_rows)
    rows = "ceil(T/8) (use_low_frame_rate)" if cfg.use_low_frame_rate else "all T"
    meta = {"name": "transformers", "source": str(root), "layout": "transformers",
            "checked_against_bundle": from_hf,
            "aligned_to_funasr": {
                "adaptor_layernorm_eps": {"transformers": hf_eps, "used": cfg.eps},
                "audio_rows": {"transformers": "all T", "used": rows},
                "waveform_scale": {"transformers": 1, "used": 32768}}}
    log.info("reference: transformers' FunAsrNanoForConditionalGeneration from %s, aligned to FunASR: adaptor eps "
             "%g (its config: %s), audio rows %s, waveform x32768", root, cfg.eps, hf_eps, rows)
    return ref, meta


def _versions() -> dict:
    import funasr
    import mlx.core as mx
    import torch
    import transformers

    return {"mlx": mx.__version__, "torch": torch.__version__, "funasr": funasr.__version__,
            "transformers": transformers.__version__}
