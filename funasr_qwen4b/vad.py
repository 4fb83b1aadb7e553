"""FunASR's FSMN VAD (`fsmn-vad`, iic/speech_fsmn_vad_zh-cn-16k-common-pytorch), the parts
both twins share: its config (config.yaml's model_conf, encoder_conf and frontend_conf,
typed and range-checked), the original directory, the tap names, and the decision logic
that turns per-frame scores into speech segments.

The decisions are FsmnVADStreaming's (funasr/models/fsmn_vad_streaming/model.py, FunASR
1.4.16), ported line for line in plain Python: the per-frame speech/silence rule
(GetFrameState), the 200 ms window (WindowDetector), the start/end point state machine
(DetectOneFrame and its callbacks) and `inference`'s offline loop over 60 s chunks with its
silence schedule. What the port leaves out changes no decision: the waveform buffers
(only their frame counter is kept), the cache trimming, and the frame probabilities it
records for output only. Where FunASR would stop on `math.log(0)` (a silence probability of
exactly 0 or 1), the port takes the limit instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import FrontendConfig, _at_least, from_dict
from .keys import check_shapes
from .sources import file_path_metas, original_files, read_config_yaml, resolve_file

# --- tap names (the reference module names under FsmnVADStreaming, prefixed `vad.`) -----------

VAD_FEATS = "vad.frontend"  # WavFrontendOnline's output: fbank → LFR → CMVN
VAD_IN_LINEAR1 = "vad.encoder.in_linear1"
VAD_IN_LINEAR2 = "vad.encoder.in_linear2"
VAD_OUT_LINEAR1 = "vad.encoder.out_linear1"
VAD_OUT_LINEAR2 = "vad.encoder.out_linear2"
VAD_SCORES = "vad.scores"  # the softmax over the output pdfs: what the decisions read


def vad_fsmn_layer(i: int) -> str:
    return f"vad.encoder.fsmn.{i}"


def vad_taps(layers: int) -> list[str]:
    """The VAD's taps in execution order."""
    return [VAD_FEATS, VAD_IN_LINEAR1, VAD_IN_LINEAR2, *(vad_fsmn_layer(i) for i in range(layers)),
            VAD_OUT_LINEAR1, VAD_OUT_LINEAR2, VAD_SCORES]


# --- config -----------------------------------------------------------------------------------

# Each converted component's config.json records the layout its weights were written in.
LAYOUT = {"version": 1, "fsmn_block.conv_left.weight": "mlx conv1d (C_out, K, C_in/groups)"}
VAD_FILES = "model.pt + config.yaml (+ am.mvn)"


@dataclass(frozen=True)
class FsmnConfig:
    """FunASR's `FSMN` encoder (encoder_conf); the defaults are the published model's."""

    input_dim: int = 400
    input_affine_dim: int = 140
    fsmn_layers: int = 4
    linear_dim: int = 250
    proj_dim: int = 128
    lorder: int = 20
    rorder: int = 0
    lstride: int = 1
    rstride: int = 0
    output_affine_dim: int = 140
    output_dim: int = 248
    use_softmax: bool = True

    def __post_init__(self):
        _at_least(self, 1, "input_dim", "input_affine_dim", "fsmn_layers", "linear_dim", "proj_dim", "lorder",
                  "lstride", "output_affine_dim", "output_dim")
        _at_least(self, 0, "rstride")
        if self.rorder != 0:
            # FunASR's streaming VAD pads the look-ahead memory at every chunk's end, so its scores
            # would depend on where chunks fall; the published model has none.
            raise ValueError(f"rorder {self.rorder} (look-ahead memory) is not supported; the streaming VAD "
                             f"uses rorder 0")
        if not self.use_softmax:
            raise ValueError("use_softmax=false is not supported: the VAD's decisions read probabilities")


