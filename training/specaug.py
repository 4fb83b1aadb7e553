"""FunASR's SpecAugLFR (frequency and time masks on LFR-stacked features) without its waits on
the device.

FunASR's `mask_along_axis_lfr` draws each mask's width on the features' device and reads the
widest back (`mask_length.max()`) to bound the positions it draws next: one host wait per mask,
two a training step, where the host would otherwise queue the step's kernels ahead of the
device. Here the same draws come from torch's CPU generator, in FunASR's order and shapes, so on
the CPU the masks are FunASR's bit for bit (tests/test_training.py); on a GPU they follow the
same distribution and reach the device in one asynchronous copy.
"""

from __future__ import annotations


class SpecAugLFR:
    """One frequency mask of fewer than `freq_width` of the 80 mel bins (the same bins in each of
    the lfr_rate + 1 stacked frames), then one time mask of fewer than `time_width` LFR frames (one
    run: FunASR stacks time masks at rate 1); a width of 0 turns that mask off. Masks in place, as
    FunASR does features without gradients."""

    def __init__(self, freq_width: int, time_width: int, lfr_rate: int = 6):
        self.freq_width, self.time_width, self.rate = freq_width, time_width, lfr_rate + 1

    def __call__(self, x, lengths):
        if self.freq_width:
            x = self._mask(x, 2, self.freq_width, self.rate)
        if self.time_width:
            x = self._mask(x, 1, self.time_width, 1)
        return x, lengths

    @staticmethod
    def _mask(x, dim: int, width: int, rate: int):
        import torch

        batch, size = x.shape[0], x.shape[dim]
        d = size // rate
        length = torch.randint(0, width, (batch, 1))
        pos = torch.randint(0, max(1, d - int(length.max())), (batch, 1))
        drawn = torch.cat((pos + d * torch.arange(rate), length), 1)  # each stacked copy's start, the width
        if x.device.type == "cuda":
            drawn = drawn.pin_memory()
        drawn = drawn.to(x.device, non_blocking=True)
        starts, length = drawn[:, :-1, None], drawn[:, -1:, None]
        aran = torch.arange(size, device=x.device)
        mask = ((starts <= aran) & (aran < starts + length)).any(1)
        return x.masked_fill_(mask[:, :, None] if dim == 1 else mask[:, None, :], 0.0)
