"""Reference taps: forward hooks on the named modules, never renamed."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float32).cpu().numpy()


class TapRecorder:
    """Collects the output (and the input, for isolated parity) of each tap.

    Batch dimensions are dropped: recording is for one utterance.
    """

    def __init__(self):
        self.outputs: dict[str, np.ndarray] = {}
        self.inputs: dict[str, np.ndarray] = {}

    def put(self, name: str, output: torch.Tensor, input: torch.Tensor | None = None) -> None:
        self.outputs[name] = _unbatch(to_numpy(output))
        if input is not None:
            self.inputs[name] = _unbatch(to_numpy(input))

    @contextlib.contextmanager
    def hooks(self, model: torch.nn.Module, names: list[str], prefix: str = "") -> Iterator[None]:
        """Hook tap `names` = prefix + module path inside `model`; removed on exit."""
        modules = dict(model.named_modules())
        missing = [n for n in names if n.removeprefix(prefix) not in modules]
        assert not missing, f"no such reference modules: {missing}"
        handles = []
        for name in names:
            def hook(module, args, output, name=name):
                # SAN-M layers return (x, mask, ...): the activation is x.
                out = output[0] if isinstance(output, tuple) else output
                # Copy the input now: later code may change it in place.
                self.put(name, out, args[0].clone())
            handles.append(modules[name.removeprefix(prefix)].register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def _unbatch(x: np.ndarray) -> np.ndarray:
    return x[0] if x.ndim == 3 and x.shape[0] == 1 else x
