"""Real SenseVoiceSmall dimensions (512-d, 4 heads, 2048 FFN, kernel 11,
vocab 25055) on a 10 s utterance: the strict fp32 bar at every tap."""

import pytest

from funasr_qwen4b.testing import REAL, make_sensevoice_dir


def _parity(tmp_path, clip_10s, layers):
    from funasr_qwen4b.convert.sensevoice import convert_sensevoice
    from funasr_qwen4b.parity.harness import run_parity

    src = make_sensevoice_dir(tmp_path / "sv", {**REAL, **layers}, vocab_size=25055, bpe=False)
    bundle = convert_sensevoice(src, tmp_path / "bundle")
    return run_parity(bundle, clip_10s)


@pytest.mark.accuracy  # FunASR's encoder at real size on 10 s, twice (chained and isolated): CI's accuracy step
def test_real_dims_12_layers_fp32(tmp_path, clip_10s):
    rep = _parity(tmp_path, clip_10s, {"num_blocks": 8, "tp_blocks": 4})
    assert rep.meta["seconds"] == pytest.approx(10.0, abs=0.5)
    assert len([t for t in rep.taps if "encoders" in t]) == 12
    for mode in ("chained", "isolated"):
        worst = max(rep.results[mode], key=lambda m: m.rel_l2)
        assert worst.rel_l2 <= 1e-5, (mode, worst)
    assert rep.ctc["ids_equal"]


@pytest.mark.slow
def test_full_70_layers_fp32(tmp_path, clip_10s):
    rep = _parity(tmp_path, clip_10s, {})
    assert len([t for t in rep.taps if "encoders" in t]) == 70
    assert rep.first_failure("chained") is None, max(rep.results["chained"], key=lambda m: m.rel_l2)
    assert rep.ctc["ids_equal"]


@pytest.mark.slow
def test_full_size_adaptor_chained_from_encoder(tmp_path, clip_10s):
    """512→2048 × 4 layers, 8 heads, 8192 FFN → 2560, post-norm GELU."""
    from funasr_qwen4b.convert.bundle import convert_bundle
    from funasr_qwen4b.parity.harness import run_parity
    from funasr_qwen4b.testing import ADAPTOR_REAL, make_adaptor_pt

    src = make_sensevoice_dir(tmp_path / "sv", {**REAL, "num_blocks": 8, "tp_blocks": 4}, vocab_size=25055, bpe=False)
    pt = make_adaptor_pt(tmp_path / "adaptor.pt", "model_state_dict", **ADAPTOR_REAL)
    bundle = convert_bundle(tmp_path / "bundle", sensevoice=src, adaptor=pt)
    rep = run_parity(bundle, clip_10s, modes=("chained",))
    adaptor = [m for m in rep.results["chained"] if m.name.startswith("adaptor.")]
    assert len(adaptor) == 7
    assert max(m.rel_l2 for m in adaptor) <= 1e-5, adaptor


@pytest.mark.slow
def test_nano_real_size_fp32(clip_10s):
    """Fun-ASR-Nano at its real size (`bench --synthetic nano`'s random checkpoint: FunASR's
    FunASRNano, 70 encoder layers, the 2-layer adaptor, Qwen3-0.6B) converted at float32, on
    10 s: every tap within the float32 tolerance in both modes, generated ids identical."""
    from funasr_qwen4b.app.bench_nano import nano_synthetic
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.parity.harness import run_parity

    with nano_synthetic("float32", None) as b:
        rep = run_parity(b, clip_10s, decode=DecodeConfig(loop_guard=False, min_tokens=16, max_tokens=16,
                                                          ignore_eos=True))
    assert len([t for t in rep.taps if "encoders" in t]) == 70 and "adaptor.blocks.1" in rep.taps
    assert len([t for t in rep.taps if t.startswith("llm.model.layers.")]) == 28
    assert rep.passed, rep.failure()
    assert rep.ctc is None and len(rep.llm["tokens"]["mlx"]) == 16

# --- bench --synthetic nano, shrunk (the real size is GPU work) ------------------------------------

@pytest.fixture
def tiny_nano(monkeypatch, tmp_path):
    """bench's Fun-ASR-Nano at the tiny test size; temporary directories under `tmp_path`."""
    import tempfile

    from funasr_qwen4b.app import bench_nano
    from funasr_qwen4b.testing import QWEN3_TINY, TINY
    from funasr_qwen4b.testing_nano import NANO_ADAPTOR_TINY

    monkeypatch.setattr(bench_nano, "NANO_ENCODER", TINY)
    monkeypatch.setattr(bench_nano, "NANO_ADAPTOR", NANO_ADAPTOR_TINY)
    monkeypatch.setattr(bench_nano, "NANO_LLM", QWEN3_TINY)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_bench_synthetic_nano(tiny_nano):
    """`--synthetic nano`: FunASR's FunASRNano written and converted (-q 4), both backends timed
    stage by stage from it; no CTC head, so no speculation row; nothing left behind."""
    from funasr_qwen4b.app import bench
    from funasr_qwen4b.app.bench_stages import STAGES
    from funasr_qwen4b.config import Backend

    rep = bench.run_bench(synthetic="nano", backends=(Backend.MLX, Backend.REFERENCE), clips=(1.0,), reps=1,
                          warmup=0, tokens=4, q_bits=4, dtype="float32")
    st = rep["settings"]
    assert st["source"] == "synthetic nano" and st["kind"] == "funasr-nano"
    assert st["component_dtypes"] == {"sensevoice": "float32", "adaptor": "float32", "llm": "4bit"}
    for backend in ("mlx", "reference"):
        c = rep["results"][backend]["clips"]["1s"]
        assert c["generated_tokens"] == 4 and all(c["stages_s"][s]["median"] > 0 for s in STAGES), backend
    assert rep["results"]["mlx"]["speculation"]["draft"] is None
    assert set(rep["mlx_over_pytorch_speed"]["1s"]) == set(STAGES)
    md = bench.to_markdown(rep)
    assert "# bench: synthetic nano" in md and "mlx speculation: n/a (no CTC head" in md
    assert "| reference | 1s |" in md
    assert not list(tiny_nano.glob("funasr-qwen4b-bench-nano-*"))  # the checkpoint and its bundle were scratch
    with pytest.raises(ValueError, match="Fun-ASR-Nano's is converted unquantized"):
        bench.run_bench(synthetic="nano", backends=(Backend.MLX,), adaptor_q_bits=8)


def test_bench_nano_bundle(tiny_nano):
    """`bench -m NANO_BUNDLE`: a simulated draft where asked (the ids stay the LLM's own), and
    batching; the same bundle `--synthetic nano` builds."""
    from funasr_qwen4b.app import bench, bench_batch
    from funasr_qwen4b.app.bench_nano import nano_synthetic
    from funasr_qwen4b.config import Backend

    with nano_synthetic("float32", None) as b:
        rep = bench.run_bench(bundle=b, synthetic=None, backends=(Backend.MLX,), clips=(1.0,), reps=1, warmup=0,
                              tokens=4, draft_rate=0.5)
        batching = bench_batch.run_batching(bundle=b, synthetic=None, sizes=(1, 2), tokens=4, reps=1, warmup=0)
    assert rep["settings"]["source"] == str(b.root) and rep["settings"]["kind"] == "funasr-nano"
    sp = rep["results"]["mlx"]["speculation"]
    assert sp["draft"] == "simulated" and sp["ids_identical"]
    assert "simulated draft at rate 0.5" in bench.to_markdown(rep)
    assert sorted(batching["throughput"]["sizes"]) == ["1", "2"]
