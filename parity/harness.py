"""Run the reference and the MLX path on one clip and compare them tap by tap.

Stages that exist are compared; later stages add their taps to the same
lists (funasr_qwen4b.taps) and their runs to the two pipelines.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from funasr_qwen4b import taps
from funasr_qwen4b.bundle import precisions, read_bundle, read_component_config, require_component, sha256_file
from funasr_qwen4b.config import AdaptorConfig, QueryConfig
from funasr_qwen4b.decoding import DecodeConfig
from funasr_qwen4b.prompt import template_text

from .metrics import TOLERANCES, TapMetrics, compare

MODES = ("chained", "isolated")


@dataclass
class ParityReport:
    meta: dict
    taps: list[str]
    results: dict[str, list[TapMetrics]]  # mode -> per-tap metrics, in tap order
    ctc: dict
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
        ids_ok = self.ctc["ids_equal"] or not strict
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


def _checked_source(bundle: str | Path, component: str, override: str | Path | None, flag: str) -> Path:
    """The original file a component was converted from, checked by sha256
    (for SenseVoice: its model.pt; the directory is its parent)."""
    sources = read_bundle(bundle)["components"][component]["sources"]
    name = "model.pt" if component == "sensevoice" else next(iter(sources))
    recorded = sources[name]
    if override is None:
        path = Path(recorded["path"])
    else:
        path = Path(override) / "model.pt" if component == "sensevoice" else Path(override)
    return _verified(path, recorded, bundle, component, flag)


def _verified(path: Path, recorded: dict, bundle, component: str, flag: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"the reference needs the original {component} file; {path} not found (pass {flag})")
    if sha256_file(path) != recorded["sha256"]:
        raise ValueError(f"{path} is not the file {bundle} was converted from (sha256 differs); "
                         f"pass the right {flag} or reconvert")
    return path


def sensevoice_source_dir(bundle: str | Path, override: str | Path | None = None) -> Path:
    return _checked_source(bundle, "sensevoice", override, "--sensevoice-src DIR").parent


def adaptor_source(bundle: str | Path, override: str | Path | None = None) -> Path:
    return _checked_source(bundle, "adaptor", override, "--adaptor-src FILE.pt")


def llm_source(bundle: str | Path, override: str | Path | None = None) -> Path:
    """The Hugging Face directory the LLM was converted from, every weight file checked."""
    entry = read_bundle(bundle)["components"]["llm"]
    path = Path(override or entry["source_dir"])
    for name, recorded in entry["sources"].items():
        _verified(path / name, recorded, bundle, "LLM", "--llm-src DIR")
    return path


def compare_tokens(ref: np.ndarray, mlx: np.ndarray) -> dict:
    n = min(len(ref), len(mlx))
    diff = np.nonzero(ref[:n] != mlx[:n])[0]
    first = int(diff[0]) if diff.size else (None if len(ref) == len(mlx) else n)
    return {"equal": first is None, "first_difference": first, "reference": ref.tolist(), "mlx": mlx.tolist()}


def topk_agreement(ref_logits: np.ndarray, mlx_logits: np.ndarray) -> dict:
    top5_ref, top5_mlx = np.argsort(-ref_logits)[:5], np.argsort(-mlx_logits)[:5]
    return {"top1": bool(top5_ref[0] == top5_mlx[0]), "top5_overlap": len(set(top5_ref) & set(top5_mlx)) / 5,
            "top5_same_order": bool((top5_ref == top5_mlx).all())}


def reference_pipeline(bundle: str | Path, query: QueryConfig, *, template: str | None = None,
                       decode: DecodeConfig | None = None, sensevoice_src=None, adaptor_src=None, llm_src=None,
                       log: Callable[[str], None] = print):
    """The reference twin of a bundle: the same stages, query, adaptor structure,
    template and decoding rules, loaded from the original files it records."""
    from reference.pipeline import Pipeline as RefPipeline

    meta = read_bundle(bundle)
    components = meta["components"]
    src = sensevoice_source_dir(bundle, sensevoice_src)
    log(f"reference: FunASR SenseVoiceSmall from {src} (float32, dither 0)")
    kwargs = {}
    if "adaptor" in components:
        cfg = AdaptorConfig.from_dict(read_component_config(Path(bundle) / "adaptor", "adaptor"))
        kwargs.update(adaptor=adaptor_source(bundle, adaptor_src), adaptor_cfg=cfg,
                      keep_query_frames=components["adaptor"]["keep_query_frames"])
        log(f"reference: adaptor from {kwargs['adaptor']} ({cfg})")
    if "llm" in components:
        kwargs.update(llm=llm_source(bundle, llm_src), template=template or template_text(bundle_meta=meta),
                      decode=decode or DecodeConfig(**meta.get("generation", {})))
        log(f"reference: Qwen3ForCausalLM from {kwargs['llm']} (float32)")
    return RefPipeline.from_sources(src, query, dither=0.0, **kwargs)


def run_parity(bundle: str | Path, samples: np.ndarray, *, audio_name: str = "<samples>",
               sensevoice_src: str | Path | None = None, adaptor_src: str | Path | None = None,
               llm_src: str | Path | None = None, template: str | None = None,
               decode: DecodeConfig | None = None, query: QueryConfig | None = None, modes: tuple[str, ...] = MODES,
               log: Callable[[str], None] = print) -> ParityReport:
    """Every stage the bundle has, in both paths, compared tap by tap."""
    # Imported here: the two paths are heavy, and the shared CLI stays light.
    from mlx_port.isolated import run_isolated
    from mlx_port.pipeline import Pipeline as MlxPipeline
    from mlx_port.taps import TapRecorder as MlxRecorder
    from reference.taps import TapRecorder as RefRecorder

    require_component(bundle, "sensevoice")
    meta_bundle = read_bundle(bundle)
    components = meta_bundle["components"]
    template = template or (template_text(bundle_meta=meta_bundle) if "llm" in components else None)
    mlx = MlxPipeline.from_bundle(bundle, query, template=template, decode=decode)
    query = mlx.query
    dtypes = precisions(meta_bundle)
    dtype = "float32" if set(dtypes.values()) == {"float32"} else next(d for d in dtypes.values() if d != "float32")
    dtype = {"8bit": "bfloat16", "4bit": "bfloat16"}.get(dtype, dtype)  # quantized: bf16 tier, and reported
    tol = TOLERANCES[dtype]
    names = taps.sensevoice_taps(mlx.sensevoice.cfg.encoder)
    ref = reference_pipeline(bundle, query, template=template, decode=mlx.setup.decode if mlx.setup else None,
                             sensevoice_src=sensevoice_src, adaptor_src=adaptor_src, llm_src=llm_src, log=log)
    names += taps.adaptor_taps(mlx.adaptor.cfg) if mlx.adaptor else []
    names += taps.llm_taps(mlx.llm.num_layers) if mlx.llm else []

    ref_rec, mlx_rec = RefRecorder(), MlxRecorder()
    t0 = time.perf_counter()
    ref_out = ref.run(samples, ref_rec)
    t1 = time.perf_counter()
    mlx_out = mlx.run(samples, mlx_rec)
    t2 = time.perf_counter()
    log(f"ran both paths on {samples.size / 16000:.2f} s of audio (reference {t1 - t0:.2f} s, MLX {t2 - t1:.2f} s)")

    results = {}
    if "chained" in modes:
        results["chained"] = [compare(n, mlx_rec.outputs[n], ref_rec.outputs[n], tol) for n in names]
    if "isolated" in modes:
        iso = run_isolated(mlx, samples, ref_rec.inputs, names)
        results["isolated"] = [compare(n, iso[n], ref_rec.outputs[n], tol) for n in names]
    frames_ref = ref_rec.outputs[taps.CTC_LOGITS].argmax(-1)
    frames_mlx = mlx_rec.outputs[taps.CTC_LOGITS].argmax(-1)
    llm = None
    if mlx.llm is not None:
        llm = {"tokens": compare_tokens(ref_rec.outputs[taps.LLM_TOKENS], mlx_rec.outputs[taps.LLM_TOKENS]),
               "logits": topk_agreement(ref_rec.outputs[taps.LLM_LOGITS], mlx_rec.outputs[taps.LLM_LOGITS]),
               "reference_text": ref_out.text, "mlx_text": mlx_out.text,
               "stop": {"reference": ref_out.decoded.stop, "mlx": mlx_out.decoded.stop}, "template": template}
    ctc = {
        "ids_equal": ref_out.ctc.ids == mlx_out.ctc.ids,
        "frame_agreement": float(np.mean(frames_ref == frames_mlx)),
        "reference": ref_out.ctc.to_dict(),
        "mlx": mlx_out.ctc.to_dict(),
    }
    meta = {
        "bundle": str(Path(bundle).resolve()),
        "audio": audio_name,
        "seconds": round(samples.size / 16000, 3),
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
