"""The audio adaptor: loading every common .pt wrapping, parity through
encoder → adaptor for each norm order and activation, padding, refusals,
and the harness naming the layer where a wrong port parts."""

import mlx.core as mx
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from funasr_qwen4b.convert.adaptor import convert_adaptor
from funasr_qwen4b.convert.bundle import convert_bundle
from funasr_qwen4b import taps
from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.config import AdaptorConfig
from funasr_qwen4b.parity.harness import run_parity
from funasr_qwen4b.reference.adaptor import AudioAdaptorQwen4B
from funasr_qwen4b.testing import ADAPTOR_TINY, WRAPPINGS, make_adaptor_pt


def rel_l2(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


TINY_STRUCT = {"nhead": ADAPTOR_TINY["nhead"]}


def make_bundle(tmp_path, sv_dir, name="b", dtype="float32", **opts):
    struct = {k: opts.pop(k) for k in ("norm_first", "activation") if k in opts}
    pt = make_adaptor_pt(tmp_path / f"{name}.pt", **struct)
    return convert_bundle(tmp_path / name, sensevoice=sv_dir, adaptor=pt, dtype=dtype, adaptor_options={**TINY_STRUCT, **struct, **opts}), pt


@pytest.mark.parametrize("wrapping", WRAPPINGS)
def test_every_wrapping_loads_and_converts(tmp_path, wrapping):
    pt = make_adaptor_pt(tmp_path / "a.pt", wrapping)
    plain = make_adaptor_pt(tmp_path / "plain.pt").parent / "plain.pt"
    sd = torch.load(plain, weights_only=True)
    ref = AudioAdaptorQwen4B.load(pt, AdaptorConfig(**TINY_STRUCT))
    assert ref.cfg == AdaptorConfig(**ADAPTOR_TINY)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    convert_adaptor(pt, tmp_path / "bundle", **TINY_STRUCT)
    w = load_file(str(tmp_path / "bundle" / "adaptor" / "model.safetensors"))
    d = ADAPTOR_TINY["d_model"]
    in_proj = sd["transformer.layers.1.self_attn.in_proj_weight"].numpy()
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):  # rows q, k, v stacked
        np.testing.assert_array_equal(w[f"transformer.layers.1.self_attn.{name}.weight"], in_proj[i * d:(i + 1) * d])
        np.testing.assert_array_equal(w[f"transformer.layers.1.self_attn.{name}.bias"],
                                      sd["transformer.layers.1.self_attn.in_proj_bias"].numpy()[i * d:(i + 1) * d])
    assert not any("in_proj" in k for k in w)
    meta = Bundle.read(tmp_path / "bundle").components["adaptor"].entry
    assert meta["keep_query_frames"] is True and "a.pt" in meta["sources"]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_parity_chained_and_isolated(tmp_path, sv_dir, clip, norm_first, activation):
    bundle, _ = make_bundle(tmp_path, sv_dir, norm_first=norm_first, activation=activation)
    rep = run_parity(bundle, clip)
    assert rep.taps[-5:] == [taps.ADAPTOR_INPUT_PROJ, taps.adaptor_layer(0), taps.adaptor_layer(1),
                             taps.ADAPTOR_OUTPUT_PROJ, taps.ADAPTOR_NORM]
    for mode in ("chained", "isolated"):
        worst = max(rep.results[mode], key=lambda m: m.rel_l2)
        assert worst.rel_l2 <= 1e-5, (mode, worst)
    assert rep.meta["adaptor"]["norm_first"] == norm_first and rep.meta["adaptor"]["activation"] == activation
    # The adaptor sees the encoder output with its 4 query frames by default.
    assert rep.mlx_taps[taps.ADAPTOR_NORM].shape == (rep.mlx_taps[taps.TP_NORM].shape[0], ADAPTOR_TINY["llm_dim"])


