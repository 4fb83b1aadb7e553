"""Configs shared by the reference and the MLX path.

Dataclasses loaded from dicts with unknown keys refused (a typo must not pass
silently). Upstream FunASR config.yaml files are mapped here, in one place,
including their spellings (`sanm_shfit`, `upsacle_samples`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# SenseVoiceSmall.lid_dict / textnorm_dict: rows of its `embed` table.
LANGUAGE_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
TEXTNORM_IDS = {"withitn": 14, "woitn": 15}
EVENT_EMOTION_IDS = (1, 2)
QUERY_ROWS = 4  # [language, 1, 2, textnorm]
EMBED_ROWS = 7 + len(LANGUAGE_IDS) + len(TEXTNORM_IDS)  # nn.Embedding(16, input_size)


def from_dict(cls, data: dict[str, Any], what: str | None = None):
    """Build dataclass `cls` from `data`, refusing unknown keys and values whose
    type differs from the field's default (an int is taken where a float is)."""
    what = what or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown keys in {what}: {unknown}; known: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        factory = f.default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            value = from_dict(factory, value, f"{what}.{f.name}")
        elif f.default is not dataclasses.MISSING and f.default is not None:
            value = _typed(value, type(f.default), f"{what}.{f.name}")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ValueError as e:  # a range check: name where the value came from
        raise ValueError(f"{what}: {e}") from None


def _typed(value, kind: type, where: str):
    # bool is an int in Python: refuse it where a number is meant, and numbers where a bool is.
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ValueError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _at_least(cfg, low: int, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(cfg, name)}")


def _positive_finite(cfg, name: str) -> None:
    v = getattr(cfg, name)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v}")


class Backend(str, Enum):
    """Which path computes: the MLX port or the PyTorch reference (the oracle)."""

    MLX = "mlx"
    REFERENCE = "reference"

    @classmethod
    def parse(cls, value: "str | Backend") -> "Backend":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown backend {value!r}; use one of {[b.value for b in cls]}") from None


@dataclass(frozen=True)
class FrontendConfig:
    """FunASR WavFrontend: Kaldi fbank → LFR → CMVN."""

    fs: int = 16000
    window: str = "hamming"
    n_mels: int = 80
    frame_length: int = 25  # ms
    frame_shift: int = 10  # ms
    lfr_m: int = 7
    lfr_n: int = 6
    # WavFrontend's own default is 1.0 (random noise on every sample); we run
    # deterministic by default and parity always forces 0.
    dither: float = 0.0
    snip_edges: bool = True
    upscale_samples: bool = True  # samples * 32768 before fbank
    cmvn: bool = True

    def __post_init__(self):
        if self.fs != 16000:  # audio is always resampled to 16 kHz (audio.SAMPLE_RATE) before the frontend
            raise ValueError(f"fs must be 16000 (SenseVoice's rate; audio is resampled to it), got {self.fs}")
        if self.window not in WINDOWS:
            raise ValueError(f"window {self.window!r} is not supported; use one of {WINDOWS}")
        if not self.snip_edges:
            raise ValueError("snip_edges=False is not supported (SenseVoice uses True)")
        _at_least(self, 1, "n_mels", "frame_length", "frame_shift", "lfr_m", "lfr_n")
        if self.frame_shift > self.frame_length:
            raise ValueError(f"frame_shift {self.frame_shift} ms is longer than frame_length {self.frame_length} ms")
        if not (math.isfinite(self.dither) and self.dither >= 0):
            raise ValueError(f"dither must be a finite number >= 0, got {self.dither}")

    def check_samples(self, n: int) -> None:
        """WavFrontend shrinks the frame below 25 ms for shorter input (another
        FFT size and mel bank); both our frontends refuse such input instead. The
        Transcriber never hands them such a clip: under 100 ms is no speech (nospeech.py),
        transcribed as empty text."""
        if n < self.frame_length_samples:
            raise ValueError(f"audio is {n} samples ({1000 * n / self.fs:.1f} ms); at least "
                             f"{self.frame_length} ms ({self.frame_length_samples} samples) is needed")

    @property
    def frame_length_samples(self) -> int:
        return self.fs * self.frame_length // 1000

    @property
    def frame_shift_samples(self) -> int:
        return self.fs * self.frame_shift // 1000

    @property
    def fft_size(self) -> int:
        return 1 << (self.frame_length_samples - 1).bit_length()

    @property
    def feature_dim(self) -> int:
        return self.n_mels * self.lfr_m


