import os

os.environ.setdefault("MLX_ENABLE_TF32", "0")  # strict fp32 parity tier

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from funasr_qwen4b.audio import load_audio  # noqa: E402

CLIPS = Path(__file__).resolve().parent.parent / "datasets" / "clips"


@pytest.fixture(scope="session")
def clip():
    return load_audio(CLIPS / "zh_open_hours.wav")


@pytest.fixture(scope="session")
def clip_10s():
    return load_audio(CLIPS / "zh_10s.wav")


@pytest.fixture(scope="session")
def sv_dir(tmp_path_factory):
    """A tiny SenseVoiceSmall in the original format (FunASR's class, seeded)."""
    from funasr_qwen4b.testing import make_sensevoice_dir

    return make_sensevoice_dir(tmp_path_factory.mktemp("sv") / "SenseVoiceSmall")


@pytest.fixture(scope="session")
def bundle(sv_dir, tmp_path_factory):
    from funasr_qwen4b.convert.sensevoice import convert_sensevoice

    return convert_sensevoice(sv_dir, tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    """A tiny Qwen3 by transformers' save_pretrained (sharded, tied) with Qwen's real tokenizer."""
    from funasr_qwen4b.testing import make_qwen3_dir

    return make_qwen3_dir(tmp_path_factory.mktemp("qwen") / "Qwen3-tiny")


@pytest.fixture(scope="session")
def full_bundle(sv_dir, qwen_dir, tmp_path_factory):
    """SenseVoice + adaptor + LLM, all float32, converted from original formats."""
    from funasr_qwen4b.convert.bundle import convert_bundle
    from funasr_qwen4b.testing import ADAPTOR_TINY, make_adaptor_pt

    root = tmp_path_factory.mktemp("full")
    pt = make_adaptor_pt(root / "adaptor_phase2_final.pt", "model_state_dict")
    return convert_bundle(root / "bundle", sensevoice=sv_dir, adaptor=pt, llm=qwen_dir, dtype="float32",
                          adaptor_options={"nhead": ADAPTOR_TINY["nhead"]})