def test_query_frames_dropped_when_asked(tmp_path, sv_dir, clip):
    bundle, _ = make_bundle(tmp_path, sv_dir, keep_query_frames=False)
    rep = run_parity(bundle, clip, modes=("chained",))
    assert rep.passed
    assert rep.mlx_taps[taps.ADAPTOR_NORM].shape[0] == rep.mlx_taps[taps.TP_NORM].shape[0] - 4


@pytest.mark.parametrize("mistake", ["relu_for_gelu", "pre_norm_for_post_norm"])
def test_wrong_port_is_named_at_first_adaptor_layer(tmp_path, sv_dir, clip, monkeypatch, mistake):
    """The earlier port's mistakes: caught, and located at adaptor.transformer.layers.0."""
    from funasr_qwen4b.mlx_port import adaptor

    init = adaptor.TransformerEncoderLayer.__init__

    def wrong(self, cfg):
        init(self, cfg)
        if mistake == "relu_for_gelu":
            self.activation = adaptor.nn.relu
        else:
            self.norm_first = not cfg.norm_first

    monkeypatch.setattr(adaptor.TransformerEncoderLayer, "__init__", wrong)
    bundle, _ = make_bundle(tmp_path, sv_dir)
    rep = run_parity(bundle, clip)
    assert rep.first_failure("chained") == taps.adaptor_layer(0)
    assert rep.first_failure("isolated") == taps.adaptor_layer(0)
    assert not rep.passed


@pytest.mark.parametrize("norm_first", [False, True])
def test_batch_with_padding_equals_unbatched(tmp_path, norm_first):
    from funasr_qwen4b.mlx_port.adaptor import AudioAdaptorQwen4B as MlxAdaptor

    pt = make_adaptor_pt(tmp_path / "a.pt", norm_first=norm_first)
    convert_adaptor(pt, tmp_path / "b", norm_first=norm_first, **TINY_STRUCT)
    ref = AudioAdaptorQwen4B.load(pt, AdaptorConfig(norm_first=norm_first, **TINY_STRUCT))
    b = Bundle.read(tmp_path / "b")
    mlx = MlxAdaptor.load(b.dir("adaptor"), b.adaptor_config, b.adaptor_quantization)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 64), np.float32), rng.standard_normal((17, 64), np.float32)
    batch = np.zeros((2, 30, 64), np.float32)
    batch[0], batch[1, :17] = a, b
    batch[1, 17:] = 1e3  # garbage in the padding must not leak
    valid = np.arange(30)[None, :] < np.array([[30], [17]])
    out_mlx = np.array(mlx(mx.array(batch), mx.array(valid)))
    out_ref = ref.run(torch.from_numpy(batch), torch.from_numpy(valid)).numpy()
    single_mlx = [np.array(mlx(mx.array(x[None])))[0] for x in (a, b)]
    single_ref = [ref.run(torch.from_numpy(x[None]))[0].numpy() for x in (a, b)]
    assert rel_l2(out_mlx[0], single_mlx[0]) <= 1e-6 and rel_l2(out_mlx[1, :17], single_mlx[1]) <= 1e-6
    assert rel_l2(out_ref[0], single_ref[0]) <= 1e-6 and rel_l2(out_ref[1, :17], single_ref[1]) <= 1e-6
    assert rel_l2(out_mlx[0], out_ref[0]) <= 1e-5 and rel_l2(out_mlx[1, :17], out_ref[1, :17]) <= 1e-5


def test_bfloat16_adaptor_output_reported(tmp_path, sv_dir, clip):
    bundle, _ = make_bundle(tmp_path, sv_dir, dtype="bfloat16")
    rep = run_parity(bundle, clip, modes=("chained",))
    out = {m.name: m for m in rep.results["chained"]}[taps.ADAPTOR_NORM]
    assert rep.meta["component_dtypes"] == {"sensevoice": "bfloat16", "adaptor": "bfloat16"}
    assert 1e-5 < out.rel_l2 <= out.tolerance == 5e-2


# --- refusals -----------------------------------------------------------------

