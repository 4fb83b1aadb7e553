"""Error metrics between an MLX activation and its reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Relative L2 bound per MLX weight dtype. float32 is the strict tier and
# assumes MLX_ENABLE_TF32=0; the reduced tiers are what a correct port at
# that precision reaches on a full-depth encoder.
TOLERANCES = {"float32": 1e-5, "float16": 2e-2, "bfloat16": 5e-2}


@dataclass
class TapMetrics:
    name: str
    shape: list[int]
    max_abs: float
    rel_l2: float  # ||mlx - ref|| / ||ref||
    cosine: float
    tolerance: float
    passed: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def compare(name: str, mlx: np.ndarray, ref: np.ndarray, tolerance: float) -> TapMetrics:
    if mlx.shape != ref.shape:
        return TapMetrics(name, list(ref.shape), float("nan"), float("inf"), float("nan"), tolerance, False,
                          f"shape {list(mlx.shape)} != reference {list(ref.shape)}")
    a, b = mlx.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    diff = a - b
    nb, na = np.linalg.norm(b), np.linalg.norm(a)
    rel = float(np.linalg.norm(diff) / nb) if nb > 0 else float(np.linalg.norm(diff))
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")
    finite = bool(np.isfinite(a).all())
    passed = finite and rel <= tolerance
    return TapMetrics(name, list(ref.shape), float(np.abs(diff).max(initial=0.0)), rel, cos, tolerance, passed,
                      "" if finite else "non-finite values in the MLX output")
