"""SAN-M encoder parity (chained and isolated), padding masks, query rows,
reduced dtypes, and the harness catching the mistakes it exists for."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from funasr_qwen4b import taps
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.parity.harness import run_parity
from funasr_qwen4b.parity.metrics import TOLERANCES


def rel_l2(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def test_chained_and_isolated_parity_fp32(bundle, clip):
    rep = run_parity(bundle, clip)
    assert rep.meta["MLX_ENABLE_TF32"] == "0"
    for mode in ("chained", "isolated"):
        worst = max(rep.results[mode], key=lambda m: m.rel_l2)
        assert rep.first_failure(mode) is None, (mode, worst)
        assert worst.rel_l2 <= 1e-5
        assert [m.name for m in rep.results[mode]] == rep.taps
    assert rep.ctc["ids_equal"] and rep.ctc["frame_agreement"] == 1.0
    # Isolated frontend steps take the same input: exactly equal.
    iso = {m.name: m for m in rep.results["isolated"]}
    assert iso[taps.LFR].max_abs == 0.0 and iso[taps.ENCODER_INPUT].max_abs == 0.0
    assert rep.mlx_taps[taps.ENCODER_INPUT].shape[0] == rep.mlx_taps[taps.CMVN].shape[0] + 4


@pytest.mark.parametrize("query", [QueryConfig(language="en", textnorm="withitn"), QueryConfig(enabled=False)])
def test_query_options_parity(bundle, clip, query):
    rep = run_parity(bundle, clip, query=query, modes=("chained",))
    assert rep.passed, rep.first_failure("chained")
    n_rows = rep.mlx_taps[taps.ENCODER_INPUT].shape[0] - rep.mlx_taps[taps.CMVN].shape[0]
    assert n_rows == len(query.ids)
    assert rep.meta["query"]["enabled"] == query.enabled


def test_batch_with_padding_matches_single_and_funasr(bundle, sv_dir, clip):
    """FSMN and attention masks: a batch of two lengths equals each alone,
    in MLX and against FunASR's own batched encoder."""
    from funasr_qwen4b.mlx_port.pipeline import Pipeline as MlxPipeline
    from funasr_qwen4b.reference.pipeline import Pipeline as RefPipeline

    mlx_pipe = MlxPipeline.from_bundle(bundle)
    ref_pipe = RefPipeline.from_originals(sv_dir)
    sv, q = mlx_pipe.sensevoice, mlx_pipe.query
    a, b = clip, clip[: clip.size // 2].copy() * 0.5
    fa, fb = (np.array(sv.frontend(mx.array(x))) for x in (a, b))
    ta, tb = fa.shape[0], fb.shape[0]
    batch = np.zeros((2, ta, fa.shape[1]), np.float32)
    batch[0], batch[1, :tb] = fa, fb
    batch[1, tb:] = 1e3  # garbage in the padding must not leak into valid frames
    enc, lens = sv.encode(mx.array(batch), mx.array([ta, tb]), q)
    enc = np.array(enc)
    assert np.array(lens).tolist() == [ta + 4, tb + 4]
    single_a = np.array(sv.encode(mx.array(fa[None]), mx.array([ta]), q)[0])[0]
    single_b = np.array(sv.encode(mx.array(fb[None]), mx.array([tb]), q)[0])[0]
    assert rel_l2(enc[0], single_a) <= 1e-6
    assert rel_l2(enc[1, : tb + 4], single_b) <= 1e-6
    ref_enc, ref_lens = ref_pipe.sensevoice.encode(torch.from_numpy(batch.copy()), torch.tensor([ta, tb]), q)
    ref_enc = ref_enc.numpy()
    assert ref_lens.tolist() == [ta + 4, tb + 4]
    assert rel_l2(enc[0], ref_enc[0]) <= 1e-5
    assert rel_l2(enc[1, : tb + 4], ref_enc[1, : tb + 4]) <= 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_dtype_within_its_tier(sv_dir, clip, tmp_path, dtype):
    from funasr_qwen4b.convert.sensevoice import convert_sensevoice

    b = convert_sensevoice(sv_dir, tmp_path / "b", dtype=dtype)
    rep = run_parity(b, clip, modes=("chained",))
    out = {m.name: m for m in rep.results["chained"]}[taps.TP_NORM]
    assert rep.meta["dtype"] == dtype and out.tolerance == TOLERANCES[dtype]
    assert out.rel_l2 <= TOLERANCES[dtype], out
    assert out.rel_l2 > 1e-5  # it really ran in reduced precision
    assert rep.mlx_taps[taps.FBANK].dtype == np.float32
    # Every tap within its tier passes; CTC ids agreement is reported, not required, at reduced precision.
    assert rep.passed and 0.9 <= rep.ctc["frame_agreement"] <= 1.0


# --- the harness finds the first layer where the paths part ------------------

def test_wrong_activation_is_caught_at_first_layer(bundle, clip, monkeypatch):
    from funasr_qwen4b.mlx_port import encoder

    monkeypatch.setattr(encoder.PositionwiseFeedForward, "__call__",
                        lambda self, x: self.w_2(nn.gelu(self.w_1(x))))
    rep = run_parity(bundle, clip)
    assert not rep.passed
    assert rep.first_failure("chained") == taps.ENCODERS0
    assert rep.first_failure("isolated") == taps.ENCODERS0


def test_missing_cmvn_is_caught_at_cmvn_tap(bundle, clip, monkeypatch):
    from funasr_qwen4b.mlx_port import frontend

    monkeypatch.setattr(frontend.CMVN, "__call__", lambda self, x: x)
    rep = run_parity(bundle, clip)
    assert rep.first_failure("chained") == taps.CMVN
    assert rep.first_failure("isolated") == taps.CMVN


def test_local_bug_deep_in_the_stack_is_located(bundle, clip, monkeypatch):
    """A local bug deep in the stack: isolated mode names that very layer."""
    from funasr_qwen4b.mlx_port import encoder

    layer = encoder.EncoderLayerSANM.__call__

    def broken(self, x, mask):
        if self is broken.target:
            return layer(self, x, mask) * 1.001
        return layer(self, x, mask)

    from funasr_qwen4b.mlx_port.pipeline import Pipeline

    pipe = Pipeline.from_bundle(bundle)
    broken.target = pipe.sensevoice.encoder.encoders[1]
    monkeypatch.setattr(encoder.EncoderLayerSANM, "__call__", broken)
    monkeypatch.setattr(Pipeline, "from_bundle", classmethod(lambda cls, b, q=None, **kw: pipe))
    rep = run_parity(bundle, clip)
    assert rep.first_failure("isolated") == taps.encoder_layer(1)
    assert rep.first_failure("chained") == taps.encoder_layer(1)