WINDOWS = ("hamming", "hanning", "povey", "rectangular")


@dataclass(frozen=True)
class EncoderConfig:
    """SenseVoiceEncoderSmall (SAN-M)."""

    input_size: int = 560
    output_size: int = 512
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 50  # encoders0 (1) + encoders (num_blocks - 1)
    tp_blocks: int = 20
    kernel_size: int = 11
    sanm_shift: int = 0
    normalize_before: bool = True
    eps: float = 1e-5  # nn.LayerNorm default; FunASR does not change it

    def __post_init__(self):
        _at_least(self, 1, "input_size", "output_size", "attention_heads", "linear_units", "kernel_size", "num_blocks")
        _at_least(self, 0, "tp_blocks")
        if self.output_size % self.attention_heads:
            raise ValueError(f"output_size {self.output_size} is not divisible by attention_heads {self.attention_heads}")
        if not 0 <= (self.kernel_size - 1) // 2 + self.sanm_shift <= self.kernel_size - 1:
            raise ValueError(f"sanm_shift {self.sanm_shift} moves the FSMN window outside its kernel of "
                             f"{self.kernel_size}")
        _positive_finite(self, "eps")
        if not self.normalize_before:
            raise ValueError("normalize_before=False is not supported (SenseVoiceSmall is pre-norm)")

    @property
    def fsmn_padding(self) -> tuple[int, int]:
        left = (self.kernel_size - 1) // 2 + self.sanm_shift
        return left, self.kernel_size - 1 - left

    @property
    def num_layers(self) -> int:
        return self.num_blocks + self.tp_blocks


@dataclass(frozen=True)
class QueryConfig:
    """The 4 rows SenseVoiceSmall.inference puts in front of the features."""

    enabled: bool = True
    language: str = "zh"
    textnorm: str = "woitn"

    def __post_init__(self):
        if self.language not in LANGUAGE_IDS:
            raise ValueError(f"unknown language {self.language!r}; use one of {sorted(LANGUAGE_IDS)}")
        if self.textnorm not in TEXTNORM_IDS:
            raise ValueError(f"unknown textnorm {self.textnorm!r}; use one of {sorted(TEXTNORM_IDS)}")

    @classmethod
    def from_dict(cls, data: dict, what: str = "query") -> "QueryConfig":
        return from_dict(cls, data, what)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def ids(self) -> list[int]:
        if not self.enabled:
            return []
        return [LANGUAGE_IDS[self.language], *EVENT_EMOTION_IDS, TEXTNORM_IDS[self.textnorm]]