@dataclass(frozen=True)
class VadOptions:
    """FunASR's VADXOptions (model_conf) that its decisions read; the defaults are FunASR's.
    Times are in ms."""

    sample_rate: int = 16000
    detect_mode: int = 1  # 0: one utterance, then stop; 1: every utterance (FunASR's and the published model's)
    max_end_silence_time: int = 800
    max_start_silence_time: int = 3000
    window_size_ms: int = 200
    sil_to_speech_time_thres: int = 150
    speech_to_sil_time_thres: int = 150
    speech_2_noise_ratio: float = 1.0
    do_extend: int = 1
    lookback_time_start_point: int = 200
    lookahead_time_end_point: int = 100
    max_single_segment_time: int = 60000
    snr_thres: float = -100.0
    noise_frame_num_used_for_snr: int = 100
    decibel_thres: float = -100.0
    speech_noise_thres: float = 0.6
    fe_prior_thres: float = 1e-4
    silence_pdf_num: int = 1
    sil_pdf_ids: tuple[int, ...] = field(default_factory=lambda: (0,))
    frame_in_ms: int = 10
    frame_length_ms: int = 25

    def __post_init__(self):
        ids = self.sil_pdf_ids
        if not isinstance(ids, (list, tuple)) or not ids or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ValueError(f"sil_pdf_ids must be a non-empty list of output indices, got {ids!r}")
        object.__setattr__(self, "sil_pdf_ids", tuple(ids))
        if self.silence_pdf_num != len(ids):
            raise ValueError(f"silence_pdf_num {self.silence_pdf_num} is not the number of sil_pdf_ids ({len(ids)})")
        if self.sample_rate != 16000:
            raise ValueError(f"sample_rate must be 16000 (audio is resampled to it), got {self.sample_rate}")
        if self.detect_mode not in (0, 1):
            raise ValueError(f"detect_mode must be 0 (one utterance) or 1 (every utterance), got {self.detect_mode}")
        if self.do_extend not in (0, 1):
            raise ValueError(f"do_extend must be 0 or 1, got {self.do_extend}")
        _at_least(self, 1, "frame_in_ms", "frame_length_ms", "max_single_segment_time",
                  "noise_frame_num_used_for_snr")
        _at_least(self, 0, "max_end_silence_time", "max_start_silence_time", "sil_to_speech_time_thres",
                  "speech_to_sil_time_thres", "lookback_time_start_point", "lookahead_time_end_point")
        if self.window_size_ms < self.frame_in_ms:
            raise ValueError(f"window_size_ms {self.window_size_ms} is shorter than one frame ({self.frame_in_ms} ms)")
        for name in ("snr_thres", "decibel_thres", "speech_noise_thres", "fe_prior_thres"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not -1.0 <= self.speech_noise_thres <= 1.0:
            raise ValueError(f"speech_noise_thres must be in [-1, 1] (a difference of probabilities), got "
                             f"{self.speech_noise_thres}")
        if not (math.isfinite(self.speech_2_noise_ratio) and self.speech_2_noise_ratio > 0):
            raise ValueError(f"speech_2_noise_ratio must be a finite number > 0, got {self.speech_2_noise_ratio}")


@dataclass(frozen=True)
class VadFrontendConfig(FrontendConfig):
    """WavFrontendOnline's features as the published VAD takes them: LFR 5/1."""

    lfr_m: int = 5
    lfr_n: int = 1


@dataclass(frozen=True)
class VadConfig:
    """The VAD: WavFrontendOnline's features, the FSMN encoder, the decision options."""

    frontend: VadFrontendConfig = field(default_factory=VadFrontendConfig)
    encoder: FsmnConfig = field(default_factory=FsmnConfig)
    options: VadOptions = field(default_factory=VadOptions)

    def __post_init__(self):
        fe, o = self.frontend, self.options
        if fe.lfr_n != 1:
            raise ValueError(f"lfr_n must be 1: the VAD decides on every {fe.frame_shift} ms frame, got {fe.lfr_n}")
        if (fe.frame_shift, fe.frame_length) != (o.frame_in_ms, o.frame_length_ms):
            raise ValueError(f"the frontend's frames ({fe.frame_length} ms every {fe.frame_shift} ms) are not the "
                             f"decisions' ({o.frame_length_ms} ms every {o.frame_in_ms} ms)")
        if self.encoder.input_dim != fe.feature_dim:
            raise ValueError(f"encoder input_dim {self.encoder.input_dim} is not the frontend's n_mels × lfr_m "
                             f"= {fe.feature_dim}")
        bad = [i for i in o.sil_pdf_ids if i >= self.encoder.output_dim]
        if bad:
            raise ValueError(f"sil_pdf_ids {bad} are outside the encoder's {self.encoder.output_dim} outputs")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, what: str = "vad config") -> VadConfig:
        return from_dict(cls, data, what)


