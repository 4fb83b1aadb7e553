"""FSMN VAD: the MLX port against FunASR's FsmnVADStreaming (random weights in the original
layout, float32): scores tap by tap, frame decisions and segments identical on the committed
clips and on a long concatenation, and against AutoModel's own output; the floor's state
machine on FunASR's scores; the config's checks; the converter and its refusals."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from funasr_qwen4b.audio import load_audio
from funasr_qwen4b.bundle import COMPONENTS
from funasr_qwen4b.vad import (
    LAYOUT, NOT_EVALUATED, SILENCE, SPEECH, VAD_SCORES, VadSource, chunk_ends, decibels, detect, fbank_frames,
    vad_config_from_yaml, vad_taps,
)

from tests.conftest import CLIPS

CLIP_NAMES = ("zh_10s", "en_weather", "zh_open_hours")
# Decision options FunASR reads that the published config leaves at one value: a second model
# with other values (several silence pdfs, a noise weight, SNR and loudness floors, no extension,
# a longer window), and a third that stops after one utterance and gives up on long leading silence.
VARIANT = dict(sil_pdf_ids=[0, 1], silence_pdf_num=2, speech_2_noise_ratio=0.8, snr_thres=62.0,
               decibel_thres=-59.0, do_extend=0, window_size_ms=300, sil_to_speech_time_thres=200,
               speech_to_sil_time_thres=100, lookback_time_start_point=100)
SINGLE = dict(detect_mode=0, max_start_silence_time=1000)


@pytest.fixture(scope="module")
def vad_dir(tmp_path_factory):
    from funasr_qwen4b.testing_vad import make_vad_dir

    return make_vad_dir(tmp_path_factory.mktemp("vad") / "fsmn-vad")


@pytest.fixture(scope="module")
def vad_pair(vad_dir, tmp_path_factory):
    """(FunASR's model, the MLX port converted from the same files)."""
    from funasr_qwen4b.convert.vad import write_vad
    from funasr_qwen4b.mlx_port.vad import FsmnVad as MlxVad
    from funasr_qwen4b.reference.vad import FsmnVad as RefVad

    out = tmp_path_factory.mktemp("vad-converted")
    write_vad(VadSource.from_dir(vad_dir), out)
    return RefVad.load(vad_dir), MlxVad.load(out)


@pytest.fixture(scope="module")
def clips():
    return {name: load_audio(CLIPS / f"{name}.wav") for name in CLIP_NAMES}


def concatenation(clips, seconds: float) -> np.ndarray:
    """The clips in turn with pauses of 0.4-2.5 s (faint seeded noise) between, cut to `seconds`."""
    rng = np.random.default_rng(0)
    parts, pauses, n = [], (2.5, 1.2, 0.4, 1.5, 1.0), 0
    while n < seconds * 16000:
        for name, pause in zip(CLIP_NAMES * 2, pauses):
            noise = (3e-5 * rng.standard_normal(int(pause * 16000))).astype(np.float32)
            parts += [clips[name], noise]
            n += clips[name].size + noise.size
    return np.concatenate(parts)[: int(seconds * 16000)]


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


# --- the test model -------------------------------------------------------------------------------

def test_published_layout_and_both_verdicts(vad_dir, vad_pair, clips):
    """The builder writes the published sizes (about 0.43 M parameters) with FunASR's class,
    and its decisions are not trivial: speech and silence on every clip, pauses found."""
    ref, _ = vad_pair
    cfg = VadSource.from_dir(vad_dir).vad_config
    assert (cfg.encoder.input_dim, cfg.encoder.fsmn_layers, cfg.encoder.proj_dim, cfg.encoder.output_dim) == \
        (400, 4, 128, 248)
    assert (cfg.frontend.lfr_m, cfg.frontend.lfr_n, cfg.frontend.cmvn) == (5, 1, True)
    assert 420_000 < sum(p.numel() for p in ref.model.parameters()) < 440_000
    for x in clips.values():
        states = ref.detect(x).frame_states
        assert (states == SPEECH).mean() > 0.5 and (states == SILENCE).sum() > 20
    assert len(ref.detect(clips["zh_10s"], max_end_silence_ms=100).segments) >= 4


# --- parity ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLIP_NAMES)
def test_scores_match_funasr_tap_by_tap(vad_pair, clips, name):
    from funasr_qwen4b.mlx_port.taps import TapRecorder as MlxRecorder
    from funasr_qwen4b.reference.taps import TapRecorder as RefRecorder

    ref, port = vad_pair
    x = clips[name]
    ref_rec, mlx_rec = RefRecorder(), MlxRecorder()
    ref_scores, mlx_scores = ref.scores(x, ref_rec), port.scores(x, mlx_rec)
    assert ref_scores.shape == mlx_scores.shape == (fbank_frames(x.size, ref.cfg.frontend), 248)
    names = vad_taps(ref.cfg.encoder.fsmn_layers)
    assert sorted(ref_rec.outputs) == sorted(mlx_rec.outputs) == sorted(names)
    for tap in names:
        assert ref_rec.outputs[tap].shape == mlx_rec.outputs[tap].shape, tap
        assert rel_l2(mlx_rec.outputs[tap], ref_rec.outputs[tap]) <= 1e-5, tap
    assert np.abs(mlx_scores - ref_scores).max() <= 1e-5
    np.testing.assert_array_equal(mlx_rec.outputs[VAD_SCORES], mlx_scores)


@pytest.mark.parametrize("block_frames", [300, 40])  # 40: shorter than the reach
def test_scores_by_blocks_match_funasr(vad_pair, clips, block_frames):
    """Scored a block at a time (each block starting early by the FSMN's reach, 76 frames), the
    scores and every tap are FunASR's whole-clip ones."""
    from funasr_qwen4b.mlx_port.taps import TapRecorder as MlxRecorder
    from funasr_qwen4b.reference.taps import TapRecorder as RefRecorder

    ref, port = vad_pair
    x = clips["zh_10s"]
    ref_rec, mlx_rec = RefRecorder(), MlxRecorder()
    ref_scores, mlx_scores = ref.scores(x, ref_rec), port.scores(x, mlx_rec, block_frames=block_frames)
    assert np.abs(mlx_scores - ref_scores).max() <= 1e-5
    for tap, want in ref_rec.outputs.items():
        assert mlx_rec.outputs[tap].shape == want.shape, tap
        assert rel_l2(mlx_rec.outputs[tap], want) <= 1e-5, tap


OPTIONS = [{}, {"max_end_silence_ms": 100}, {"max_end_silence_ms": 300, "max_single_segment_ms": 2500},
           {"max_single_segment_ms": 1500, "chunk_ms": 1000}]


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_decisions_and_segments_identical_to_funasr(vad_pair, clips, name):
    """Every frame's verdict and every segment: the MLX port's equal FunASR's `inference`."""
    ref, port = vad_pair
    x = clips[name]
    got = port.detect(x)
    scores = port.scores(x)  # what port.detect decides on: once for the options below
    for options in OPTIONS:
        want = ref.detect(x, **options)
        if not options:
            assert got.segments == want.segments
            np.testing.assert_array_equal(got.frame_states, want.frame_states)
        got = detect(scores, x, port.cfg, **options)
        assert got.segments == want.segments, options
        np.testing.assert_array_equal(got.frame_states, want.frame_states, err_msg=str(options))
        assert (want.frame_states != NOT_EVALUATED).all()


def test_long_audio_identical_to_funasr(vad_pair, clips):
    """62 s: two of FunASR's 60 s chunks, its silence schedule moving the end silence. The MLX
    port's decisions, and the floor's on FunASR's own scores, equal FunASR's."""
    ref, port = vad_pair
    x = concatenation(clips, 62)
    ref_scores, mlx_scores = ref.scores(x), port.scores(x)
    assert np.abs(mlx_scores - ref_scores).max() <= 1e-5
    for options in ({}, {"max_end_silence_ms": 500}):
        want = ref.detect(x, **options)
        assert len(want.segments) > 3
        for scores in (mlx_scores, ref_scores):
            got = detect(scores, x, port.cfg, **options)
            assert got.segments == want.segments, options
            np.testing.assert_array_equal(got.frame_states, want.frame_states)


def test_automodel_agrees(vad_dir, vad_pair, clips):
    """FunASR's AutoModel on the original directory, as a user runs it, vad_kwargs included."""
    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401
    from funasr import AutoModel

    _, port = vad_pair
    x = clips["zh_10s"]
    auto = AutoModel(model=str(vad_dir), device="cpu", disable_update=True, disable_pbar=True,
                     max_single_segment_time=2000)
    scores = port.scores(x)
    for options, ours in (({}, {}), ({"max_end_silence_time": 100}, {"max_end_silence_ms": 100})):
        want = auto.generate(input=x, **options)[0]["value"]
        assert len(want) > 4
        assert want == [list(s) for s in detect(scores, x, port.cfg, max_single_segment_ms=2000, **ours).segments]


@pytest.mark.parametrize("model_conf", [VARIANT, SINGLE], ids=["variant", "single"])
def test_state_machine_on_funasr_scores(tmp_path, clips, model_conf, capsys):
    """The floor's decisions fed FunASR's scores equal FunASR's `inference`, under options the
    published config never sets (chunks of 3 and 7 s: the schedule and the chunk ends move),
    with and without 1.5 s of faint noise in front."""
    from funasr_qwen4b.reference.vad import FsmnVad as RefVad
    from funasr_qwen4b.testing_vad import make_vad_dir

    ref = RefVad.load(make_vad_dir(tmp_path / "vad", **model_conf))
    speech = concatenation(clips, 25)
    lead = (3e-5 * np.random.default_rng(1).standard_normal(24000)).astype(np.float32)
    found = {}
    for x in (np.concatenate([lead, speech]), speech):
        scores = ref.scores(x)
        for options in ({}, {"chunk_ms": 3000}, {"max_end_silence_ms": 200, "chunk_ms": 7000}):
            want, got = ref.detect(x, **options), detect(scores, x, ref.cfg, **options)
            assert got.segments == want.segments, options
            np.testing.assert_array_equal(got.frame_states, want.frame_states, err_msg=str(options))
            assert (want.frame_states == SPEECH).any() and (want.frame_states == SILENCE).any()
            found[x.size, options.get("chunk_ms")] = want
    assert capsys.readouterr().out == ""  # FunASR's prints (the variant makes some) go to the log
    with_lead, alone = (found[n, None] for n in (lead.size + speech.size, speech.size))
    if model_conf is SINGLE:
        # One utterance: the leading silence outlasts max_start_silence_time and ends it empty; without
        # it the first is found; chunks after the end are not looked at.
        assert with_lead.segments == [] and len(alone.segments) == 1
        assert (found[speech.size, 3000].frame_states == NOT_EVALUATED).sum() > 1000
    else:
        assert len(with_lead.segments) >= 3 and alone.segments


@pytest.mark.parametrize("chunk_ms", [25, 2367])
def test_any_chunk_size(vad_pair, clips, chunk_ms):
    """Chunks shorter than a frame's LFR context, and a last chunk of 14 samples (2367.875 ms of audio)."""
    ref, _ = vad_pair
    x = clips["en_weather"]
    scores = ref.scores(x)
    for options in ({}, {"max_end_silence_ms": 100}):
        want = ref.detect(x, chunk_ms=chunk_ms, **options)
        got = detect(scores, x, ref.cfg, chunk_ms=chunk_ms, **options)
        assert got.segments == want.segments and want.segments
        np.testing.assert_array_equal(got.frame_states, want.frame_states)


def test_short_audio_has_no_segments(vad_pair):
    ref, port = vad_pair
    for n in (0, 399):
        x = np.zeros(n, np.float32)
        assert ref.detect(x).segments == port.detect(x).segments == []
        assert port.scores(x).shape == (0, 248)
    x = np.full(400, 0.1, np.float32)  # one frame
    assert port.detect(x).segments == ref.detect(x).segments


def test_chunk_ends_follow_the_online_frontend(vad_pair, clips):
    """The frames FunASR scores after each chunk: WavFrontendOnline holds back 2 (LFR 5)."""
    ref, _ = vad_pair
    fe = ref.cfg.frontend
    # 10 s: (160000 - 400) // 160 + 1 = 998 frames; after 3 s chunks, 298 of 48000 samples less the 2 held
    assert chunk_ends(160000, fe) == [998]
    assert chunk_ends(160000, fe, 3000) == [296, 596, 896, 998]
    assert chunk_ends(96000, fe, 3000) == [296, 596, 598]  # a last chunk with no samples still gives the 2 held
    got = []
    frontend, cache, x = ref.frontend, {}, clips["zh_10s"]
    for at in range(0, x.size + 1, 48000):
        piece = torch.from_numpy(x[at: at + 48000])[None]
        feats, _ = frontend(piece, [piece.shape[1]], cache=cache, is_final=at + 48000 > x.size)
        got.append((got[-1] if got else 0) + (feats.shape[1] if feats.ndim == 3 else 0))
    assert got == chunk_ends(x.size, fe, 3000)


def test_decibels_match_funasr(vad_pair, clips):
    from funasr_qwen4b.reference import quiet_funasr  # noqa: F401
    from funasr.models.fsmn_vad_streaming.model import Stats

    ref, _ = vad_pair
    x = clips["en_weather"]
    cache = {"stats": Stats([0], 650, 0.6)}
    n = fbank_frames(x.size, ref.cfg.frontend)
    cache["stats"].waveform = torch.from_numpy(x[: (n - 1) * 160 + 400])[None]
    ref.model.ComputeDecibel(cache=cache, frame_count=n)
    assert decibels(x, ref.cfg).tolist() == cache["stats"].decibel


# --- config ---------------------------------------------------------------------------------------

def _conf(**changes) -> dict:
    from funasr_qwen4b.testing_vad import vad_config_yaml

    cfg = vad_config_yaml()
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if key:
            cfg[section][key] = value
        else:
            cfg[section] = value
    return cfg


@pytest.mark.parametrize("changes, message", [
    ({"model": "SenseVoiceSmall"}, "model is 'SenseVoiceSmall'; the FSMN VAD says FsmnVADStreaming"),
    ({"frontend": "WavFrontend"}, "frontend is 'WavFrontend'"),
    ({"frontend_conf__lfr_n": 2}, "lfr_n must be 1"),
    ({"frontend_conf__frame_shift": 20}, "are not the decisions'"),
    ({"encoder_conf__input_dim": 560}, "input_dim 560 is not the frontend's n_mels × lfr_m = 400"),
    ({"encoder_conf__rorder": 1}, "rorder 1 (look-ahead memory) is not supported"),
    ({"encoder_conf__lorder": 0}, "lorder must be >= 1"),
    ({"encoder_conf__use_softmax": False}, "use_softmax=false is not supported"),
    ({"encoder_conf__dropout": 0.1}, "unknown keys in X encoder_conf: ['dropout']"),
    ({"model_conf__max_end_silence_tim": 100}, "unknown keys in X model_conf: ['max_end_silence_tim']"),
    ({"model_conf__speech_noise_thres": 1.5}, "speech_noise_thres must be in [-1, 1]"),
    ({"model_conf__speech_noise_thres": "0.6"}, "speech_noise_thres must be float"),
    ({"model_conf__max_single_segment_time": 0}, "max_single_segment_time must be >= 1"),
    ({"model_conf__detect_mode": 2}, "detect_mode must be 0"),
    ({"model_conf__window_size_ms": 5}, "window_size_ms 5 is shorter than one frame"),
    ({"model_conf__sil_pdf_ids": [300]}, "sil_pdf_ids [300] are outside the encoder's 248 outputs"),
    ({"model_conf__sil_pdf_ids": [0, 1]}, "silence_pdf_num 1 is not the number of sil_pdf_ids (2)"),
    ({"model_conf__sil_pdf_ids": []}, "sil_pdf_ids must be a non-empty list"),
    ({"model_conf__sample_rate": 8000}, "sample_rate must be 16000"),
    ({"model_conf": [1, 2]}, "model_conf must be a mapping"),
])
def test_config_refusals_name_the_file(changes, message):
    with pytest.raises(ValueError) as e:
        vad_config_from_yaml(_conf(**changes), has_cmvn=True, where="X")
    assert message in str(e.value) and "X" in str(e.value).split(":")[0]
    assert "\n" not in str(e.value)


def test_config_ignores_what_changes_nothing():
    cfg = vad_config_from_yaml(_conf(frontend_conf__dither=1.0, frontend_conf__upsacle_samples=False,
                                     model_conf__output_frame_probs=True), has_cmvn=False)
    assert cfg.frontend.dither == 0.0 and cfg.frontend.upscale_samples and not cfg.frontend.cmvn
    assert cfg.options.sil_pdf_ids == (0,)
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# --- conversion -----------------------------------------------------------------------------------

def test_converted_component(vad_dir, tmp_path):
    from safetensors.numpy import load_file

    from funasr_qwen4b.convert.vad import write_vad
    from funasr_qwen4b.mlx_port.vad import FsmnVad as MlxVad

    write_vad(VadSource.from_dir(vad_dir), tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["layout"] == LAYOUT and meta["dtype"] == "float32"
    assert meta["config"]["options"]["sil_pdf_ids"] == [0]
    weights = load_file(tmp_path / "model.safetensors")
    sd = torch.load(vad_dir / "model.pt", weights_only=True)
    assert set(weights) == set(sd) | {"frontend.cmvn.shift", "frontend.cmvn.scale"}
    conv = "encoder.fsmn.2.fsmn_block.conv_left.weight"
    assert weights[conv].shape == (128, 20, 1)
    np.testing.assert_array_equal(weights[conv][:, :, 0], sd[conv][:, 0, :, 0].numpy())
    assert weights["frontend.cmvn.shift"].dtype == np.float32
    (tmp_path / "config.json").write_text(json.dumps({**meta, "layout": {"version": 0}}))
    with pytest.raises(ValueError, match=r"config.json: layout \{'version': 0\} is not .*; reconvert"):
        MlxVad.load(tmp_path)


def test_without_am_mvn(vad_dir, tmp_path, clips):
    """No am.mvn beside model.pt: both run the features unnormalised, as FunASR does."""
    from funasr_qwen4b.convert.vad import write_vad
    from funasr_qwen4b.mlx_port.vad import FsmnVad as MlxVad
    from funasr_qwen4b.reference.vad import FsmnVad as RefVad

    src = shutil.copytree(vad_dir, tmp_path / "src")
    (src / "am.mvn").unlink()
    source = VadSource.from_dir(src)
    assert source.cmvn_file is None and not source.vad_config.frontend.cmvn
    out = tmp_path / "out"
    out.mkdir()
    write_vad(source, out)
    x = clips["en_weather"]
    want, got = RefVad.load(src).scores(x), MlxVad.load(out).scores(x)
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_dtype_scores_close(vad_dir, vad_pair, clips, tmp_path, dtype):
    from funasr_qwen4b.convert.vad import write_vad
    from funasr_qwen4b.mlx_port.vad import FsmnVad as MlxVad

    write_vad(VadSource.from_dir(vad_dir), tmp_path, dtype=dtype)
    ref, _ = vad_pair
    x = clips["en_weather"]
    got, want = MlxVad.load(tmp_path).scores(x), ref.scores(x)
    assert got.dtype == np.float32
    assert np.abs(got[:, 0] - want[:, 0]).max() <= 0.05
    assert (got[:, 0] <= 0.25).mean() == pytest.approx((want[:, 0] <= 0.25).mean(), abs=0.03)


@pytest.mark.parametrize("damage, message", [
    ("nan", "model.pt holds NaN or infinite weights in [encoder.out_linear2.linear.bias]"),
    ("missing", "model.pt does not match its config: missing keys [encoder.fsmn.3.affine.linear.bias]"),
    ("shape", "wrong shapes [encoder.fsmn.0.fsmn_block.conv_left.weight (128, 1, 10, 1) != (128, 1, 20, 1)]"),
    ("int", "model.pt: tensor encoder.in_linear1.linear.weight holds int32 values"),
    ("mvn", "am.mvn has 80 values per vector; the frontend makes 400"),
    ("sensevoice", "config.yaml: model is 'SenseVoiceSmall'; the FSMN VAD says FsmnVADStreaming"),
    ("no-config", "config.yaml missing in"),
])
def test_bad_originals_refused(vad_dir, tmp_path, damage, message):
    from funasr_qwen4b.convert.vad import write_vad
    from funasr_qwen4b.testing import write_am_mvn

    src = shutil.copytree(vad_dir, tmp_path / "src")
    sd = torch.load(src / "model.pt", weights_only=True)
    if damage == "nan":
        sd["encoder.out_linear2.linear.bias"][3] = float("nan")
    elif damage == "missing":
        del sd["encoder.fsmn.3.affine.linear.bias"]
    elif damage == "shape":
        sd["encoder.fsmn.0.fsmn_block.conv_left.weight"] = torch.zeros(128, 1, 10, 1)
    elif damage == "int":
        sd["encoder.in_linear1.linear.weight"] = sd["encoder.in_linear1.linear.weight"].to(torch.int32)
    elif damage == "mvn":
        write_am_mvn(src / "am.mvn", np.zeros(80, np.float32), np.ones(80, np.float32))
    elif damage == "sensevoice":
        cfg = yaml.safe_load((src / "config.yaml").read_text())
        (src / "config.yaml").write_text(yaml.safe_dump({**cfg, "model": "SenseVoiceSmall"}))
    elif damage == "no-config":
        (src / "config.yaml").unlink()
    torch.save(sd, src / "model.pt")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        write_vad(VadSource.from_dir(src), out)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (out / "model.safetensors").exists()


@pytest.mark.skipif("vad" not in COMPONENTS, reason="bundle.py does not list the vad component yet")
def test_convert_vad_into_a_bundle(vad_dir, vad_pair, bundle, clips, tmp_path):
    """Added to an existing bundle (swapped in whole, recorded with its sources), or a new one."""
    from funasr_qwen4b.bundle import Bundle
    from funasr_qwen4b.convert.vad import convert_vad
    from funasr_qwen4b.mlx_port.vad import FsmnVad as MlxVad

    ref, _ = vad_pair
    b = shutil.copytree(bundle, tmp_path / "b")
    convert_vad(vad_dir, b)
    read = Bundle.read(b)
    assert read.has("sensevoice", "vad") and read.components["vad"].sources["model.pt"]["bytes"] > 0
    x = clips["zh_10s"]
    assert MlxVad.load(read.dir("vad")).detect(x).segments == ref.detect(x).segments
    assert read.source("vad") == vad_dir.resolve()  # what the reference twin loads (the sha256 checked)
    with pytest.raises(ValueError, match="already exists; pass --force"):
        convert_vad(vad_dir, b)
    convert_vad(vad_dir, b, force=True, dtype="float16")
    assert Bundle.read(b).components["vad"].dtype == "float16"
    alone = convert_vad(vad_dir, tmp_path / "vad-only")
    assert set(Bundle.read(alone).components) == {"vad"}