@dataclass(frozen=True)
class SenseVoiceConfig:
    """The encoder with what SenseVoiceSmall puts around it. Fun-ASR-Nano's encoder has
    neither the query embedding (`embed` False) nor a CTC head on it (`vocab_size` None)."""

    vocab_size: int | None
    blank_id: int = 0
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    embed: bool = True  # the query-row table, nn.Embedding(16, input_size)

    def __post_init__(self):
        if self.vocab_size is not None:
            if not isinstance(self.vocab_size, int) or isinstance(self.vocab_size, bool) or self.vocab_size < 2:
                raise ValueError(f"vocab_size must be an integer >= 2 (or null: no CTC head), got {self.vocab_size!r}")
            if not 0 <= self.blank_id < self.vocab_size:
                raise ValueError(f"blank_id {self.blank_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        if self.encoder.input_size != self.frontend.feature_dim:
            raise ValueError(f"encoder input_size {self.encoder.input_size} is not the frontend's n_mels × lfr_m "
                             f"= {self.frontend.feature_dim}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, what: str = "sensevoice config") -> "SenseVoiceConfig":
        return from_dict(cls, data, what)


ACTIVATIONS = ("gelu", "relu")


@dataclass(frozen=True)
class AdaptorConfig:
    """The trained audio adaptor: input_proj → nn.TransformerEncoder → output_proj → norm.

    Dimensions are read from the checkpoint's shapes; the rest cannot be, and
    defaults to what the real adaptor was trained with: PyTorch's TransformerEncoderLayer
    defaults (docs/model.md).
    """

    encoder_dim: int = 512
    d_model: int = 2048
    num_layers: int = 4
    dim_feedforward: int = 8192
    llm_dim: int = 2560
    nhead: int = 8
    norm_first: bool = False  # post-norm: x = norm1(x + SA(x)); x = norm2(x + FF(x))
    activation: str = "gelu"  # exact (erf) GELU
    eps: float = 1e-5

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"adaptor activation {self.activation!r} is not supported; use one of {ACTIVATIONS}")
        _at_least(self, 1, "encoder_dim", "d_model", "num_layers", "dim_feedforward", "llm_dim", "nhead")
        if self.d_model % self.nhead:
            raise ValueError(f"adaptor d_model {self.d_model} is not divisible by nhead {self.nhead}; pass the heads it was trained with")
        _positive_finite(self, "eps")

    @property
    def structure(self) -> dict:
        """What the weights' shapes cannot tell: given at conversion, recorded in the bundle."""
        return {"nhead": self.nhead, "norm_first": self.norm_first, "activation": self.activation, "eps": self.eps}

    def audio_rows(self, frames: int) -> int:
        """Rows the LLM reads for `frames` encoder frames: every one."""
        return frames

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, what: str = "adaptor config") -> "AdaptorConfig":
        return from_dict(cls, data, what)


@dataclass(frozen=True)
class NanoAdaptorConfig:
    """Fun-ASR-Nano's audio adaptor, FunASR's `Transformer` (funasr/models/llm_asr/adaptor.py):
    `downsample_rate` frames concatenated → linear1 → ReLU → linear2 → `n_layer` pre-norm
    Transformer blocks at `llm_dim` (FFN llm_dim // 4, ReLU; LayerNorm eps 1e-12, FunASR's own)."""

    encoder_dim: int = 512
    llm_dim: int = 1024
    ffn_dim: int = 2048
    downsample_rate: int = 1
    n_layer: int = 2
    attention_heads: int = 8
    # FunASRNano reads it with default False; the published config sets it. When set, the
    # LLM takes only the first ceil(frames / 8) rows of the adaptor's output.
    use_low_frame_rate: bool = False
    eps: float = 1e-12

    def __post_init__(self):
        _at_least(self, 1, "encoder_dim", "llm_dim", "ffn_dim", "downsample_rate", "attention_heads")
        _at_least(self, 0, "n_layer")
        if self.llm_dim % self.attention_heads:
            raise ValueError(f"adaptor llm_dim {self.llm_dim} is not divisible by attention_heads "
                             f"{self.attention_heads}")
        if self.llm_dim < 4:
            raise ValueError(f"adaptor llm_dim must be >= 4 (its blocks' FFN is llm_dim // 4), got {self.llm_dim}")
        if self.use_low_frame_rate and self.downsample_rate > LOW_FRAME_RATE:
            # FunASR then has more placeholders than adaptor rows and falls back to an error path.
            raise ValueError(f"use_low_frame_rate with downsample_rate {self.downsample_rate} > {LOW_FRAME_RATE} "
                             f"is not supported")
        _positive_finite(self, "eps")

    @property
    def block_ffn(self) -> int:
        return self.llm_dim // 4

    def adaptor_rows(self, frames: int) -> int:
        """Rows the adaptor gives for `frames` encoder frames."""
        return (frames - 1) // self.downsample_rate + 1

    def audio_rows(self, frames: int) -> int:
        """Rows the LLM reads for `frames` encoder frames: FunASRNano.data_load_speech's
        `fake_token_len` (three halvings, each rounded up) with use_low_frame_rate, else all."""
        if not self.use_low_frame_rate:
            return self.adaptor_rows(frames)
        n = frames
        for _ in range(3):
            n = (n - 1) // 2 + 1
        return n

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, what: str = "nano adaptor config") -> "NanoAdaptorConfig":
        return from_dict(cls, data, what)


