"""MLX taps: modules record under the reference's names (funasr_qwen4b.taps)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


class TapRecorder:
    """Collects activations by tap name; batch dimension dropped (one utterance)."""

    def __init__(self):
        self.outputs: dict[str, np.ndarray] = {}

    def put(self, name: str, x: mx.array) -> None:
        a = np.array(x.astype(mx.float32))
        self.outputs[name] = a[0] if a.ndim == 3 and a.shape[0] == 1 else a


def record(rec: TapRecorder | None, name: str, x: mx.array) -> None:
    if rec is not None:
        rec.put(name, x)