def _refused(pt, tmp_path, match, **structure):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        convert_adaptor(pt, out, **{**TINY_STRUCT, **structure})
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_refuses_truncated_file(tmp_path):
    pt = make_adaptor_pt(tmp_path / "a.pt")
    pt.write_bytes(pt.read_bytes()[:5000])
    _refused(pt, tmp_path, "truncated or not a PyTorch checkpoint")


def test_refuses_missing_key(tmp_path):
    pt = make_adaptor_pt(tmp_path / "a.pt")
    sd = torch.load(pt, weights_only=True)
    del sd["transformer.layers.1.norm2.weight"]
    torch.save(sd, pt)
    _refused(pt, tmp_path, r"missing keys \[transformer\.layers\.1\.norm2\.weight\]")


def test_refuses_inconsistent_dims(tmp_path):
    pt = make_adaptor_pt(tmp_path / "a.pt")
    sd = torch.load(pt, weights_only=True)
    sd["transformer.layers.1.linear2.weight"] = torch.zeros(32, 99)
    sd["output_proj.bias"] = torch.zeros(47)
    torch.save(sd, pt)
    _refused(pt, tmp_path, r"wrong shapes \[output_proj\.bias \(47,\) != \(64,\), "
                           r"transformer\.layers\.1\.linear2\.weight \(32, 99\) != \(32, 64\)\]")


def test_refuses_pickle_that_needs_code(tmp_path):
    pt = make_adaptor_pt(tmp_path / "a.pt")
    torch.save({"model": torch.load(pt, weights_only=True), "args": Namespace()}, pt)
    _refused(pt, tmp_path, "needs a full unpickle")


class Namespace:
    pass


def test_refuses_heads_not_dividing_and_non_adaptor(tmp_path, sv_dir):
    pt = make_adaptor_pt(tmp_path / "a.pt")
    _refused(pt, tmp_path, "not divisible by nhead 5", nhead=5)
    _refused(sv_dir / "model.pt", tmp_path, "not an audio adaptor checkpoint")


def test_bundle_is_whole_or_absent(tmp_path, sv_dir):
    pt = make_adaptor_pt(tmp_path / "a.pt")
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(ValueError):
        convert_bundle(tmp_path / "bundle", sensevoice=sv_dir, adaptor=pt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_cli_convert_adaptor_and_parity(tmp_path, sv_dir, bundle, capsys):
    import shutil

    from funasr_qwen4b.app.cli import main

    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    pt = make_adaptor_pt(tmp_path / "adaptor_phase2_final.pt", "model_state_dict")
    assert main(["convert", "adaptor", str(pt), "-o", str(out), "--heads", "4"]) == 0
    assert main(["convert", "adaptor", str(pt), "-o", str(out), "--heads", "4"]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    from tests.conftest import CLIPS

    assert main(["parity", "-m", str(out), "--audio", str(CLIPS / "zh_open_hours.wav")]) == 0
    assert "| `adaptor.norm` |" in capsys.readouterr().out


def test_embedded_config_that_agrees_converts(tmp_path):
    """A checkpoint's own hyperparameters are compared, not required: agreeing ones (ints for
    floats included) and keys that are not the adaptor's pass."""
    sd = torch.load(make_adaptor_pt(tmp_path / "plain.pt"), weights_only=True)
    pt = tmp_path / "a.pt"
    torch.save({"model_state_dict": sd, "epoch": 3,
                "config": {"num_layers": 2, "d_model": 32, "nhead": 4, "activation": "gelu", "eps": 1e-5,
                           "norm_first": False, "lr": 1e-4, "batch_size": 16}}, pt)
    out = convert_adaptor(pt, tmp_path / "out", **TINY_STRUCT)
    assert Bundle.read(out).adaptor_config == AdaptorConfig(**ADAPTOR_TINY)
    torch.save({"model_state_dict": sd, "hparams": {"nhead": 4, "eps": 1}}, pt)  # eps 1 is not 1e-5
    with pytest.raises(ValueError, match=r"eps=1 where the conversion has 1e-05 \(pass --eps to match\)"):
        convert_adaptor(pt, tmp_path / "out2", **TINY_STRUCT)
