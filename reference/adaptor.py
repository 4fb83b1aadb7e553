"""The audio adaptor exactly as trained (AudioAdaptorQwen4B): input_proj →
nn.TransformerEncoder of nn.TransformerEncoderLayer (batch_first) →
output_proj → norm, with PyTorch's own layers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from funasr_qwen4b import taps
from funasr_qwen4b.config import AdaptorConfig
from funasr_qwen4b.keys import infer_adaptor_config

from .taps import TapRecorder
from .torch_load import load_pt, state_dict_of


class AudioAdaptorQwen4B(nn.Module):
    def __init__(self, cfg: AdaptorConfig, dropout: float = 0.1):
        super().__init__()
        self.cfg = cfg
        self.input_proj = nn.Linear(cfg.encoder_dim, cfg.d_model)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.nhead, cfg.dim_feedforward, dropout, activation=cfg.activation,
            layer_norm_eps=cfg.eps, batch_first=True, norm_first=cfg.norm_first)
        # Nested tensors only change what padded rows hold (zeros instead of
        # values nobody reads); off, so hooks always see plain tensors.
        self.transformer = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.output_proj = nn.Linear(cfg.d_model, cfg.llm_dim)
        self.norm = nn.LayerNorm(cfg.llm_dim, eps=cfg.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, encoder_dim]; mask [B, T], True on valid frames (as in the MLX twin) → [B, T, llm_dim]."""
        x = self.input_proj(x)
        # PyTorch's own convention is the opposite: True on padded frames.
        x = self.transformer(x, src_key_padding_mask=None if mask is None else ~mask)
        return self.norm(self.output_proj(x))

    @classmethod
    def load(cls, path: str | Path, cfg: AdaptorConfig | None = None) -> "AudioAdaptorQwen4B":
        """A trained .pt (plain or wrapped state_dict): dimensions from its shapes, the
        structure they cannot tell (heads, norm order, activation, eps) from `cfg`."""
        sd = state_dict_of(load_pt(path), path)
        structure = (cfg or AdaptorConfig()).structure
        cfg = infer_adaptor_config({k: tuple(v.shape) for k, v in sd.items()}, str(path), **structure)
        model = cls(cfg)
        model.load_state_dict(sd, strict=True)
        return model.eval()

    @torch.no_grad()
    def run(self, x: torch.Tensor, mask: torch.Tensor | None = None,
            rec: TapRecorder | None = None) -> torch.Tensor:
        if rec is None:
            return self(x, mask)
        with rec.hooks(self, taps.adaptor_taps(self.cfg), prefix=taps.ADAPTOR):
            return self(x, mask)