# model_conf keys that FsmnVADStreaming reads but that change no decision (or that it overwrites).
_OPTIONS_IGNORED = {"snr_mode", "do_start_point_detection", "do_end_point_detection", "nn_eval_block_size",
                    "dcd_block_size", "speech_noise_thresh_low", "speech_noise_thresh_high", "output_frame_probs"}
# WavFrontendOnline always scales samples to 16 bits and snips edges, whatever these say.
_FRONTEND_IGNORED = {"cmvn_file", "filter_length_min", "filter_length_max", "upsacle_samples", "snip_edges", "dither"}
_FRONTEND_DEFAULTS = {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                      "lfr_m": 1, "lfr_n": 1}  # WavFrontendOnline's own defaults


def vad_config_from_yaml(cfg: dict, *, has_cmvn: bool, where: str = "config.yaml") -> VadConfig:
    """Map the VAD's `config.yaml` (a dict; `where` names the file) onto VadConfig."""
    for key, want in (("model", "FsmnVADStreaming"), ("encoder", "FSMN"), ("frontend", "WavFrontendOnline")):
        if cfg.get(key) != want:
            raise ValueError(f"{where}: {key} is {cfg.get(key)!r}; the FSMN VAD says {want}")
    sections = {}
    for name in ("encoder_conf", "frontend_conf", "model_conf"):
        value = cfg.get(name) or {}
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {name} must be a mapping, got {type(value).__name__}")
        sections[name] = value
    fe = {**_FRONTEND_DEFAULTS, **sections["frontend_conf"]}
    fe = {k: v for k, v in fe.items() if k not in _FRONTEND_IGNORED}
    # Dither is left out as for SenseVoice: deterministic unless asked for.
    frontend = from_dict(VadFrontendConfig, {**fe, "cmvn": has_cmvn}, f"{where} frontend_conf")
    encoder = from_dict(FsmnConfig, sections["encoder_conf"], f"{where} encoder_conf")
    options = from_dict(VadOptions, {k: v for k, v in sections["model_conf"].items() if k not in _OPTIONS_IGNORED},
                        f"{where} model_conf")
    try:
        return VadConfig(frontend, encoder, options)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def fsmn_vad_shapes(cfg: FsmnConfig) -> dict[str, tuple]:
    """The flat state_dict of FunASR's FsmnVADStreaming for `cfg` (PyTorch layouts)."""
    shapes = {}

    def linear(name: str, d_in: int, d_out: int, bias: bool = True) -> None:
        shapes[f"encoder.{name}.linear.weight"] = (d_out, d_in)
        if bias:
            shapes[f"encoder.{name}.linear.bias"] = (d_out,)

    linear("in_linear1", cfg.input_dim, cfg.input_affine_dim)
    linear("in_linear2", cfg.input_affine_dim, cfg.linear_dim)
    for i in range(cfg.fsmn_layers):
        linear(f"fsmn.{i}.linear", cfg.linear_dim, cfg.proj_dim, bias=False)
        shapes[f"encoder.fsmn.{i}.fsmn_block.conv_left.weight"] = (cfg.proj_dim, 1, cfg.lorder, 1)  # Conv2d
        linear(f"fsmn.{i}.affine", cfg.proj_dim, cfg.linear_dim)
    linear("out_linear1", cfg.linear_dim, cfg.output_affine_dim)
    linear("out_linear2", cfg.output_affine_dim, cfg.output_dim)
    return shapes


