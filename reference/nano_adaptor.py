"""Fun-ASR-Nano's audio adaptor as FunASRNano runs it: FunASR's own `Transformer` adaptor
module (funasr/models/llm_asr/adaptor.py), hooked for taps. The twin of mlx_port/nano_adaptor.py."""

from __future__ import annotations

import torch

from funasr_qwen4b import nano_taps
from funasr_qwen4b.config import NanoAdaptorConfig
from funasr_qwen4b.taps import ADAPTOR

from .taps import TapRecorder


class NanoAdaptor:
    def __init__(self, module: torch.nn.Module, cfg: NanoAdaptorConfig):
        self.module = module.eval()
        self.cfg = cfg

    @torch.no_grad()
    def run(self, x: torch.Tensor, mask: torch.Tensor | None = None,
            rec: TapRecorder | None = None) -> torch.Tensor:
        """x [B, T, encoder_dim]; mask [B, T], True on valid frames (as in the MLX twin) →
        [B, ceil(T / k), llm_dim]: every row; the LLM keeps the first `cfg.audio_rows`."""
        lengths = torch.full((x.shape[0],), x.shape[1]) if mask is None else mask.sum(-1)
        if rec is None:
            return self.module(x, lengths)[0]
        with rec.hooks(self.module, nano_taps.nano_adaptor_taps(self.cfg), prefix=ADAPTOR):
            return self.module(x, lengths)[0]
