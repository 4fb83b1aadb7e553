"""Fun-ASR-Nano parity against both oracles: FunASR's own FunASRNano and transformers' own
FunAsrNanoForConditionalGeneration, on one tiny model in both published layouts (the -hf one
written by transformers' classes, FunASR's by the -hf mapping), float32, every tap within
tolerance and the generated ids identical; the report of a model without a CTC head; the
refusals; a planted adaptor fault located."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

STEPS = {"loop_guard": False, "min_tokens": 8, "max_tokens": 8, "ignore_eos": True}  # 8 ids compared


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from funasr_qwen4b.testing_nano_hf import make_nano_hf_dir

    return make_nano_hf_dir(tmp_path_factory.mktemp("nano_hf") / "Fun-ASR-Nano-tiny-hf")


def _convert(src, tmp_path_factory, name):
    from funasr_qwen4b.convert.nano import convert_nano

    return convert_nano(src, tmp_path_factory.mktemp(name) / "bundle", dtype="float32")


@pytest.fixture(scope="module")
def original(hf_dir, tmp_path_factory):
    """The same model in FunASR's layout (FunASR's own layout written by the -hf mapping; a
    checkpoint written by FunASR's own class is tested against FunASR in tests/test_nano.py)."""
    from funasr_qwen4b.convert.nano_hf import write_original

    return write_original(hf_dir, tmp_path_factory.mktemp("nano_orig") / "Fun-ASR-Nano-tiny")


@pytest.fixture(scope="module")
def funasr_bundle(original, tmp_path_factory):
    return _convert(original, tmp_path_factory, "nb_funasr")


@pytest.fixture(scope="module")
def hf_bundle(hf_dir, tmp_path_factory):
    return _convert(hf_dir, tmp_path_factory, "nb_hf")


def _parity(bundle, clip, **kw):
    from funasr_qwen4b.decoding import DecodeConfig
    from funasr_qwen4b.parity.harness import run_parity

    return run_parity(bundle, clip, decode=DecodeConfig(**STEPS), **kw)


def _clean(rep):
    assert rep.passed, rep.to_dict()["first_failure"]
    assert set(rep.results) == {"chained", "isolated"}
    worst = max((m for ms in rep.results.values() for m in ms), key=lambda m: m.rel_l2)
    assert worst.rel_l2 <= 1e-5, worst
    assert rep.ctc is None and rep.llm["tokens"]["equal"] and len(rep.llm["tokens"]["mlx"]) == 8
    assert rep.llm["logits"]["top1"] and rep.llm["logits"]["top5_overlap"] == 1.0
    assert rep.llm["logprobs"]["compared"] == 8 and rep.llm["logprobs"]["max_abs_diff"] <= 1e-4, rep.llm["logprobs"]
    assert rep.meta["kind"] == "funasr-nano" and rep.meta["dtype"] == "float32"
    assert "adaptor.linear1" in rep.taps and "ctc.ctc_lo" not in rep.taps


def test_funasr_layout_against_both_oracles(funasr_bundle, original, hf_dir, clip):
    """A bundle of FunASR's layout against FunASR, then against transformers on the same model's
    -hf directory given: a FunASR-layout bundle records no -hf files, so that directory is not
    checked against the bundle, and the report says so."""
    rep = _parity(funasr_bundle, clip)
    _clean(rep)
    assert rep.meta["oracle"] == {"name": "funasr", "source": str(original.absolute()), "layout": "funasr"}

    hf = _parity(funasr_bundle, clip, oracle="transformers", sources={"sensevoice": hf_dir}, modes=("chained",))
    assert hf.passed and hf.llm["tokens"]["equal"] and hf.llm["tokens"]["reference"] == rep.llm["tokens"]["reference"]
    assert hf.llm["logprobs"]["compared"] == 8 and hf.llm["logprobs"]["max_abs_diff"] <= 1e-4, hf.llm["logprobs"]
    assert hf.meta["oracle"]["checked_against_bundle"] is False


def test_hf_layout_against_both_oracles(hf_bundle, hf_dir, clip):
    """A bundle converted from -hf: FunASR's FunASRNano reads it mapped onto FunASR's layout (in
    a scratch directory, gone afterwards), transformers' model reads it as it is, aligned to
    FunASR; both agree with MLX tap by tap, and so with each other."""
    funasr = _parity(hf_bundle, clip)
    _clean(funasr)
    assert funasr.meta["oracle"]["name"] == "funasr" and funasr.meta["oracle"]["layout"] == "transformers"

    hf = _parity(hf_bundle, clip, oracle="transformers")
    _clean(hf)
    oracle = hf.meta["oracle"]
    assert oracle["name"] == "transformers" and oracle["source"] == str(hf_dir.absolute())
    assert oracle["checked_against_bundle"]
    cfg = json.loads((hf_dir / "config.json").read_text())
    assert oracle["aligned_to_funasr"] == {
        "adaptor_layernorm_eps": {"transformers": cfg["adaptor_config"]["layer_norm_eps"], "used": 1e-12},
        "audio_rows": {"transformers": "all T", "used": "ceil(T/8) (use_low_frame_rate)"},
        "waveform_scale": {"transformers": 1, "used": 32768}}
    assert funasr.llm["tokens"]["reference"] == hf.llm["tokens"]["reference"]
    for name in hf.taps:
        np.testing.assert_allclose(hf.reference_taps[name], funasr.reference_taps[name], rtol=0, atol=1e-5,
                                   err_msg=name)
    # the LLM reads the first ceil(frames / 8) adaptor rows under both oracles
    assert hf.reference_taps["llm.inputs_embeds"].shape == funasr.reference_taps["llm.inputs_embeds"].shape


