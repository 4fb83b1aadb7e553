"""`convert sensevoice`: strict checks, layouts, dtypes, atomic output, and
the source left untouched."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from funasr_qwen4b.convert.sensevoice import convert_sensevoice
from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.files import sha256_file
from funasr_qwen4b.config import EMBED_ROWS, SenseVoiceConfig, sensevoice_config_from_yaml
from funasr_qwen4b.keys import sensevoice_shapes
from funasr_qwen4b.sources import SenseVoiceSource, parse_am_mvn
from funasr_qwen4b.testing import REAL, config_yaml


def tree_digest(path):
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def copy_src(sv_dir, tmp_path):
    dst = tmp_path / "src"
    shutil.copytree(sv_dir, dst)
    return dst


def test_expected_keys_equal_funasr_state_dict():
    """Our key/shape table (from the config alone) is FunASR's own, at the real size."""
    from funasr.models.sense_voice.model import SenseVoiceSmall

    small = {**REAL, "num_blocks": 3, "tp_blocks": 2}  # real widths, fewer layers: fast
    cfg_yaml = config_yaml(small)
    model = SenseVoiceSmall(**{**cfg_yaml["model_conf"], **cfg_yaml, "input_size": 560, "vocab_size": 25055})
    cfg = sensevoice_config_from_yaml(cfg_yaml, vocab_size=25055, has_cmvn=True)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == sensevoice_shapes(cfg)
    assert model.embed.num_embeddings == EMBED_ROWS


def test_conversion_contents(sv_dir, bundle):
    src = SenseVoiceSource.from_dir(sv_dir)
    sd = torch.load(src.model_pt, weights_only=True)
    w = load_file(str(bundle / "sensevoice" / "model.safetensors"))
    # FSMN layout fixed at conversion: (C_out, 1, K) → (C_out, K, 1); the rest as is.
    k = "encoder.encoders.0.self_attn.fsmn_block.weight"
    assert w[k].shape == (64, 11, 1)
    np.testing.assert_array_equal(w[k][:, :, 0], sd[k].numpy()[:, 0, :])
    np.testing.assert_array_equal(w["ctc.ctc_lo.weight"], sd["ctc.ctc_lo.weight"].numpy())
    shift, scale = parse_am_mvn(src.cmvn_file)
    np.testing.assert_array_equal(w["frontend.cmvn.shift"], shift)
    np.testing.assert_array_equal(w["frontend.cmvn.scale"], scale)
    conf = json.loads((bundle / "sensevoice" / "config.json").read_text())
    assert conf["layout"]["fsmn_block.weight"].startswith("mlx conv1d")
    assert SenseVoiceConfig.from_dict(conf["config"]).encoder.output_size == 64
    meta = Bundle.read(bundle).components["sensevoice"].entry
    assert meta["sources"]["model.pt"]["sha256"] == sha256_file(src.model_pt)
    assert set(meta["sources"]) == {"model.pt", "config.yaml", "am.mvn", src.bpemodel.name}
    assert meta["query"] == {"enabled": True, "language": "zh", "textnorm": "woitn"}
    assert (bundle / "sensevoice" / "tokenizer.model").read_bytes() == src.bpemodel.read_bytes()


