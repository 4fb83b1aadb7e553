"""Frontend (Kaldi fbank → LFR → CMVN): the MLX port and the reference against
independent oracles: kaldi-native-fbank called directly, FunASR's own
WavFrontend / apply_lfr / load_cmvn, and hand-derived values."""

import os

os.environ.setdefault("MLX_ENABLE_TF32", "0")  # strict fp32 parity tier

from pathlib import Path  # noqa: E402

import kaldi_native_fbank as knf  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from funasr.frontends.wav_frontend import WavFrontend, apply_lfr, load_cmvn  # noqa: E402

from funasr_qwen4b import taps  # noqa: E402
from funasr_qwen4b.audio import load_audio  # noqa: E402
from funasr_qwen4b.config import FrontendConfig  # noqa: E402
from funasr_qwen4b.sources import parse_am_mvn  # noqa: E402
from funasr_qwen4b.mlx_port.frontend import Frontend as MlxFrontend  # noqa: E402
from funasr_qwen4b.mlx_port.frontend import lfr_indices, mel_banks  # noqa: E402
from funasr_qwen4b.mlx_port.taps import TapRecorder as MlxTaps  # noqa: E402
from funasr_qwen4b.testing import write_am_mvn  # noqa: E402
from funasr_qwen4b.reference.frontend import Frontend as RefFrontend  # noqa: E402
from funasr_qwen4b.reference.taps import TapRecorder as RefTaps  # noqa: E402

CLIP = Path(__file__).resolve().parent.parent / "datasets" / "clips" / "zh_open_hours.wav"
REL = 1e-5  # the project's strict fp32 bar
FS = 16000
FEAT_DIM = 80 * 7
LOG_FLOOR = np.float32(np.log(np.float32(np.finfo(np.float32).eps)))  # Kaldi: log(FLT_EPSILON)


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def speech_like(n: int, seed: int) -> np.ndarray:
    """Seeded noise + a few sines with a slow amplitude envelope, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)
    x = (0.05 * rng.standard_normal(n)
         + env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 1330 * t + 1.0)
                  + 0.05 * np.sin(2 * np.pi * 5100 * t + 2.0)))
    return np.clip(x, -1, 1).astype(np.float32)


def knf_fbank(samples: np.ndarray, window: str = "hamming") -> np.ndarray:
    """kaldi-native-fbank with its own options: FunASR's WavFrontend settings."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = FS
    opts.frame_opts.frame_length_ms = 25
    opts.frame_opts.frame_shift_ms = 10
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = window
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20
    opts.mel_opts.high_freq = 0
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(FS, (samples.astype(np.float32) * 32768).astype(np.float32))
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def mvn_values(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-15, -8, FEAT_DIM).astype(np.float32)
    scale = rng.uniform(0.14, 0.16, FEAT_DIM).astype(np.float32)
    return shift, scale


@pytest.fixture(scope="module")
def zh_clip():
    x = load_audio(CLIP)
    assert x.size > 16000
    return x


@pytest.fixture(scope="module")
def am_mvn(tmp_path_factory):
    path = tmp_path_factory.mktemp("mvn") / "am.mvn"
    write_am_mvn(path, *mvn_values())
    return path


def mlx_frontend(am_mvn_path, window: str = "hamming") -> MlxFrontend:
    fe = MlxFrontend(FrontendConfig(window=window))
    shift, scale = parse_am_mvn(am_mvn_path)
    fe.cmvn.shift = mx.array(shift)
    fe.cmvn.scale = mx.array(scale)
    return fe


def funasr_forward(am_mvn_path, samples: np.ndarray) -> np.ndarray:
    wf = WavFrontend(cmvn_file=str(am_mvn_path), lfr_m=7, lfr_n=6, dither=0.0)
    feats, lens = wf.forward(torch.from_numpy(samples.copy())[None], torch.tensor([samples.size]))
    assert feats.shape[0] == 1 and int(lens[0]) == feats.shape[1]
    return feats[0].numpy()


# 1. MLX fbank vs kaldi-native-fbank -------------------------------------------------------


@pytest.mark.parametrize("window", ["hamming", "povey", "hanning"])
@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000])
def test_mlx_fbank_matches_knf(n, window):
    x = speech_like(n, seed=n)
    fe = MlxFrontend(FrontendConfig(window=window))
    ours = np.array(fe.fbank(mx.array(x)))
    oracle = knf_fbank(x, window)
    frames = 1 + (n - 400) // 160
    assert ours.shape == oracle.shape == (frames, 80)
    assert {400: 1, 401: 1, 559: 1, 560: 2, 16000: 98}[n] == frames
    assert rel_l2(ours, oracle) <= REL


