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
