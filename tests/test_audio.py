"""Tests for funasr_qwen4b.audio.load_audio and the committed test clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from funasr_qwen4b import audio as audio_mod
from funasr_qwen4b.audio import (
    SAMPLE_RATE,
    AudioError,
    load_audio,
    read_audio,
    wav_shortfall,
)

CLIPS_DIR = Path(__file__).resolve().parents[1] / "datasets" / "clips"


def sine(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resample_file_to_16k(tmp_path, rate):
    path = tmp_path / f"sine_{rate}.wav"
    sf.write(str(path), sine(rate), rate, subtype="PCM_16")
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1 and out.flags.c_contiguous
    assert abs(len(out) - SAMPLE_RATE) <= 1  # 1 s in, 1 s out
    assert abs(peak_hz(out, SAMPLE_RATE) - 440.0) <= 2.0
    # Amplitude survives resampling (check away from the edges).
    assert abs(np.abs(out[2000:-2000]).max() - 0.5) < 0.02


def test_16k_file_unchanged_length(tmp_path):
    path = tmp_path / "s16.wav"
    x = sine(SAMPLE_RATE)
    sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(str(path)), x)


def test_stereo_file_averaged(tmp_path):
    left = sine(SAMPLE_RATE)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), stereo, SAMPLE_RATE, subtype="FLOAT")
    out = load_audio(path)
    assert out.shape == (SAMPLE_RATE,)
    np.testing.assert_allclose(out, left / 2, atol=1e-7)


def test_stereo_array_averaged():
    left = sine(SAMPLE_RATE)
    out = load_audio(np.stack([left, np.zeros_like(left)], axis=1), SAMPLE_RATE)
    np.testing.assert_allclose(out, left / 2, atol=1e-7)


def test_channels_first_array_rejected():
    with pytest.raises(AudioError, match=r"\(frames, channels\)"):
        load_audio(np.zeros((2, 16000), dtype=np.float32), SAMPLE_RATE)


def test_int16_and_float_wav_agree(tmp_path):
    x = sine(SAMPLE_RATE, amp=0.9)
    sf.write(str(tmp_path / "i16.wav"), x, SAMPLE_RATE, subtype="PCM_16")
    sf.write(str(tmp_path / "f32.wav"), x, SAMPLE_RATE, subtype="FLOAT")
    a = load_audio(tmp_path / "i16.wav")
    b = load_audio(tmp_path / "f32.wav")
    assert np.abs(a - b).max() <= 1 / 32768


def test_int_array_scaling():
    np.testing.assert_array_equal(
        load_audio(np.array([-32768, 0, 16384], dtype=np.int16), SAMPLE_RATE),
        np.array([-1.0, 0.0, 0.5], dtype=np.float32),
    )
    np.testing.assert_array_equal(
        load_audio(np.array([-(2**31), 0, 2**30], dtype=np.int32), SAMPLE_RATE),
        np.array([-1.0, 0.0, 0.5], dtype=np.float32),
    )
    np.testing.assert_array_equal(
        load_audio(np.array([0, 128, 192], dtype=np.uint8), SAMPLE_RATE),
        np.array([-1.0, 0.0, 0.5], dtype=np.float32),
    )


def test_int16_array_matches_int16_file(tmp_path):
    pcm = (sine(SAMPLE_RATE) * 32767).astype(np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(pcm, SAMPLE_RATE), load_audio(path))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("rate", [SAMPLE_RATE, 8000])
def test_caller_array_not_modified(dtype, rate):
    x = (sine(rate) * (32767 if dtype == np.int16 else 1)).astype(dtype)
    before = x.copy()
    out = load_audio(x, rate)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out, x)
    out[:] = 0.123
    np.testing.assert_array_equal(x, before)


def test_flac(tmp_path):
    x = sine(SAMPLE_RATE)
    path = tmp_path / "a.flac"
    sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    out = load_audio(path)
    assert np.abs(out - x).max() <= 1 / 32768


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


def test_empty_array():
    with pytest.raises(AudioError, match="empty"):
        load_audio(np.zeros(0, dtype=np.float32), SAMPLE_RATE)


def test_all_zero_is_valid(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(str(path), np.zeros(8000, dtype=np.int16), 8000, subtype="PCM_16")
    out = load_audio(path)
    assert len(out) == SAMPLE_RATE and not out.any()
    out = load_audio(np.zeros(1234, dtype=np.float32), SAMPLE_RATE)
    assert out.shape == (1234,) and not out.any()


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot read audio {path}") and "WAV or FLAC expected" in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="audio file not found"):
        load_audio(path)
    with pytest.raises(AudioError, match=f"{tmp_path} is a directory, not an audio file"):
        load_audio(str(tmp_path))


def _riff(*chunks: tuple[bytes, int, bytes]) -> bytes:
    """A RIFF/WAVE file from (id, size field, payload) chunks, payloads padded to even length."""
    body = b"".join(cid + size.to_bytes(4, "little") + data + b"\0" * (len(data) & 1) for cid, size, data in chunks)
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body


FMT = (b"fmt ", 16, (1).to_bytes(2, "little") * 2 + (16000).to_bytes(4, "little") + (32000).to_bytes(4, "little")
       + (2).to_bytes(2, "little") + (16).to_bytes(2, "little"))


@pytest.mark.parametrize("chunks, expected", [
    ([FMT, (b"data", 1000, b"\0" * 400)], (1000, 400)),  # cut after 400 of 1000 bytes
    ([FMT, (b"LIST", 3, b"abc"), (b"data", 1000, b"\0" * 400)], (1000, 400)),  # odd chunk, padded, before data
    ([FMT, (b"data", 400, b"\0" * 400)], None),  # whole
    ([FMT, (b"data", 400, b"\0" * 500)], None),  # more than promised: trailing bytes, not missing ones
    ([FMT, (b"data", 0xFFFFFFFF, b"\0" * 400)], None),  # a streaming writer's placeholder
    ([FMT, (b"data", 0, b"\0" * 400)], None),  # the other placeholder
])
def test_wav_shortfall(chunks, expected):
    data = _riff(*chunks)
    assert wav_shortfall(data, len(data)) == expected
    assert wav_shortfall(b"fLaC" + data[4:], len(data)) is None  # only WAV headers say how much follows


def test_truncated_wav_is_read_with_one_warning(tmp_path, caplog):
    x = sine(SAMPLE_RATE, 2.0)
    full = tmp_path / "full.wav"
    sf.write(str(full), x, SAMPLE_RATE, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 12000])  # 12000 of 32000 samples
    with caplog.at_level("WARNING", logger="funasr_qwen4b.audio"):
        first, again = load_audio(cut), load_audio(cut)
        load_audio(full)
    assert first.shape == again.shape == (12000,)
    np.testing.assert_allclose(first, x[:12000], atol=1 / 32768)
    assert [r.getMessage() for r in caplog.records] == [
        f"audio {cut} is truncated: its header promises 64000 bytes of samples but the file holds 24000 (38%); "
        "transcribing what is there"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_array(bad):
    x = np.zeros(100, dtype=np.float32)
    x[50] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(x, SAMPLE_RATE)


def test_array_needs_sample_rate():
    with pytest.raises(AudioError, match="sample_rate is required"):
        load_audio(np.zeros(100, dtype=np.float32))


@pytest.mark.parametrize("rate", [0, -16000])
def test_bad_sample_rate(rate):
    with pytest.raises(AudioError, match="sample_rate must be positive"):
        load_audio(np.zeros(100, dtype=np.float32), rate)


def test_too_many_dims():
    with pytest.raises(AudioError, match="dimensions"):
        load_audio(np.zeros((10, 2, 2), dtype=np.float32), SAMPLE_RATE)


def test_audio_error_is_value_error():
    assert issubclass(AudioError, ValueError)


def test_committed_clips():
    lines = [json.loads(x) for x in (CLIPS_DIR / "clips.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {x["id"]: x for x in lines}
    assert set(by_id) >= {"zh_open_hours", "en_weather", "zh_10s"}
    for entry in lines:
        assert set(entry) == {"id", "audio", "text", "lang"}
        path = CLIPS_DIR / entry["audio"]
        info = sf.info(str(path))
        assert info.samplerate == SAMPLE_RATE and info.channels == 1 and info.subtype == "PCM_16"
        audio = load_audio(path)
        assert np.abs(audio).max() > 0.05  # not silence
    assert 9.5 <= sf.info(str(CLIPS_DIR / "zh_10s.wav")).duration <= 10.5


def test_file_with_conflicting_sample_rate(tmp_path):
    path = tmp_path / "s8k.wav"
    sf.write(str(path), sine(8000), 8000, subtype="PCM_16")
    assert len(load_audio(path, 8000)) == SAMPLE_RATE  # agreeing rate is fine
    with pytest.raises(AudioError, match="omit sample_rate"):
        load_audio(path, 16000)


# --- bounds: the rate, the length, the scale -------------------------------------------

@pytest.mark.parametrize("rate", [16, 999, 384001, 10**7])
def test_rate_outside_bounds_is_refused_for_arrays_and_files(tmp_path, rate):
    with pytest.raises(AudioError, match=f"audio array: sample rate {rate} Hz is outside 1000-384000 Hz"):
        load_audio(np.zeros(100, dtype=np.float32), rate)
    path = tmp_path / "odd.wav"
    sf.write(str(path), np.zeros(100, dtype=np.int16), rate, subtype="PCM_16")
    with pytest.raises(AudioError, match=f"audio {path}: sample rate {rate} Hz is outside"):
        load_audio(path)


@pytest.mark.parametrize("rate", [1000, 384000])
def test_rates_at_the_bounds_are_read(rate):
    assert load_audio(sine(rate, amp=0.1), rate).size == SAMPLE_RATE


@pytest.mark.parametrize("rate", [16000.5, float("nan"), "16000", True])
def test_rate_that_is_no_whole_number_is_refused(rate):
    with pytest.raises(AudioError, match="is not a whole number of samples per second"):
        load_audio(np.zeros(100, dtype=np.float32), rate)


def test_small_file_whose_header_says_16_hz_is_refused_before_reading(tmp_path, monkeypatch):
    """130 KB at 16 Hz is 68 minutes; upsampled a thousandfold it would run for minutes."""
    path = tmp_path / "16hz.wav"
    sf.write(str(path), np.zeros(65000, dtype=np.int16), 16, subtype="PCM_16")
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("samples were read"))
    with pytest.raises(AudioError, match="sample rate 16 Hz is outside"):
        load_audio(path)


def test_length_over_the_bound_is_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(str(path), sine(SAMPLE_RATE, seconds=3.0), SAMPLE_RATE, subtype="PCM_16")
    assert load_audio(path, max_seconds=3.0).size == 3 * SAMPLE_RATE  # at the bound: read
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("samples were read"))
    with pytest.raises(AudioError) as e:
        load_audio(path, max_seconds=2.5)
    assert str(e.value) == (f"audio {path} is 3.0 s long, over the bound of 2.5 s; cut it into shorter files, or "
                            f"raise the bound (--max-audio-seconds, or max_audio_seconds= in Python)")


def test_length_bound_for_arrays_and_none_is_no_bound():
    x = sine(8000, seconds=2.0)
    with pytest.raises(AudioError, match="audio array is 2.0 s long, over the bound of 1.5 s"):
        load_audio(x, 8000, max_seconds=1.5)
    assert load_audio(x, 8000, max_seconds=None).size == 2 * SAMPLE_RATE
    assert audio_mod.MAX_AUDIO_SECONDS == 14400.0  # the default: 4 h


def test_length_bound_for_encoded_bytes(tmp_path):
    path = tmp_path / "b.flac"
    sf.write(str(path), sine(SAMPLE_RATE, seconds=2.0), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(AudioError, match="audio bytes is 2.0 s long, over the bound of 1 s"):
        read_audio(path.read_bytes(), max_seconds=1)
    with open(path, "rb") as f, pytest.raises(AudioError, match=f"audio {path} is 2.0 s long"):
        read_audio(f, max_seconds=1)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "60", True])
def test_bad_max_seconds_is_refused_by_name(bad):
    for fn, args in ((load_audio, (np.zeros(100, dtype=np.float32), SAMPLE_RATE)), (read_audio, (b"RIFF",))):
        with pytest.raises(ValueError, match="max_seconds must be a positive number of seconds, or None"):
            fn(*args, max_seconds=bad)


@pytest.mark.parametrize("peak", [1.0, 1.5, 2.0])
def test_float_wav_slightly_over_full_scale_is_kept_as_it_is(tmp_path, peak, caplog):
    x = sine(SAMPLE_RATE, amp=peak)
    path = tmp_path / "hot.wav"
    sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), x)
    assert "peaks at" not in caplog.text


@pytest.mark.parametrize("scale", [32767.0, 1e30])
def test_float_samples_far_over_full_scale_are_scaled_to_peak_1_with_a_warning(tmp_path, scale, caplog):
    x = sine(SAMPLE_RATE, amp=0.5)
    path = tmp_path / "scaled.wav"
    sf.write(str(path), (x.astype(np.float64) * scale).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    out = load_audio(path)
    np.testing.assert_allclose(out, x / np.abs(x).max(), rtol=1e-6, atol=1e-7)
    assert f"audio {path} peaks at {scale * np.abs(x).max():.3g}, far outside [-1, 1]" in caplog.text
    stereo = np.stack([x, x], axis=1).astype(np.float64) * 3e38  # mixing must not overflow float32
    np.testing.assert_allclose(load_audio(stereo.astype(np.float32), SAMPLE_RATE), x / np.abs(x).max(), rtol=1e-6,
                               atol=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_wav_is_refused_naming_the_file(tmp_path, bad):
    x = sine(SAMPLE_RATE)
    x[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"audio {path} contains NaN or infinite samples"):
        load_audio(path)


@pytest.mark.parametrize("rate, channels", [(44100, 2), (16000, 3), (8000, 1)])
def test_block_by_block_is_bit_for_bit_the_whole_at_once(tmp_path, monkeypatch, rate, channels):
    """Files are mixed and resampled in blocks (memory follows the output); the result is what
    soxr and numpy give over the whole signal at once."""
    x = (np.random.default_rng(rate).standard_normal((3 * rate + 11, channels)) * 0.2).astype(np.float32)
    path = tmp_path / "blocks.wav"
    sf.write(str(path), x, rate, subtype="FLOAT")
    mono = x.mean(axis=1, dtype=np.float32)
    whole = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ") if rate != SAMPLE_RATE else mono
    monkeypatch.setattr(audio_mod, "_BLOCK", 4097)  # many blocks, their edges anywhere
    np.testing.assert_array_equal(load_audio(path), whole)
    np.testing.assert_array_equal(load_audio(x, rate), whole)
    np.testing.assert_array_equal(read_audio(path.read_bytes()), whole)


@pytest.mark.parametrize("head, kind", [(b"RIFF1234junk", "WAV"), (b"fLaC\0\0\0\x22" + bytes(40), "FLAC")])
def test_damaged_file_of_a_direct_format_is_bad_input_not_a_missing_ffmpeg(tmp_path, monkeypatch, head, kind):
    """Without ffmpeg, a damaged WAV or FLAC is the file's fault (AudioError, no word of ffmpeg); only a
    format ffmpeg alone reads is the machine's (FfmpegMissing)."""
    monkeypatch.setattr(audio_mod.shutil, "which", lambda name: None)
    path = tmp_path / "bad.wav"
    path.write_bytes(head)
    for source in (path, head):
        with pytest.raises(AudioError) as e:
            read_audio(source)
        assert not isinstance(e.value, audio_mod.FfmpegMissing) and "ffmpeg" not in str(e.value)
        assert f"it begins as a {kind} file does but is damaged" in str(e.value)
    m4a = tmp_path / "a.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    with pytest.raises(audio_mod.FfmpegMissing, match="need ffmpeg, which is not installed"):
        read_audio(m4a)