def test_mlx_fbank_matches_knf_on_clip(zh_clip):
    fe = MlxFrontend(FrontendConfig())
    ours = np.array(fe.fbank(mx.array(zh_clip)))
    oracle = knf_fbank(zh_clip)
    assert ours.shape == oracle.shape == (1 + (zh_clip.size - 400) // 160, 80)
    assert rel_l2(ours, oracle) <= REL


def test_windows_differ_so_window_choice_is_tested():
    """Guard: hamming/povey/hanning fbanks are far apart, so test 1 would catch a mix-up."""
    x = speech_like(4000, seed=1)
    h, p, n = (knf_fbank(x, w) for w in ("hamming", "povey", "hanning"))
    assert rel_l2(h, p) > 100 * REL and rel_l2(h, n) > 100 * REL and rel_l2(p, n) > 100 * REL


# 2. Mel bank --------------------------------------------------------------------------------


def test_mel_banks_match_knf():
    frame_opts = knf.FrameExtractionOptions()
    frame_opts.samp_freq = FS
    frame_opts.frame_length_ms = 25
    frame_opts.round_to_power_of_two = True
    mel_opts = knf.MelBanksOptions()
    mel_opts.num_bins = 80
    mel_opts.low_freq = 20
    mel_opts.high_freq = 0
    oracle = knf.MelBanks(mel_opts, frame_opts, 1.0).get_matrix().T  # [257, 80]
    ours = mel_banks(80, 512, FS)
    assert ours.shape == oracle.shape == (257, 80)
    # Same triangle supports exactly; weights agree to fp32 rounding (Kaldi builds them in float).
    np.testing.assert_array_equal(ours > 0, oracle > 0)
    assert (ours >= 0).all() and (ours <= 1).all()
    np.testing.assert_array_equal(ours[-1], 0.0)  # Nyquist bin unused
    np.testing.assert_array_equal(oracle[-1], 0.0)
    assert rel_l2(ours, oracle) <= REL


# 3. Reference Frontend == FunASR WavFrontend.forward ----------------------------------------


@pytest.mark.parametrize("which", ["clip", "synthetic_400", "synthetic_16000"])
def test_reference_frontend_equals_wavfrontend(which, zh_clip, am_mvn):
    x = {"clip": zh_clip, "synthetic_400": speech_like(400, 7),
         "synthetic_16000": speech_like(16000, 8)}[which]
    ours = RefFrontend(FrontendConfig(), am_mvn, dither=0.0)(x).numpy()
    oracle = funasr_forward(am_mvn, x)
    assert ours.shape == oracle.shape == (-(-(1 + (x.size - 400) // 160) // 6), FEAT_DIM)
    np.testing.assert_array_equal(ours, oracle)


# 4. MLX full frontend vs FunASR, tap by tap -------------------------------------------------


@pytest.mark.parametrize("which", ["clip", "synthetic"])
def test_mlx_frontend_taps_match_funasr(which, zh_clip, am_mvn):
    x = zh_clip if which == "clip" else speech_like(23456, 3)
    ref_rec, mlx_rec = RefTaps(), MlxTaps()
    ref_out = RefFrontend(FrontendConfig(), am_mvn, dither=0.0)(x, ref_rec).numpy()
    mlx_out = np.array(mlx_frontend(am_mvn)(mx.array(x), mlx_rec))
    assert set(ref_rec.outputs) == set(mlx_rec.outputs) == set(taps.FRONTEND_TAPS)
    for name in taps.FRONTEND_TAPS:
        assert rel_l2(mlx_rec.outputs[name], ref_rec.outputs[name]) <= REL, name
    # Directly against the independent oracles too.
    oracle = funasr_forward(am_mvn, x)
    assert rel_l2(mlx_out, oracle) <= REL
    np.testing.assert_array_equal(ref_out, oracle)
    np.testing.assert_array_equal(mlx_rec.outputs[taps.CMVN], mlx_out)
    assert rel_l2(mlx_rec.outputs[taps.FBANK], knf_fbank(x)) <= REL


def test_mlx_cmvn_is_applied(am_mvn):
    """The cmvn tap is (lfr + shift) * scale with the file's values, computed by hand."""
    x = speech_like(8000, 4)
    rec = MlxTaps()
    mlx_frontend(am_mvn)(mx.array(x), rec)
    shift, scale = mvn_values()
    shift, scale = shift.round(6), scale.round(6)  # write_am_mvn writes %.6f
    by_hand = (rec.outputs[taps.LFR].astype(np.float64) + shift) * scale
    assert rel_l2(rec.outputs[taps.CMVN], by_hand) <= REL


# 5. LFR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 3, 6, 7, 11, 12, 13, 100])
def test_lfr_matches_funasr_apply_lfr(t):
    fbank = np.random.default_rng(t).standard_normal((t, 80)).astype(np.float32)
    fe = MlxFrontend(FrontendConfig())
    ours = np.array(fe.lfr(mx.array(fbank)))
    oracle = apply_lfr(torch.from_numpy(fbank.copy()), 7, 6).numpy()
    assert ours.shape == oracle.shape == (-(-t // 6), FEAT_DIM)
    np.testing.assert_array_equal(ours, oracle)


@pytest.mark.parametrize("t", [1, 3, 6, 7, 11, 12, 13, 100])
def test_lfr_indices_hand_formula(t):
    idx = lfr_indices(t, 7, 6)
    rows = int(np.ceil(t / 6))
    by_hand = np.array([[min(max(6 * i + j - 3, 0), t - 1) for j in range(7)] for i in range(rows)])
    assert idx.shape == (rows, 7)
    np.testing.assert_array_equal(idx, by_hand)


def test_lfr_indices_small_cases_written_out():
    np.testing.assert_array_equal(lfr_indices(1, 7, 6), [[0] * 7])
    np.testing.assert_array_equal(lfr_indices(7, 7, 6), [[0, 0, 0, 0, 1, 2, 3], [3, 4, 5, 6, 6, 6, 6]])


# 6. CMVN parsing ------------------------------------------------------------------------------


def test_parse_am_mvn_equals_funasr_load_cmvn(am_mvn):
    shift, scale = parse_am_mvn(am_mvn)
    oracle = load_cmvn(str(am_mvn)).numpy()
    assert shift.shape == scale.shape == (FEAT_DIM,)
    np.testing.assert_array_equal(shift, oracle[0])
    np.testing.assert_array_equal(scale, oracle[1])
    want_shift, want_scale = mvn_values()
    np.testing.assert_allclose(shift, want_shift, rtol=0, atol=5e-7 + 1e-6)  # %.6f in the file
    np.testing.assert_allclose(scale, want_scale, rtol=0, atol=5e-7 + 1e-7)


def test_parse_am_mvn_skips_leading_splice_block(tmp_path):
    path = tmp_path / "am.mvn"
    path.write_text(
        "<Nnet>\n<Splice> 3 3\n[ 0 ]\n<AddShift> 3 3\n<LearnRateCoef> 0 [ -12.5 -9.25 -8 ]\n"
        "<Rescale> 3 3\n<LearnRateCoef> 0 [ 0.15 0.1425 0.16 ]\n</Nnet>\n", encoding="utf-8")
    shift, scale = parse_am_mvn(path)
    np.testing.assert_array_equal(shift, np.array([-12.5, -9.25, -8], dtype=np.float32))
    np.testing.assert_array_equal(scale, np.array([0.15, 0.1425, 0.16], dtype=np.float32))
    oracle = load_cmvn(str(path)).numpy()
    np.testing.assert_array_equal(shift, oracle[0])
    np.testing.assert_array_equal(scale, oracle[1])


def test_parse_am_mvn_without_rescale_refused(tmp_path):
    path = tmp_path / "am.mvn"
    path.write_text("<Nnet>\n<Splice> 3 3\n[ 0 ]\n<AddShift> 3 3\n<LearnRateCoef> 0 [ -1 -2 -3 ]\n</Nnet>\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="Rescale"):
        parse_am_mvn(path)


def test_parse_am_mvn_non_numeric_refused(tmp_path):
    path = tmp_path / "am.mvn"
    path.write_text(
        "<Nnet>\n<Splice> 3 3\n[ 0 ]\n<AddShift> 3 3\n<LearnRateCoef> 0 [ -1 abc -3 ]\n"
        "<Rescale> 3 3\n<LearnRateCoef> 0 [ 0.1 0.2 0.3 ]\n</Nnet>\n", encoding="utf-8")
    with pytest.raises(ValueError, match="non-numeric"):
        parse_am_mvn(path)


# 7. Short and silent input -----------------------------------------------------------------------


def test_399_samples_refused_by_both(am_mvn):
    x = speech_like(399, 5)
    with pytest.raises(ValueError, match="at least"):
        RefFrontend(FrontendConfig(), am_mvn, dither=0.0)(x)
    with pytest.raises(ValueError, match="at least"):
        mlx_frontend(am_mvn)(mx.array(x))
    with pytest.raises(ValueError, match="at least"):
        MlxFrontend(FrontendConfig()).fbank(mx.array(x))


def test_silence_hits_log_floor_in_both(am_mvn):
    x = np.zeros(FS, dtype=np.float32)
    ref_rec, mlx_rec = RefTaps(), MlxTaps()
    ref_out = RefFrontend(FrontendConfig(), am_mvn, dither=0.0)(x, ref_rec).numpy()
    mlx_out = np.array(mlx_frontend(am_mvn)(mx.array(x), mlx_rec))
    assert np.isfinite(ref_out).all() and np.isfinite(mlx_out).all()
    assert ref_out.shape == mlx_out.shape == (17, FEAT_DIM)
    # fbank is exactly log(FLT_EPSILON) everywhere, in both paths and in kaldi-native-fbank.
    np.testing.assert_array_equal(mlx_rec.outputs[taps.FBANK], np.full((98, 80), LOG_FLOOR))
    np.testing.assert_array_equal(ref_rec.outputs[taps.FBANK], np.full((98, 80), LOG_FLOOR))
    np.testing.assert_array_equal(knf_fbank(x), np.full((98, 80), LOG_FLOOR))
    shift, scale = parse_am_mvn(am_mvn)
    by_hand = np.broadcast_to((LOG_FLOOR + shift) * scale, (17, FEAT_DIM))
    np.testing.assert_array_equal(ref_out, by_hand)
    np.testing.assert_array_equal(mlx_out, by_hand)
    np.testing.assert_array_equal(funasr_forward(am_mvn, x), by_hand)
