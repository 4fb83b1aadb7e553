"""FunASR's FSMN VAD with random (seeded) weights in its original layout, built with FunASR's
own FsmnVADStreaming: model.pt (flat state_dict), config.yaml shaped like the published
iic/speech_fsmn_vad_zh-cn-16k-common-pytorch's, am.mvn (Kaldi nnet text) and
configuration.json. torch and FunASR are imported by the builder that needs them.

Random weights alone give every frame the same verdict (the silence pdf is one of 248, so
its probability sits near 1/248: all speech). So that the decisions mean something and the
tests see both verdicts, one unit carries the frame's loudness through the network and
drives the silence output; every other weight stays random and still moves the scores
(through the softmax's other 247 outputs and the silence row's random part):
- in_linear1's unit 0 undoes the CMVN and averages: the mean log-mel of the 5 stacked frames, M;
- in_linear2's unit 0 is (M + 16) / 4, positive above Kaldi's log floor (log FLT_EPSILON ≈ -15.9),
  and every FSMN layer (linear → memory → affine → ReLU) and out_linear1 pass unit 0 on unchanged;
- out_linear2's silence logit falls by 1/2 per unit of M, level with the others at M = `speech_level`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml

from .testing import write_am_mvn

VAD_REAL = dict(input_dim=400, input_affine_dim=140, fsmn_layers=4, linear_dim=250, proj_dim=128, lorder=20,
                rorder=0, lstride=1, rstride=0, output_affine_dim=140, output_dim=248)
# The published model_conf: FunASR's VADXOptions defaults, written out.
VAD_MODEL_CONF = dict(
    sample_rate=16000, detect_mode=1, snr_mode=0, max_end_silence_time=800, max_start_silence_time=3000,
    do_start_point_detection=True, do_end_point_detection=True, window_size_ms=200, sil_to_speech_time_thres=150,
    speech_to_sil_time_thres=150, speech_2_noise_ratio=1.0, do_extend=1, lookback_time_start_point=200,
    lookahead_time_end_point=100, max_single_segment_time=60000, snr_thres=-100.0, noise_frame_num_used_for_snr=100,
    decibel_thres=-100.0, speech_noise_thres=0.6, fe_prior_thres=0.0001, silence_pdf_num=1, sil_pdf_ids=[0],
    speech_noise_thresh_low=-0.1, speech_noise_thresh_high=0.3, output_frame_probs=False, frame_in_ms=10,
    frame_length_ms=25,
)
SPEECH_LEVEL = 5.0  # mean log-mel (of 16-bit samples) where the silence pdf stops winning


def vad_config_yaml(encoder_conf: dict = VAD_REAL, **model_conf) -> dict:
    """A config.yaml shaped like the published VAD's; `model_conf` overrides its options."""
    return {
        "frontend": "WavFrontendOnline",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                          "dither": 0.0, "lfr_m": 5, "lfr_n": 1},
        "model": "FsmnVADStreaming",
        "model_conf": {**VAD_MODEL_CONF, **model_conf},
        "encoder": "FSMN",
        "encoder_conf": dict(encoder_conf),
    }


def build_vad(cfg: dict):
    """FunASR's FsmnVADStreaming from a config.yaml dict, as AutoModel builds it."""
    from .reference import quiet_funasr  # noqa: F401  (first: FunASR's import-time prints go to the log)
    from funasr.models.fsmn_vad_streaming import encoder  # noqa: F401  (registers FSMN)
    from funasr.models.fsmn_vad_streaming.model import FsmnVADStreaming

    return FsmnVADStreaming(**{**cfg["model_conf"], **cfg})


def make_vad_dir(out: str | Path, encoder_conf: dict = VAD_REAL, *, seed: int = 0,
                 speech_level: float = SPEECH_LEVEL, **model_conf) -> Path:
    """Write an FSMN VAD directory in the original format; returns it."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = vad_config_yaml(encoder_conf, **model_conf)
    torch.manual_seed(seed)
    model = build_vad(cfg)
    rng = np.random.default_rng(seed)
    dim = cfg["encoder_conf"]["input_dim"]
    shift = -rng.uniform(8, 15, dim).astype(np.float32)
    scale = rng.uniform(0.09, 0.11, dim).astype(np.float32)
    wire_loudness(model.encoder, shift, scale, speech_level)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    write_am_mvn(out / "am.mvn", shift, scale)
    (out / "configuration.json").write_text(json.dumps(
        {"framework": "pytorch", "task": "voice-activity-detection", "model": {"type": "funasr"},
         "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                             "frontend_conf": {"cmvn_file": "am.mvn"}}}, indent=2), encoding="utf-8")
    return out


def wire_loudness(encoder, shift: np.ndarray, scale: np.ndarray, speech_level: float) -> None:
    """Unit 0 of each layer carries the loudness to the silence logit (the module docstring).
    `shift`, `scale`: the am.mvn the features are normalised with, as written (rounded to 6 places)."""
    import torch

    shift = np.array([float(f"{v:.6f}") for v in shift], np.float64)
    scale = np.array([float(f"{v:.6f}") for v in scale], np.float64)

    def pass_on(linear, scale_by: float = 1.0, bias: float | None = 0.0) -> None:
        linear.weight[0].zero_()
        linear.weight[0, 0] = scale_by
        if bias is not None:
            linear.bias[0] = bias

    with torch.no_grad():
        first = encoder.in_linear1.linear
        first.weight[0] = torch.from_numpy(1.0 / (shift.size * scale))
        first.bias[0] = float(-shift.mean())
        pass_on(encoder.in_linear2.linear, 0.25, 4.0)
        for block in encoder.fsmn:
            pass_on(block.linear.linear, bias=None)
            block.fsmn_block.conv_left.weight[0].zero_()  # no memory on unit 0: the memory adds x itself
            pass_on(block.affine.linear)
        pass_on(encoder.out_linear1.linear)
        last = encoder.out_linear2.linear
        last.weight[0, 0] -= 2.0  # -(M + 16) / 2
        last.bias[0] = (speech_level + 16) / 2 + math.log(last.weight.shape[0] - 1)
