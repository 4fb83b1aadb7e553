"""The committed demonstration model (models/demo): original formats, small,
transcribes held-out speech through both paths with the same text; and the
accuracy bars' checker."""

from __future__ import annotations

import json

import pytest

from funasr_qwen4b.manifest import load_manifest
from funasr_qwen4b.text import Counts, char_counts, word_counts
from funasr_qwen4b.parity import accuracy
from tests.conftest import DATASETS, DEMO

HELDOUT = {"zh": DATASETS / "zh_heldout/test.jsonl", "en": DATASETS / "en_heldout/test.jsonl"}


def test_demo_is_small_and_in_original_formats():
    files = [p for p in DEMO.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 45 * 1024 * 1024
    from funasr_qwen4b.sources import SenseVoiceSource

    src = SenseVoiceSource.from_dir(DEMO / "sensevoice")
    assert src.cmvn_file is not None and src.bpemodel is not None
    from funasr_qwen4b.reference.torch_load import load_pt

    assert "model_state_dict" in load_pt(DEMO / "adaptor.pt")  # weights_only: no pickle code needed
    cfg = json.loads((DEMO / "qwen3/config.json").read_text())
    assert cfg["model_type"] == "qwen3" and cfg["tie_word_embeddings"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_demo_transcribes_heldout_speech_identically_in_both_paths(demo_bundle, lang):
    """Eight held-out utterances a language (voices, speeds and pitches never trained on):
    the MLX transcript equals the reference's, and both are close to what was spoken."""
    from funasr_qwen4b import Transcriber
    from funasr_qwen4b.audio import load_audio

    entries = load_manifest(HELDOUT[lang])[:8]
    ref = Transcriber.load(demo_bundle, "reference")
    mlx = Transcriber.load(demo_bundle, "mlx")
    counts = Counts()
    for e in entries:
        samples = load_audio(e.audio)
        r, m = ref.transcribe(samples, sample_rate=16000)["text"], mlx.transcribe(samples, sample_rate=16000)["text"]
        assert m == r, e.id
        counts += (word_counts if lang == "en" else char_counts)(e.text, r)
    assert counts.rate <= (accuracy.REFERENCE_WER_MAX if lang == "en" else accuracy.REFERENCE_CER_MAX)


def _report(set_name, precisions, summary, mvr=None, lang="zh"):
    return {"meta": {"manifest": f"datasets/{set_name}/test.jsonl", "precisions": precisions},
            "summary": summary, "mlx_vs_reference": mvr, "utterances": [{"lang": lang}]}


FP32 = {"sensevoice": "float32", "adaptor": "float32", "llm": "float32"}
Q8 = {**FP32, "llm": "8bit"}


def _s(cer, wer=None, n=50):
    return {"cer": cer, "wer": wer, "utterances": n, "exact": n}


def test_accuracy_bars_pass_and_fail():
    good = [_report("zh", FP32, {"reference": _s(0.05), "mlx": _s(0.05)}, {"cer": 0.0, "identical": 50}),
            _report("zh", Q8, {"mlx": _s(0.054)}),
            _report("en", FP32, {"reference": _s(0.04, 0.14), "mlx": _s(0.04, 0.14)}, {"cer": 0.0, "identical": 50},
                    lang="en")]
    assert accuracy.check(accuracy.rows(good)) == []
    bad = [_report("zh", FP32, {"reference": _s(0.11), "mlx": _s(0.11)}, {"cer": 0.01, "identical": 49}),
           _report("zh", Q8, {"mlx": _s(0.116)}),
           _report("en", FP32, {"reference": _s(0.04, 0.16)}, lang="en")]
    failures = accuracy.check(accuracy.rows(bad))
    assert len(failures) == 4, failures
    assert any("CER 11.00% > 10%" in f for f in failures) and any("WER 16.00% > 15%" in f for f in failures)
    assert any("1 transcripts differ" in f for f in failures) and any("0.5 points" in f for f in failures)


def test_accuracy_cli_on_bad_input(tmp_path, capsys):
    p = tmp_path / "x.json"
    p.write_text("{}")
    assert accuracy.main([str(p)]) == 2
    assert "error:" in capsys.readouterr().err


def test_adaptor_8bit_against_the_reference(tmp_path):
    """--adaptor-q-bits 8 on the trained adaptor: packed weights, a smaller file, and an output
    within the bfloat16 tier of FunASR-side PyTorch (the reference module, float32)."""
    import mlx.core as mx
    import numpy as np
    import torch

    from funasr_qwen4b.convert.adaptor import convert_adaptor
    from funasr_qwen4b.bundle import Bundle
    from funasr_qwen4b.mlx_port.adaptor import AudioAdaptorQwen4B as MlxAdaptor
    from funasr_qwen4b.parity.metrics import TOLERANCES
    from funasr_qwen4b.reference.adaptor import AudioAdaptorQwen4B

    fp32, q8 = tmp_path / "fp32", tmp_path / "q8"
    convert_adaptor(DEMO / "adaptor.pt", fp32)
    convert_adaptor(DEMO / "adaptor.pt", q8, q_bits=8)
    b = Bundle.read(q8)
    assert b.precisions == {"adaptor": "8bit"}
    size = lambda b: (b / "adaptor" / "model.safetensors").stat().st_size  # noqa: E731
    assert size(q8) < 0.4 * size(fp32)
    mlx_q8 = MlxAdaptor.load(b.dir("adaptor"), b.adaptor_config, b.adaptor_quantization)
    assert mlx_q8.input_proj.weight.dtype == mx.uint32 and mlx_q8.dtype == mx.float32

    x = np.random.default_rng(0).standard_normal((1, 60, 256)).astype(np.float32)
    ref = AudioAdaptorQwen4B.load(DEMO / "adaptor.pt", b.adaptor_config)(torch.from_numpy(x)).detach().numpy()
    out = np.array(mlx_q8(mx.array(x)))
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert 1e-4 < rel < TOLERANCES["bfloat16"], rel  # quantized (not float32-exact), within the tier


def test_adaptor_quantization_refuses_narrow_layers(tmp_path):
    from funasr_qwen4b.convert.adaptor import convert_adaptor
    from funasr_qwen4b.testing import make_adaptor_pt

    pt = make_adaptor_pt(tmp_path / "tiny.pt")  # d_model 32: not a multiple of the group size 64
    with pytest.raises(ValueError, match="multiples of the quantization group size 64"):
        convert_adaptor(pt, tmp_path / "b", q_bits=8)
    assert not (tmp_path / "b").exists()