def check_vad_shapes(found: dict[str, tuple], cfg: FsmnConfig, what: str) -> None:
    check_shapes(found, fsmn_vad_shapes(cfg), what)


@dataclass(frozen=True)
class VadSource:
    """An original FSMN VAD directory, resolved as FunASR's AutoModel resolves it."""

    root: Path
    model_pt: Path
    config_yaml: Path
    config: dict
    cmvn_file: Path | None

    @classmethod
    def from_dir(cls, root: str | Path) -> VadSource:
        root = Path(root)
        model_pt, config_yaml = original_files(root, "VAD", VAD_FILES)
        config = read_config_yaml(config_yaml)
        return cls(root, model_pt, config_yaml, config,
                   resolve_file(root, file_path_metas(root), config, "frontend_conf", "cmvn_file", ["am.mvn"]))

    @property
    def vad_config(self) -> VadConfig:
        return vad_config_from_yaml(self.config, has_cmvn=self.cmvn_file is not None, where=str(self.config_yaml))


# --- decisions --------------------------------------------------------------------------------

SPEECH, SILENCE, NOT_EVALUATED = 1, 0, -1  # FunASR's FrameState values (the last: kFrameStateInvalid)
CHUNK_MS = 60000  # FsmnVADStreaming.inference's chunk_size
# FsmnVADStreaming.inference's DEFAULT_SILENCE_SCHEDULE: (speech so far in ms, end silence in ms).
SILENCE_SCHEDULE = ((10000, 2000), (20000, 1000), (30000, 800), (40000, 600), (50000, 400), (60000, 200),
                    (math.inf, 100))
DYNAMIC_SPEECH_NOISE_THRES = 0.5  # what the schedule sets with each end silence


@dataclass(frozen=True)
class VadResult:
    segments: list[tuple[int, int]]  # speech, [start_ms, end_ms), in FunASR's order
    frame_states: np.ndarray  # int8 per score frame: SPEECH, SILENCE or NOT_EVALUATED


def fbank_frames(n_samples: int, fe: FrontendConfig) -> int:
    """Frames Kaldi's fbank (snip_edges) makes of `n_samples`: one VAD score each."""
    if n_samples < fe.frame_length_samples:
        return 0
    return (n_samples - fe.frame_length_samples) // fe.frame_shift_samples + 1