LOW_FRAME_RATE = 8  # use_low_frame_rate: one LLM row per 8 encoder frames

MODEL_KINDS = ("qwen4b", "funasr-nano")
DEFAULT_KIND = "qwen4b"  # a bundle.json without `kind` (every bundle before Fun-ASR-Nano)


# --- upstream config.yaml -------------------------------------------------

# Upstream spellings, mapped once.
_UPSTREAM_RENAMES = {"sanm_shfit": "sanm_shift", "upsacle_samples": "upscale_samples"}
# Keys that change nothing at inference (dropout, training-only layers) or
# that name what we implement anyway.
_ENCODER_IGNORED = {
    "dropout_rate", "positional_dropout_rate", "attention_dropout_rate",
    "stochastic_depth_rate", "input_layer", "pos_enc_class",
    "positionwise_layer_type", "positionwise_conv_kernel_size", "padding_idx",
    "selfattention_layer_type", "concat_after",
}
_FRONTEND_IGNORED = {"cmvn_file", "filter_length_min", "filter_length_max"}
# A key missing from config.yaml takes the upstream class default, which is
# not always the released model's value (SenseVoiceEncoderSmall: 256-d, 6 blocks).
_ENCODER_UPSTREAM_DEFAULTS = {
    "output_size": 256, "attention_heads": 4, "linear_units": 2048, "num_blocks": 6,
    "tp_blocks": 0, "kernel_size": 11, "sanm_shift": 0, "normalize_before": True,
}
_FRONTEND_UPSTREAM_DEFAULTS = {
    "fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
    "lfr_m": 1, "lfr_n": 1, "snip_edges": True, "upscale_samples": True,
}


def _rename(d: dict) -> dict:
    return {_UPSTREAM_RENAMES.get(k, k): v for k, v in d.items()}


def sensevoice_config_from_yaml(cfg: dict, *, vocab_size: int, has_cmvn: bool,
                                where: str = "config.yaml") -> SenseVoiceConfig:
    """Map FunASR's SenseVoiceSmall `config.yaml` (as a dict; `where` names the file) onto our config.

    `vocab_size` comes from the caller (FunASR takes it from the tokenizer or
    we read it from the checkpoint's `ctc.ctc_lo` shape).
    """
    if cfg.get("model") != "SenseVoiceSmall":
        raise ValueError(f"{where}: model is {cfg.get('model')!r}; only SenseVoiceSmall is supported")
    return _encoder_config(cfg, "encoder", vocab_size=vocab_size, has_cmvn=has_cmvn, embed=True, where=where)


# What FunASR's classes take from Fun-ASR-Nano's sections; they ignore any other key (their
# **kwargs), and so does this mapping.
_NANO_ENCODER_ARGS = {
    "output_size", "attention_heads", "linear_units", "num_blocks", "tp_blocks", "dropout_rate",
    "positional_dropout_rate", "attention_dropout_rate", "stochastic_depth_rate", "input_layer", "pos_enc_class",
    "normalize_before", "concat_after", "positionwise_layer_type", "positionwise_conv_kernel_size", "padding_idx",
    "kernel_size", "sanm_shfit", "selfattention_layer_type",
}
_NANO_ADAPTOR_ARGS = {"downsample_rate", "ffn_dim", "n_layer", "attention_heads", "use_low_frame_rate"}