def test_cmvn_found_although_config_says_null(sv_dir):
    """Released config.yaml says cmvn_file: null; FunASR still applies am.mvn."""
    src = SenseVoiceSource.from_dir(sv_dir)
    assert src.config["frontend_conf"]["cmvn_file"] is None
    assert src.cmvn_file == sv_dir / "am.mvn"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtypes_and_source_untouched(sv_dir, tmp_path, dtype):
    before = tree_digest(sv_dir)
    out = convert_sensevoice(sv_dir, tmp_path / "b", dtype=dtype)
    assert tree_digest(sv_dir) == before
    from safetensors import safe_open

    with safe_open(str(out / "sensevoice" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("encoder.tp_norm.weight").dtype == getattr(torch, dtype)
        assert f.get_tensor("frontend.cmvn.shift").dtype == torch.float32


def _refused(src, tmp_path, match, error=ValueError):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        convert_sensevoice(src, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp dir left


def test_refuses_missing_key(sv_dir, tmp_path):
    src = copy_src(sv_dir, tmp_path)
    sd = torch.load(src / "model.pt", weights_only=True)
    del sd["encoder.encoders.1.norm2.bias"]
    torch.save(sd, src / "model.pt")
    _refused(src, tmp_path, r"missing keys \[encoder\.encoders\.1\.norm2\.bias\]")


def test_refuses_unexpected_key_and_wrong_shape(sv_dir, tmp_path):
    src = copy_src(sv_dir, tmp_path)
    sd = torch.load(src / "model.pt", weights_only=True)
    sd["encoder.extra.weight"] = torch.zeros(3)
    sd["encoder.encoders.0.feed_forward.w_1.weight"] = torch.zeros(99, 64)
    torch.save(sd, src / "model.pt")
    _refused(src, tmp_path, r"unexpected keys \[encoder\.extra\.weight\].*wrong shapes "
                            r"\[encoder\.encoders\.0\.feed_forward\.w_1\.weight \(99, 64\) != \(128, 64\)\]")


def test_refuses_truncated_file(sv_dir, tmp_path):
    src = copy_src(sv_dir, tmp_path)
    data = (src / "model.pt").read_bytes()
    (src / "model.pt").write_bytes(data[: len(data) // 2])
    _refused(src, tmp_path, "truncated or not a PyTorch checkpoint")


def test_refuses_pickle_that_needs_code(sv_dir, tmp_path):
    src = copy_src(sv_dir, tmp_path)
    sd = torch.load(src / "model.pt", weights_only=True)
    torch.save({"state_dict": sd, "cfg": CustomObject()}, src / "model.pt")
    _refused(src, tmp_path, "needs a full unpickle")


class CustomObject:
    pass


def test_refuses_bpe_vocab_mismatch_and_missing_files(sv_dir, tmp_path):
    src = copy_src(sv_dir, tmp_path)
    sd = torch.load(src / "model.pt", weights_only=True)
    sd["ctc.ctc_lo.weight"] = torch.zeros(200, 64)
    sd["ctc.ctc_lo.bias"] = torch.zeros(200)
    torch.save(sd, src / "model.pt")
    _refused(src, tmp_path, "pieces but the CTC head has 200 outputs")
    (src / "config.yaml").unlink()
    _refused(src, tmp_path, "config.yaml missing", FileNotFoundError)


def test_existing_component_needs_force(sv_dir, bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    before = tree_digest(out)
    with pytest.raises(ValueError, match="--force"):
        convert_sensevoice(sv_dir, out)
    assert tree_digest(out) == before
    convert_sensevoice(sv_dir, out, dtype="float16", force=True)
    assert Bundle.read(out).components["sensevoice"].dtype == "float16"
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "sensevoice"]


def test_wrapped_state_dict_with_module_prefix(sv_dir, tmp_path):
    src = copy_src(sv_dir, tmp_path)
    sd = torch.load(src / "model.pt", weights_only=True)
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, src / "model.pt")
    out = convert_sensevoice(src, tmp_path / "b")
    ref = load_file(str(out / "sensevoice" / "model.safetensors"))
    np.testing.assert_array_equal(ref["embed.weight"], sd["embed.weight"].numpy())


# --- what conversion records, and the checks at load ------------------------------------

def test_bundle_json_records_every_file_conversion_wrote(full_bundle):
    meta = json.loads((full_bundle / "bundle.json").read_text())
    assert meta["format_version"] == 2
    for name in ("sensevoice", "adaptor", "llm"):
        root = full_bundle / name
        files = meta["components"][name]["files"]
        assert set(files) == {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        for rel, rec in files.items():
            data = (root / rel).read_bytes()
            assert rec["bytes"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert Bundle.read(full_bundle).verify() == {"sensevoice": [], "adaptor": [], "llm": []}


def test_sum64_is_the_sum_of_every_word(tmp_path):
    import struct

    from funasr_qwen4b.files import sum64

    data = bytearray(np.random.default_rng(0).integers(0, 256, (1 << 20) + 5, dtype=np.uint8).tobytes())
    f = tmp_path / "f"
    f.write_bytes(bytes(data))
    words = struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])
    by_hand = (sum(words) + int.from_bytes(data[len(data) // 8 * 8:], "little")) % 2**64
    assert sum64(f) == f"{by_hand:016x}"
    for at in (0, 123_457, len(data) - 1):  # any byte, the tail's included
        changed = bytearray(data)
        changed[at] ^= 0x10
        f.write_bytes(bytes(changed))
        assert sum64(f) != f"{by_hand:016x}"
    (tmp_path / "tiny").write_bytes(b"abc")
    assert sum64(tmp_path / "tiny") == f"{int.from_bytes(b'abc', 'little'):016x}"


def test_safetensors_header_checks_the_file_size(full_bundle, tmp_path):
    from safetensors import safe_open

    from funasr_qwen4b.files import safetensors_header

    f = full_bundle / "adaptor" / "model.safetensors"
    with safe_open(str(f), "np") as st:
        shapes = {k: list(st.get_slice(k).get_shape()) for k in st.keys()}
    assert {k: v["shape"] for k, v in safetensors_header(f).items()} == shapes
    data = f.read_bytes()
    for name, bad, words in [("cut", data[:-1], "the file has"), ("longer", data + b"\0", "appended to"),
                             ("length", (10**12).to_bytes(8, "little") + data[8:], "header length"),
                             ("json", data[:8] + b"#" + data[9:], "not JSON")]:
        (tmp_path / name).write_bytes(bad)
        with pytest.raises(ValueError, match=words):
            safetensors_header(tmp_path / name)


@pytest.mark.parametrize("cls, data, message", [
    ("AdaptorConfig", {"eps": -1.0}, "X: eps must be a finite number > 0, got -1.0"),
    ("AdaptorConfig", {"nhead": 0}, "X: nhead must be >= 1, got 0"),
    ("AdaptorConfig", {"llm_dim": 0}, "X: llm_dim must be >= 1, got 0"),
    ("SenseVoiceConfig", {"vocab_size": 100, "encoder": {"input_size": 560, "tp_blocks": -1}},
     "X.encoder: tp_blocks must be >= 0, got -1"),
    ("SenseVoiceConfig", {"vocab_size": 100, "frontend": {"dither": -0.5}}, "X.frontend: dither must be"),
    ("SenseVoiceConfig", {"vocab_size": 100, "frontend": {"frame_shift": 30}}, "frame_shift 30 ms is longer"),
    ("SenseVoiceConfig", {"vocab_size": 100, "blank_id": 100}, "X: blank_id 100 is outside the vocabulary"),
    ("SenseVoiceConfig", {"vocab_size": 1}, "X: vocab_size must be an integer >= 2"),
    ("SenseVoiceConfig", {"vocab_size": 100, "encoder": {"input_size": 80}}, "input_size 80 is not the frontend's"),
])
def test_config_ranges_are_checked_and_named(cls, data, message):
    import funasr_qwen4b.config as config

    with pytest.raises(ValueError) as e:
        getattr(config, cls).from_dict(data, "X")
    assert message in str(e.value)


@pytest.mark.parametrize("chunk", [3, 1 << 24])
def test_nonfinite_tensors_by_bit_pattern_in_every_float_format(tmp_path, chunk):
    """NaN and ±inf found in float64/32/16 and bfloat16 (numpy has no bfloat16: bits), the largest
    finite values and integer tensors left alone; torch.isfinite is the oracle."""
    from safetensors.torch import save_file

    from funasr_qwen4b.files import nonfinite_tensors

    g = torch.Generator().manual_seed(0)
    tensors = {"int": torch.full((9,), -1, dtype=torch.int32), "u8": torch.full((5,), 255, dtype=torch.uint8)}
    for dt in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        tensors[f"{dt}_max"] = torch.tensor([torch.finfo(dt).max, torch.finfo(dt).min, torch.finfo(dt).tiny], dtype=dt)
        for bad in (float("nan"), float("inf"), -float("inf")):
            x = (torch.randn(37, generator=g) * 100).to(dt)
            x[int(torch.randint(0, 37, (1,), generator=g))] = bad
            tensors[f"{dt}_{bad}"] = x
    save_file(tensors, str(tmp_path / "w.safetensors"))
    expected = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    assert len(expected) == 12
    assert nonfinite_tensors(tmp_path / "w.safetensors", chunk=chunk) == expected
