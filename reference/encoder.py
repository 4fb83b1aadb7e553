"""SenseVoiceSmall as FunASR builds it: query embedding, SAN-M encoder, CTC head.

The model is FunASR's own class, built from config.yaml the way AutoModel
builds it and loaded strictly from the original model.pt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from . import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
from funasr.models.sense_voice.model import SenseVoiceSmall as FunasrSenseVoiceSmall

from funasr_qwen4b import taps
from funasr_qwen4b.config import QueryConfig, SenseVoiceConfig
from funasr_qwen4b.sources import SenseVoiceSource

from .frontend import Frontend
from .taps import TapRecorder
from .torch_load import load_sensevoice_state


class SenseVoiceSmall:
    """FunASR's SenseVoiceSmall, run the way its `inference` runs it, with the
    WavFrontend AutoModel builds beside it (the MLX twin holds its frontend too).
    Fun-ASR-Nano's encoder (`nano`) is the same class without query table or CTC head."""

    def __init__(self, model: torch.nn.Module, cfg: SenseVoiceConfig, frontend: Frontend,
                 source: SenseVoiceSource | None):
        self.model = model.eval()
        self.cfg, self.frontend, self.source = cfg, frontend, source

    @classmethod
    def nano(cls, encoder: torch.nn.Module, cfg: SenseVoiceConfig, frontend: Frontend) -> "SenseVoiceSmall":
        """FunASRNano's `audio_encoder` (FunASR's SenseVoiceEncoderSmall), held under the name
        `encoder` so that its taps carry SenseVoiceSmall's names."""
        return cls(torch.nn.ModuleDict({"encoder": encoder}), cfg, frontend, None)

    @classmethod
    def load(cls, path: str | Path) -> "SenseVoiceSmall":
        """An original SenseVoiceSmall directory (model.pt, config.yaml, am.mvn), dither 0."""
        src = SenseVoiceSource.from_dir(path)
        cfg, sd = load_sensevoice_state(src)
        # AutoModel passes model_conf and every top-level key of config.yaml.
        conf = {**(src.config.get("model_conf") or {}), **src.config,
                "input_size": cfg.encoder.input_size, "vocab_size": cfg.vocab_size}
        model = FunasrSenseVoiceSmall(**conf)
        model.load_state_dict(sd, strict=True)
        return cls(model, cfg, Frontend(cfg.frontend, src.cmvn_file, dither=0.0), src)

    def query_rows(self, query: QueryConfig, batch: int) -> torch.Tensor:
        if not self.cfg.embed:
            raise ValueError("this encoder takes no query rows (Fun-ASR-Nano feeds it the features alone); "
                             "its language goes into the prompt")
        ids = torch.LongTensor([query.ids])
        return self.model.embed(ids).repeat(batch, 1, 1)

    @torch.no_grad()
    def encode(self, feats: torch.Tensor, lengths: torch.Tensor, query: QueryConfig,
               rec: TapRecorder | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, D] → encoder output [B, 4 + T, d] and its lengths."""
        speech = feats
        if query.enabled:
            speech = torch.cat((self.query_rows(query, feats.shape[0]), feats), dim=1)
            lengths = lengths + len(query.ids)
        if rec is not None:
            rec.put(taps.ENCODER_INPUT, speech, feats)
        # The encoder scales its input in place: hand it a copy.
        speech = speech.clone()
        names = taps.encoder_taps(self.cfg.encoder)[1:]
        if rec is None:
            return self.model.encoder(speech, lengths)
        with rec.hooks(self.model, names):
            return self.model.encoder(speech, lengths)

    @torch.no_grad()
    def ctc_argmax(self, enc: torch.Tensor, rec: TapRecorder | None = None) -> np.ndarray | None:
        """Per-frame argmax of the CTC log-probabilities, [B, T]; None without a CTC head."""
        if self.cfg.vocab_size is None:
            return None
        if rec is None:
            return self.model.ctc.log_softmax(enc).argmax(-1).numpy()
        with rec.hooks(self.model, [taps.CTC_LOGITS]):
            return self.model.ctc.log_softmax(enc).argmax(-1).numpy()
