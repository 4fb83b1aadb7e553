"""What a few training steps spend: the device's busy time (its kernels and copies) against the
steps' wall time. A step whose device is busy for a small share of it waits on the host, which
launches its kernels one by one (training/RUN.md: the step's cost on a GPU)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class StepProfile:
    """Profiles this process's steps first+1 .. first+count (`before` and `after` around each)."""

    def __init__(self, first: int, count: int, device):
        self.first, self.count, self.device = first, count, device
        self.prof, self.t = None, 0.0

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def before(self, here: int) -> None:
        """`here`: this process's steps done so far."""
        from torch.profiler import ProfilerActivity, profile

        if here != self.first:
            return
        self._sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self.prof = profile(activities=activities)
        self.prof.start()
        self.t = time.time()

    def after(self, here: int) -> dict | None:
        """The summary once `here` reaches first + count (also logged), else None."""
        from torch.autograd import DeviceType

        if self.prof is None or here != self.first + self.count:
            return None
        self._sync()
        wall = time.time() - self.t
        self.prof.stop()
        events = self.prof.events()
        self.prof = None
        device = [e for e in events if e.device_type != DeviceType.CPU]
        ops = sum(e.device_type == DeviceType.CPU and e.name.startswith("aten::") for e in events)
        busy = sum(e.time_range.elapsed_us() for e in device) / 1e6
        out = {"steps": [self.first + 1, self.first + self.count], "wall_s": round(wall / self.count, 4),
               "device_busy_s": round(busy / self.count, 4), "device_events": round(len(device) / self.count),
               "aten_ops": round(ops / self.count)}
        log.info(f"profiled steps {self.first + 1}-{self.first + self.count} of this process: {out['wall_s']:.3f} s "
                 f"a step under the profiler, the device busy {out['device_busy_s']:.3f} s of it in "
                 f"{out['device_events']} kernels and copies; {out['aten_ops']} aten operator calls a step")
        return out