def nano_encoder_config_from_yaml(cfg: dict, *, has_cmvn: bool, where: str = "config.yaml") -> SenseVoiceConfig:
    """Fun-ASR-Nano's `config.yaml` (a dict): its audio encoder and frontend. FunASRNano feeds the
    encoder the features alone (no query rows) and reads no CTC head off it."""
    if cfg.get("model") != "FunASRNano":
        raise ValueError(f"{where}: model is {cfg.get('model')!r}; a Fun-ASR-Nano config says FunASRNano")
    conf = cfg.get("audio_encoder_conf") or {}
    if not isinstance(conf, dict):
        raise ValueError(f"{where}: audio_encoder_conf must be a mapping, got {type(conf).__name__}")
    if conf.get("hub") == "ms":  # FunASRNano then takes the encoder, and its config, from another model
        raise ValueError(f"{where}: audio_encoder_conf.hub=ms loads the encoder from another model; only an "
                         f"encoder built from this config is supported")
    mapped = {**cfg, "encoder_conf": {k: v for k, v in conf.items() if k in _NANO_ENCODER_ARGS}, "model_conf": {}}
    return _encoder_config(mapped, "audio_encoder", vocab_size=None, has_cmvn=has_cmvn, embed=False, where=where)


def nano_adaptor_config_from_yaml(cfg: dict, *, encoder_dim: int, llm_dim: int,
                                  where: str = "config.yaml") -> NanoAdaptorConfig:
    """Fun-ASR-Nano's `audio_adaptor_conf`. As FunASRNano does, `encoder_dim` comes from the
    encoder and `llm_dim` from the LLM's embedding width, whatever the section says."""
    if cfg.get("audio_adaptor") != "Transformer":
        raise ValueError(f"{where}: audio_adaptor is {cfg.get('audio_adaptor')!r}; only FunASR's Transformer "
                         f"adaptor is supported")
    conf = cfg.get("audio_adaptor_conf") or {}
    if not isinstance(conf, dict):
        raise ValueError(f"{where}: audio_adaptor_conf must be a mapping, got {type(conf).__name__}")
    kept = {k: v for k, v in conf.items() if k in _NANO_ADAPTOR_ARGS}
    return from_dict(NanoAdaptorConfig, {**kept, "encoder_dim": encoder_dim, "llm_dim": llm_dim},
                     f"{where} audio_adaptor_conf")


def _encoder_config(cfg: dict, key: str, *, vocab_size: int | None, has_cmvn: bool, embed: bool,
                    where: str) -> SenseVoiceConfig:
    if cfg.get(key) != "SenseVoiceEncoderSmall":
        raise ValueError(f"{where}: {key} is {cfg.get(key)!r}; only SenseVoiceEncoderSmall is supported")
    if cfg.get("frontend", "WavFrontend") not in ("WavFrontend", "wav_frontend"):
        raise ValueError(f"{where}: frontend is {cfg.get('frontend')!r}; only WavFrontend is supported")
    sections = {}
    for name in ("encoder_conf", "frontend_conf", "model_conf"):
        value = cfg.get(name) or {}
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {name} must be a mapping, got {type(value).__name__}")
        sections[name] = value
    enc = {**_ENCODER_UPSTREAM_DEFAULTS, **_rename(sections["encoder_conf"])}
    if enc.get("concat_after"):
        raise ValueError(f"{where}: encoder_conf.concat_after=true is not supported")
    enc = {k: v for k, v in enc.items() if k not in _ENCODER_IGNORED}
    fe = {**_FRONTEND_UPSTREAM_DEFAULTS, **_rename(sections["frontend_conf"])}
    fe = {k: v for k, v in fe.items() if k not in _FRONTEND_IGNORED}
    # WavFrontend's dither default is 1.0; we keep parity/transcription
    # deterministic and let the caller ask for dither explicitly.
    fe.pop("dither", None)
    frontend = from_dict(FrontendConfig, {**fe, "cmvn": has_cmvn}, f"{where} frontend_conf")
    encoder = from_dict(EncoderConfig, {**enc, "input_size": frontend.feature_dim}, f"{where} encoder_conf")
    blank_id = sections["model_conf"].get("blank_id", cfg.get("blank_id", 0))
    if not isinstance(blank_id, int) or isinstance(blank_id, bool):
        raise ValueError(f"{where}: blank_id must be an integer, got {blank_id!r}")
    try:
        return SenseVoiceConfig(vocab_size=None if vocab_size is None else int(vocab_size), blank_id=blank_id,
                                frontend=frontend, encoder=encoder, embed=embed)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
