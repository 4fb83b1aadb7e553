"""The command line: what a user types, bad input, exit codes, outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from funasr_qwen4b.app.cli import main
from tests.conftest import CLIPS, HANG_S


def run(*args):
    """The installed entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "funasr_qwen4b.app.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=HANG_S)


def test_help_is_instant_and_torch_free():
    code = ("import sys; from funasr_qwen4b.app.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules and 'mlx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = " ".join(run("parity", "--help").stdout.split())
    assert "first tap over tolerance" in out and "--dump" in out


def test_transcribe_ctc_both_backends_agree(bundle, capsys):
    clip = CLIPS / "zh_open_hours.wav"
    assert main(["transcribe", "--ctc", str(clip), "-m", str(bundle), "--json"]) == 0
    mlx = json.loads(capsys.readouterr().out)
    assert main(["transcribe", "--ctc", str(clip), "-m", str(bundle), "--json", "--backend", "reference"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert mlx["ctc_ids"] == ref["ctc_ids"] and mlx["text"] == ref["text"] and len(mlx["tags"]) == 4
    assert main(["transcribe", "--ctc", str(clip), "-m", str(bundle), "--no-query", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tag_ids"] == []


def test_parity_writes_report_plot_and_dumps(bundle, tmp_path):
    r = run("parity", "-m", bundle, "--audio", CLIPS / "zh_open_hours.wav",
            "--report", tmp_path / "rep" / "parity.json", "--dump", tmp_path / "taps")
    assert r.returncode == 0, r.stderr
    assert "**Result: PASS**" in r.stdout
    report = json.loads((tmp_path / "rep" / "parity.json").read_text())
    assert report["passed"] and report["first_failure"] == {"chained": None, "isolated": None}
    assert report["meta"]["MLX_ENABLE_TF32"] == "0"
    assert (tmp_path / "rep" / "parity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| `encoder.tp_norm` |" in (tmp_path / "rep" / "parity.md").read_text()
    ref, mlx = np.load(tmp_path / "taps" / "reference.npz"), np.load(tmp_path / "taps" / "mlx.npz")
    assert set(ref.files) == set(mlx.files) and "encoder.encoders0.0" in ref.files
    rel = np.linalg.norm(mlx["encoder.tp_norm"] - ref["encoder.tp_norm"]) / np.linalg.norm(ref["encoder.tp_norm"])
    assert rel == pytest.approx(report["taps"]["chained"][-2]["rel_l2"], rel=1e-3)


@pytest.mark.accuracy  # CI's accuracy step also runs selfcheck itself, first
def test_selfcheck_main_job(tmp_path):
    r = run("selfcheck", "--keep", tmp_path / "sc")
    assert r.returncode == 0, r.stderr
    assert "**Result: PASS**" in r.stdout and "CTC ids identical: **True**" in r.stdout


@pytest.mark.parametrize("make_bad, message", [
    (lambda d: d / "missing.wav", "audio file not found"),
    (lambda d: (d / "bad.wav").write_bytes(b"RIFF1234junk") and d / "bad.wav", "cannot read audio"),
    (lambda d: sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000) or d / "empty.wav", "empty"),
])
def test_bad_audio_is_one_line_and_exit_2(bundle, tmp_path, make_bad, message):
    r = run("transcribe", "--ctc", make_bad(tmp_path), "-m", bundle)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in r.stderr


def test_sub_word_clip_is_no_speech(bundle, tmp_path, capsys):
    """6 ms: shorter than a frame of the frontend, far shorter than a syllable."""
    sf.write(tmp_path / "short.wav", np.full(100, 0.3, np.float32), 16000)
    assert main(["transcribe", "--ctc", str(tmp_path / "short.wav"), "-m", str(bundle), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["text"] == "" and "shorter than 100 ms" in r["no_speech"]


def test_silence_is_empty_and_resampled_stereo_audio_works(bundle, tmp_path, capsys):
    sf.write(tmp_path / "zeros.wav", np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    x = sf.read(CLIPS / "zh_open_hours.wav", dtype="float32")[0]
    import soxr

    y = soxr.resample(x, 16000, 44100)
    sf.write(tmp_path / "stereo44k.flac", np.stack([y, y], axis=1), 44100)
    assert main(["transcribe", "--ctc", str(tmp_path / "zeros.wav"), "-m", str(bundle), "--json"]) == 0
    silent = json.loads(capsys.readouterr().out)
    assert silent["text"] == "" and "silence" in silent["no_speech"] and silent["tag_ids"] == []
    assert main(["transcribe", "--ctc", str(tmp_path / "stereo44k.flac"), "-m", str(bundle), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["tag_ids"]) == 4 and r["text"] and "no_speech" not in r


def test_bad_bundle_and_missing_component(tmp_path):
    r = run("transcribe", "--ctc", CLIPS / "zh_open_hours.wav", "-m", tmp_path)
    assert r.returncode == 2 and "is not a bundle" in r.stderr


def test_llm_transcription_needs_components(bundle):
    r = run("transcribe", CLIPS / "zh_open_hours.wav", "-m", bundle)
    assert r.returncode == 2 and "has no adaptor, llm" in r.stderr and "--ctc" in r.stderr


def test_parity_against_a_changed_source_is_refused(sv_dir, bundle, tmp_path):
    import shutil

    import torch

    other = tmp_path / "other"
    shutil.copytree(sv_dir, other)
    sd = torch.load(other / "model.pt", weights_only=True)
    sd["embed.weight"] += 1
    torch.save(sd, other / "model.pt")
    r = run("parity", "-m", bundle, "--audio", CLIPS / "zh_open_hours.wav", "--sensevoice-src", other)
    assert r.returncode == 2 and "sha256 differs" in r.stderr


def test_ctc_without_its_tokenizer_is_refused(tmp_path):
    """Token ids are not a transcript: a bundle whose source had no .bpe.model cannot spell CTC text."""
    from funasr_qwen4b.convert.sensevoice import convert_sensevoice
    from funasr_qwen4b.testing import make_sensevoice_dir

    src = make_sensevoice_dir(tmp_path / "sv", bpe=False)
    bundle = convert_sensevoice(src, tmp_path / "b")
    r = run("transcribe", "--ctc", CLIPS / "zh_open_hours.wav", "-m", bundle)
    assert r.returncode == 2 and "no tokenizer" in r.stderr and r.stdout == "" and "Traceback" not in r.stderr