def chunk_ends(n_samples: int, fe: FrontendConfig, chunk_ms: int = CHUNK_MS) -> list[int]:
    """How many score frames exist after each of `inference`'s chunks. WavFrontendOnline holds
    back the frames whose LFR right context ((lfr_m - 1) // 2 frames) is still to come, until the last."""
    stride = int(chunk_ms * fe.fs / 1000)
    if stride < 1:
        raise ValueError(f"chunk_ms {chunk_ms} is shorter than one sample")
    held = (fe.lfr_m - 1) // 2
    ends = [max(0, fbank_frames((i + 1) * stride, fe) - held) for i in range(n_samples // stride)]
    return [*ends, fbank_frames(n_samples, fe)]


def decibels(samples: np.ndarray, cfg: VadConfig) -> np.ndarray:
    """Per-frame energy in dB as FsmnVADStreaming.ComputeDecibel computes it (float32 numpy), a
    60 s block at a time so that the frames never all sit in memory at once."""
    o = cfg.options
    size, shift = o.frame_length_ms * o.sample_rate // 1000, o.frame_in_ms * o.sample_rate // 1000
    x = np.ascontiguousarray(samples, dtype=np.float32)
    n = fbank_frames(x.size, cfg.frontend)
    out, block = [], CHUNK_MS // o.frame_in_ms
    for at in range(0, n, block):
        offsets = np.arange(at, min(n, at + block)) * shift
        frames = x[offsets[:, None] + np.arange(size)]
        out.append(10 * np.log10(np.sum(np.square(frames), axis=1) + 0.000001))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _exp_log(p: float, power: float = 1.0) -> float:
    """exp(log(p) * power) as FunASR rounds it; 0 where it would take log(0) (or of a negative sum)."""
    return math.exp(math.log(p) * power) if p > 0 else 0.0


class _Detection:
    """FsmnVADStreaming's per-utterance state (its `cache`: Stats and WindowDetector) and the
    methods that move it, named after FunASR's. Frame indices are absolute."""

    START, IN_SPEECH, END = 1, 2, 3  # VadStateMachine

    def __init__(self, opts: VadOptions, scores: np.ndarray, decibel: np.ndarray):
        self.o, self.scores, self.decibel = opts, scores, decibel
        self.frame_states = np.full(scores.shape[0], NOT_EVALUATED, np.int8)
        frame = opts.frame_in_ms
        self.win_size = int(opts.window_size_ms / frame)
        self.sil_to_speech_frames = int(opts.sil_to_speech_time_thres / frame)
        self.speech_to_sil_frames = int(opts.speech_to_sil_time_thres / frame)
        self.reset_window()
        self.data_buf_start_frame = 0  # FunASR pops its waveform buffer a frame at a time: only the count matters
        self.latest_confirmed_speech_frame = 0
        self.lastest_confirmed_silence_frame = -1
        self.continous_silence_frame_count = 0
        self.state = self.START
        self.confirmed_start_frame = -1
        self.confirmed_end_frame = -1
        self.number_end_time_detected = 0
        self.noise_average_decibel = -100.0
        self.max_end_sil_frame_cnt_thresh = opts.max_end_silence_time - opts.speech_to_sil_time_thres  # in ms
        self.speech_noise_thres = opts.speech_noise_thres
        self.output: list[list] = []  # [start_ms, end_ms, has start point, has end point]
        self.output_offset = 0

    def reset_window(self) -> None:
        self.win_state = [0] * self.win_size
        self.win_sum = self.cur_win_pos = 0
        self.win_speech = False  # WindowDetector.pre_frame_state

    def window_change(self, speech: bool) -> tuple[bool, bool]:
        """WindowDetector.DetectOneFrame: (speech before, speech now) of the smoothed state."""
        self.win_sum += int(speech) - self.win_state[self.cur_win_pos]
        self.win_state[self.cur_win_pos] = int(speech)
        self.cur_win_pos = (self.cur_win_pos + 1) % self.win_size
        before = self.win_speech
        if not before and self.win_sum >= self.sil_to_speech_frames:
            self.win_speech = True
        elif before and self.win_sum <= self.speech_to_sil_frames:
            self.win_speech = False
        return before, self.win_speech

    def frame_state(self, t: int) -> int:
        """GetFrameState."""
        o, cur_decibel = self.o, float(self.decibel[t])
        if cur_decibel < o.decibel_thres:
            return SILENCE
        ids = o.sil_pdf_ids
        sil = sum(float(self.scores[t, i]) for i in ids) if len(ids) > 1 else float(self.scores[t, ids[0]])
        if _exp_log(1.0 - sil) >= _exp_log(sil, o.speech_2_noise_ratio) + self.speech_noise_thres:
            snr = cur_decibel - self.noise_average_decibel
            return SPEECH if snr >= o.snr_thres and cur_decibel >= o.decibel_thres else SILENCE
        if self.noise_average_decibel < -99.9:
            self.noise_average_decibel = cur_decibel
        else:
            n = o.noise_frame_num_used_for_snr
            self.noise_average_decibel = (cur_decibel + self.noise_average_decibel * (n - 1)) / n
        return SILENCE

    # The callbacks: they grow the output segments.

    def pop_till(self, frame: int) -> None:
        self.data_buf_start_frame = max(self.data_buf_start_frame, frame)

    def pop_to_output(self, start_frm: int, frm_cnt: int, first_is_start: bool, last_is_end: bool) -> None:
        self.pop_till(start_frm)
        ms = self.o.frame_in_ms
        if not self.output or first_is_start:
            self.output.append([start_frm * ms, start_frm * ms, False, False])
        self.data_buf_start_frame += frm_cnt
        seg = self.output[-1]
        seg[1] = (start_frm + frm_cnt) * ms
        seg[2] = seg[2] or first_is_start
        seg[3] = seg[3] or last_is_end

    def on_silence(self, frame: int) -> None:
        self.lastest_confirmed_silence_frame = frame
        if self.state == self.START:
            self.pop_till(frame)

    def on_voice(self, frame: int) -> None:
        self.latest_confirmed_speech_frame = frame
        self.pop_to_output(frame, 1, False, False)

    def on_voice_start(self, start_frame: int, fake: bool = False) -> None:
        if self.confirmed_start_frame == -1:
            self.confirmed_start_frame = start_frame
        if not fake and self.state == self.START:
            self.pop_to_output(self.confirmed_start_frame, 1, True, False)

    def on_voice_end(self, end_frame: int, fake: bool) -> None:
        for t in range(self.latest_confirmed_speech_frame + 1, end_frame):
            self.on_voice(t)
        if self.confirmed_end_frame == -1:
            self.confirmed_end_frame = end_frame
        if not fake:
            self.pop_to_output(self.confirmed_end_frame, 1, False, True)
        self.number_end_time_detected += 1

    def end_if_last(self, is_final: bool, cur: int) -> None:
        if is_final:
            self.on_voice_end(cur, False)
            self.state = self.END

    def latency(self) -> int:
        """LatencyFrmNumAtStartPoint."""
        o = self.o
        return self.win_size + (int(o.lookback_time_start_point / o.frame_in_ms) if o.do_extend else 0)

    def too_long(self, cur: int) -> bool:
        return cur - self.confirmed_start_frame + 1 > self.o.max_single_segment_time / self.o.frame_in_ms

    def detect_one_frame(self, t: int, is_final: bool) -> None:
        """GetFrameState, then DetectOneFrame."""
        o, ms = self.o, self.o.frame_in_ms
        state = self.frame_state(t)
        self.frame_states[t] = state
        before, now = self.window_change(state == SPEECH and 1.0 > o.fe_prior_thres)
        if not before and now:  # kChangeStateSil2Speech
            self.continous_silence_frame_count = 0
            if self.state == self.START:
                start = max(self.data_buf_start_frame, t - self.latency())
                self.on_voice_start(start)
                self.state = self.IN_SPEECH
                for f in range(start + 1, t + 1):
                    self.on_voice(f)
            elif self.state == self.IN_SPEECH:
                for f in range(self.latest_confirmed_speech_frame + 1, t):
                    self.on_voice(f)
                self.speech_frame(t, is_final)
        elif before:  # kChangeStateSpeech2Speech, kChangeStateSpeech2Sil
            self.continous_silence_frame_count = 0
            if self.state == self.IN_SPEECH:
                self.speech_frame(t, is_final)
        else:  # kChangeStateSil2Sil
            self.continous_silence_frame_count += 1
            silence_ms = self.continous_silence_frame_count * ms
            if self.state == self.START:
                if (o.detect_mode == 0 and silence_ms > o.max_start_silence_time) or \
                        (is_final and self.number_end_time_detected == 0):
                    for f in range(self.lastest_confirmed_silence_frame + 1, t):
                        self.on_silence(f)
                    self.on_voice_start(0, fake=True)
                    self.on_voice_end(0, fake=True)
                    self.state = self.END
                elif t >= self.latency():
                    self.on_silence(t - self.latency())
            elif self.state == self.IN_SPEECH:
                if silence_ms >= self.max_end_sil_frame_cnt_thresh:
                    lookback = int(self.max_end_sil_frame_cnt_thresh / ms)
                    if o.do_extend:
                        lookback = max(0, lookback - int(o.lookahead_time_end_point / ms) - 1)
                    self.on_voice_end(t - lookback, False)
                    self.state = self.END
                elif self.too_long(t):
                    self.on_voice_end(t, False)
                    self.state = self.END
                elif o.do_extend and not is_final:
                    if self.continous_silence_frame_count <= int(o.lookahead_time_end_point / ms):
                        self.on_voice(t)
                else:
                    self.end_if_last(is_final, t)
        if self.state == self.END and o.detect_mode == 1:
            self.reset_detection()

    def speech_frame(self, t: int, is_final: bool) -> None:
        """What Sil2Speech, Speech2Speech and Speech2Sil share inside a segment."""
        if self.too_long(t):
            self.on_voice_end(t, False)
            self.state = self.END
        elif not is_final:
            self.on_voice(t)
        else:
            self.end_if_last(is_final, t)

    def reset_detection(self) -> None:
        self.continous_silence_frame_count = 0
        self.latest_confirmed_speech_frame = 0
        self.lastest_confirmed_silence_frame = -1
        self.confirmed_start_frame = self.confirmed_end_frame = -1
        self.state = self.START
        self.reset_window()

    def run_chunk(self, first: int, end: int, is_final: bool) -> list[tuple[int, int]]:
        """One call of `forward`: Detect{Common,Last}Frames over frames [first, end), then the
        segments it returns offline (complete ones; every one left at the last chunk)."""
        if end <= first:
            return []  # forward returns at once when the frontend gave no frames
        if self.state != self.END:
            for t in range(first, end):
                self.detect_one_frame(t, is_final and t == end - 1)
        out = []
        for seg in self.output[self.output_offset:]:
            if not is_final and not (seg[2] and seg[3]):
                continue
            out.append((seg[0], seg[1]))
            self.output_offset += 1
        return out


def detect(scores: np.ndarray, samples: np.ndarray, cfg: VadConfig, *, max_end_silence_ms: int | None = None,
           max_single_segment_ms: int | None = None, chunk_ms: int = CHUNK_MS) -> VadResult:
    """Speech segments of one utterance as FsmnVADStreaming.inference finds them offline.

    `scores` [T, output_dim]: the encoder's per-frame probabilities for `samples` (16 kHz,
    [-1, 1]); T is the fbank frame count. As in FunASR, without `max_end_silence_ms` the end
    silence follows the silence schedule (2 s for the first 10 s of speech, then less, reset
    with every segment found; speech_noise_thres 0.5), updated at each chunk; with it, the end
    silence is fixed and speech_noise_thres is the config's. `max_single_segment_ms` overrides
    the config's max_single_segment_time (FunASR takes it from vad_kwargs when building the model).
    """
    if max_single_segment_ms is not None:
        cfg = dataclasses.replace(cfg, options=dataclasses.replace(
            cfg.options, max_single_segment_time=max_single_segment_ms))
    if max_end_silence_ms is not None:
        cfg = dataclasses.replace(cfg, options=dataclasses.replace(
            cfg.options, max_end_silence_time=max_end_silence_ms))
    ends = chunk_ends(samples.size, cfg.frontend, chunk_ms)
    if scores.ndim != 2 or scores.shape != (ends[-1], cfg.encoder.output_dim):
        raise ValueError(f"scores are {tuple(scores.shape)}; {samples.size} samples make "
                         f"{(ends[-1], cfg.encoder.output_dim)}")
    det = _Detection(cfg.options, scores, decibels(samples, cfg))
    dynamic = max_end_silence_ms is None
    speech_ms, in_speech, segments, first = 0, False, [], 0
    for i, end in enumerate(ends):
        if dynamic:
            if det.state == det.IN_SPEECH or in_speech:
                speech_ms += chunk_ms
                in_speech = True
            silence = next(s for limit, s in SILENCE_SCHEDULE if speech_ms <= limit)
            det.max_end_sil_frame_cnt_thresh = max(silence - cfg.options.speech_to_sil_time_thres, 0)
            det.speech_noise_thres = DYNAMIC_SPEECH_NOISE_THRES
        found = det.run_chunk(first, end, i == len(ends) - 1)
        first = end
        segments += found
        if found and dynamic:
            speech_ms, in_speech = 0, False
    return VadResult(segments, det.frame_states)