def test_report_renders_without_ctc(hf_bundle, hf_dir, clip, tmp_path):
    """The report of a Nano run (here against transformers, under a per-call prompt with hotwords
    and a language) in Markdown, JSON and the plot."""
    from funasr_qwen4b.parity import report as reports
    from funasr_qwen4b.prompt import nano_template

    template = nano_template(["开放时间"], "中文", itn=False)
    rep = _parity(hf_bundle, clip, oracle="transformers", modes=("chained",), template=template)
    assert rep.llm["template"] == template and rep.llm["tokens"]["equal"]
    md = reports.to_markdown(rep)
    assert md.startswith("# Parity: MLX port vs reference (transformers oracle)")
    assert f"- reference: transformers' own FunAsrNanoForConditionalGeneration from `{hf_dir.absolute()}`" in md
    assert "model kind `funasr-nano`" in md and "CTC: none (the model has no CTC head)" in md
    assert "adaptor_layernorm_eps 1e-12 (transformers: 1e-05)" in md and "**Result: PASS**" in md
    assert "| `adaptor.blocks.1` |" in md
    paths = reports.write(rep, tmp_path / "r.json")
    assert [p.name for p in paths] == ["r.json", "r.md", "r.png"] and all(p.stat().st_size for p in paths)
    data = json.loads(paths[0].read_text())
    assert data["ctc"] is None and data["passed"] and data["meta"]["oracle"]["name"] == "transformers"
    assert data["meta"]["kind"] == "funasr-nano" and data["llm"]["tokens"]["equal"]


def test_refusals_are_one_line(funasr_bundle, bundle, original, clip):
    from funasr_qwen4b.parity.harness import run_parity

    cases = [({"bundle": bundle, "oracle": "transformers"}, "the transformers oracle runs Fun-ASR-Nano"),
             ({"bundle": funasr_bundle, "oracle": "onnx"}, "unknown oracle 'onnx'"),
             ({"bundle": funasr_bundle, "oracle": "transformers"}, "converted from FunASR's layout"),
             ({"bundle": funasr_bundle, "oracle": "transformers", "sources": {"sensevoice": original}},
              "is not transformers' -hf layout")]
    for kw, words in cases:
        with pytest.raises(ValueError) as e:
            run_parity(kw.pop("bundle"), clip, modes=("chained",), **kw)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_planted_adaptor_fault_is_located(funasr_bundle, clip, tmp_path):
    """One weight of the converted adaptor's first projection changed (the bundle re-sealed, as
    one who edits it on purpose would): the paths part at the adaptor's first tap, in both modes,
    and not before."""
    from funasr_qwen4b.files import safetensors_header
    from tests.test_faults_data import _reseal

    b = shutil.copytree(funasr_bundle, tmp_path / "bundle")
    f = b / "adaptor" / "model.safetensors"
    header = safetensors_header(f)
    start = 8 + int.from_bytes(f.read_bytes()[:8], "little") + header["linear1.weight"]["data_offsets"][0]
    with open(f, "r+b") as out:
        out.seek(start + 4 * 5)
        value = np.frombuffer(out.read(4), dtype="<f4")[0]
        out.seek(start + 4 * 5)
        out.write(np.array([value + 0.5], dtype="<f4").tobytes())
    _reseal(b, "adaptor", "model.safetensors")
    rep = _parity(b, clip)
    assert not rep.passed and rep.failure() == "chained: adaptor.linear1 over tolerance"
    assert rep.first_failure("chained") == "adaptor.linear1" == rep.first_failure("isolated")
    first = rep.taps.index("adaptor.linear1")
    assert all(m.passed for m in rep.results["chained"][:first])


def test_failure_says_why():
    """Without CTC, a float32 run whose taps all pass fails on its generated ids, and says where
    they part; at reduced precision the ids are reported, not required."""
    from funasr_qwen4b.parity.harness import ParityReport, compare_tokens

    tokens = compare_tokens(np.array([5, 6, 7]), np.array([5, 6, 9]))
    rep = ParityReport({"dtype": "float32"}, [], {"chained": []}, None, llm={"tokens": tokens})
    assert tokens["first_difference"] == 2 and not rep.passed
    assert rep.failure() == "generated ids differ from position 2"
    assert ParityReport({"dtype": "bfloat16"}, [], {}, None, llm={"tokens": tokens}).failure() is None


def test_cli_parity_on_an_hf_bundle(hf_bundle, tmp_path, capsys):
    """`funasr-qwen4b parity -m B` on a bundle converted from -hf: exit 0 against FunASR (its
    FunASRNano on the mapped files), the report written, with the bundle's own decoding rules."""
    from funasr_qwen4b.app.cli import main
    from funasr_qwen4b.audio import packaged_clip

    out = tmp_path / "p.json"
    assert main(["parity", "-m", str(hf_bundle), "--audio", str(packaged_clip("zh_open_hours.wav")), "--mode",
                 "chained", "--report", str(out)]) == 0
    assert "model kind `funasr-nano`" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["passed"] and data["ctc"] is None and data["llm"]["tokens"]["equal"]
    assert data["meta"]["oracle"]["name"] == "funasr" and data["meta"]["oracle"]["layout"] == "transformers"
