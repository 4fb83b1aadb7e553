import atexit
import os
import shutil
import tempfile
import time

os.environ.setdefault("MLX_ENABLE_TF32", "0")  # strict fp32 parity tier
# Speculation sizes its passes by this machine's stored pass costs (`bench --calibrate`): the
# suite, its subprocesses included, starts from none, whatever the developer calibrated, and
# measures none on first use (timings would make its pass counts the machine's: the tests that
# need costs give them, and one measures them).
os.environ["FUNASR_QWEN4B_CACHE"] = tempfile.mkdtemp(prefix="funasr-qwen4b-cache-")
atexit.register(shutil.rmtree, os.environ["FUNASR_QWEN4B_CACHE"], ignore_errors=True)
os.environ["FUNASR_QWEN4B_MEASURE_PASSES"] = "off"

from functools import cached_property  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from funasr_qwen4b.audio import load_audio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "datasets"
CLIPS = DATASETS / "clips"
DEMO = ROOT / "models" / "demo"  # the committed demonstration model, in its original formats
HELDOUT_SETS = ("zh_heldout", "en_heldout")
# A bound on waiting for a process, a client or a condition, only so that a hang ends: far above
# anything a test needs on a slow, busy machine. Never a bar: no test asserts a time.
HANG_S = 1800


def poll_until(cond, guard_s: float = HANG_S) -> bool:
    """Wait until `cond()` holds, looking every 10 ms. False only when `guard_s` has passed: a hang
    guard, far above any need, so that a test that would hang fails instead (never a bar)."""
    end = time.monotonic() + guard_s
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


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


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    """The demonstration model converted once per run, all float32, by the command a user types.
    Read-only: a test that changes a bundle copies it first. (Every test of the demonstration
    bundle uses float32; the quantized variants are CI's accuracy step's, .ci/accuracy.sh.)"""
    from funasr_qwen4b.app.cli import main

    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["convert", "bundle", "--sensevoice", str(DEMO / "sensevoice"), "--adaptor", str(DEMO / "adaptor.pt"),
                 "--llm", str(DEMO / "qwen3"), "-o", str(out), "--dtype", "float32"]) == 0
    return out


class HeldOut:
    """The 100 held-out utterances (zh_heldout, then en_heldout, in manifest order) through the
    demonstration bundle's MLX pipeline at float32. Each decoding is computed once per run, when a
    test first asks for it, and shared by every test that asserts on it: `plain` (greedy, one token
    a pass: the oracle), `speculative` (the bundle's own decoding: the CTC draft verified) and
    `batched(size)` (plain greedy, `size` utterances a batch)."""

    def __init__(self, bundle: Path):
        from funasr_qwen4b.manifest import load_manifest
        from funasr_qwen4b.mlx_port.pipeline import Pipeline

        self.bundle = bundle
        self.entries = [e for name in HELDOUT_SETS for e in load_manifest(DATASETS / name / "test.jsonl")]
        self.clips = [load_audio(e.audio) for e in self.entries]
        self.pipe = Pipeline.from_bundle(bundle)
        self._batched: dict[int, list] = {}

    @cached_property
    def plain_decode(self):
        from funasr_qwen4b.decoding import DecodeConfig

        return DecodeConfig(speculate="off")

    @cached_property
    def plain(self) -> list:
        return [self.pipe.run(x, decode=self.plain_decode) for x in self.clips]

    @cached_property
    def speculative(self) -> list:
        return [self.pipe.run(x) for x in self.clips]

    def batched(self, size: int) -> list:
        if size not in self._batched:
            out = []
            for at in range(0, len(self.clips), size):
                out += self.pipe.run_batch(self.clips[at: at + size], decode=self.plain_decode)
            self._batched[size] = out
        return self._batched[size]


@pytest.fixture(scope="session")
def demo_heldout(demo_bundle):
    return HeldOut(demo_bundle)
