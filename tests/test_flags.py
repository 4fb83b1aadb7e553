"""Every command-line flag reaches what it sets. A flag is exercised here (or elsewhere in
the suite) or it goes: `test_every_flag_is_exercised` scans the tests for each subcommand's
options. The oracle for each flag is the Python API asked for the same thing (whose own
behaviour the other suites check against FunASR and transformers), or the value the flag
must record, read back from the bundle."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from funasr_qwen4b import Transcriber
from funasr_qwen4b.app.cli import build_parser, main
from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.config import QueryConfig
from funasr_qwen4b.prompt import PRESETS
from funasr_qwen4b.testing import ADAPTOR_TINY, make_adaptor_pt
from tests.conftest import CLIPS
from tests.test_hub import COMMIT, caches, hf_layout  # noqa: F401  (caches: a fixture)

TESTS = Path(__file__).resolve().parent
CLIP = str(CLIPS / "zh_open_hours.wav")


def subcommand_options() -> dict[str, set[str]]:
    """{"convert bundle": {"--output", "-o", ...}, ...} for every (sub)command."""
    found = {}

    def walk(parser, name):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, p in a.choices.items():
                    walk(p, f"{name} {sub}".strip())
            elif a.option_strings and "--help" not in a.option_strings:
                found.setdefault(name, set()).add(tuple(a.option_strings))
    walk(build_parser(), "")
    return found


def test_every_flag_is_exercised():
    """Each option of each subcommand is written somewhere in the tests or CI's accuracy run,
    in either of its spellings (a flag nothing runs is a flag nobody knows works)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_*.py"))
    text += (TESTS.parent / ".ci" / "accuracy.sh").read_text(encoding="utf-8")
    missing = [f"{cmd}: {'/'.join(opts)}" for cmd, groups in subcommand_options().items() for opts in groups
               if not any(re.search(re.escape(o) + r"(?![\w-])", text) for o in opts)]
    assert not missing, "flags no test runs:\n" + "\n".join(missing)


def run(capsys, *args) -> str:
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out


def transcribe_json(capsys, bundle, *flags) -> dict:
    return json.loads(run(capsys, "transcribe", CLIP, "--model", bundle, "--json", *flags))


@pytest.fixture(scope="module")
def plain(full_bundle) -> dict:
    """The bundle's own transcript of CLIP, no flag given."""
    return Transcriber.load(full_bundle).transcribe(CLIP)


# --- transcribe ----------------------------------------------------------------------

def test_decoding_flags_equal_the_api(full_bundle, plain, capsys):
    b = Bundle.read(full_bundle)
    cases = [(["--no-loop-guard"], {"loop_guard": False}),
             (["--repetition-penalty", "1.3"], {"repetition_penalty": 1.3}),
             (["--no-repeat-ngram", "2"], {"no_repeat_ngram": 2})]
    for flags, change in cases:
        got = transcribe_json(capsys, full_bundle, *flags)
        want = Transcriber.load(b, decode=replace(b.decode, **change)).transcribe(CLIP)
        assert got["text"] == want["text"] and got["tokens"] == want["tokens"], flags
        if change != {"loop_guard": False}:  # random weights repeat themselves: a penalty bites
            assert got["text"] != plain["text"], flags


def test_template_and_query_flags_equal_the_api(full_bundle, plain, capsys, tmp_path):
    b = Bundle.read(full_bundle)
    chatml = transcribe_json(capsys, full_bundle, "--template", "chatml")
    want = Transcriber.load(b, template=PRESETS["chatml"]).transcribe(CLIP)
    assert chatml["text"] == want["text"]
    f = tmp_path / "t.txt"
    f.write_text(PRESETS["chatml"], encoding="utf-8")
    assert transcribe_json(capsys, full_bundle, "--template-file", f)["text"] == chatml["text"]
    en = transcribe_json(capsys, full_bundle, "--language", "en", "--textnorm", "withitn")
    api = Transcriber.load(b, query=QueryConfig(language="en", textnorm="withitn")).transcribe(CLIP)
    assert en["language"] == "en" and en["text"] == api["text"] and en["tag_ids"] == api["tag_ids"]
    assert en["tag_ids"] != plain["tag_ids"]


def test_translate_prints_the_second_pass(full_bundle, plain, capsys):
    out = run(capsys, "transcribe", CLIP, "--model", full_bundle, "--translate")
    text = plain["text"]
    assert out == f"{text}\n[en] {Transcriber.load(full_bundle).translate(text)}\n"


@pytest.fixture
def moved_sources(sv_dir, qwen_dir, tmp_path):
    """A bundle whose adaptor and LLM originals were moved after conversion: the reference
    finds them only through --adaptor-src / --llm-src."""
    from funasr_qwen4b.convert.bundle import convert_bundle

    pt = make_adaptor_pt(tmp_path / "orig" / "adaptor.pt")
    llm = shutil.copytree(qwen_dir, tmp_path / "orig" / "qwen")
    bundle = convert_bundle(tmp_path / "bundle", sensevoice=sv_dir, adaptor=pt, llm=llm, dtype="float32",
                            adaptor_options={"nhead": ADAPTOR_TINY["nhead"]})
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "orig", moved)
    return bundle, ["--adaptor-src", moved / "adaptor.pt", "--llm-src", moved / "qwen"]


def test_source_flags_find_moved_originals(moved_sources, capsys, tmp_path):
    bundle, flags = moved_sources
    assert main(["transcribe", CLIP, "-m", str(bundle), "--backend", "reference"]) == 2
    assert "adaptor" in capsys.readouterr().err
    ref = run(capsys, "transcribe", CLIP, "-m", bundle, "--backend", "reference", *flags)
    assert ref == run(capsys, "transcribe", CLIP, "-m", bundle)  # float32: the oracle agrees with MLX

    report = tmp_path / "p.json"
    run(capsys, "parity", "--model", bundle, "--audio", CLIP, "--mode", "isolated", "--template", "raw",
        "--language", "zh", "--textnorm", "woitn", "--report", report, *flags)
    rep = json.loads(report.read_text())
    assert rep["passed"] and list(rep["taps"]) == ["isolated"]

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": CLIP, "text": "开放时间"}, ensure_ascii=False) + "\n")
    tpl = tmp_path / "raw.txt"
    tpl.write_text(PRESETS["raw"], encoding="utf-8")
    out = run(capsys, "cer", "--model", bundle, "--manifest", manifest, "--backend", "both", "--template-file", tpl,
              "--language", "zh", "--textnorm", "woitn", *flags)
    assert "1/1 transcripts identical" in out


# --- convert ---------------------------------------------------------------------------

def test_convert_flags_are_recorded(sv_dir, qwen_dir, tmp_path, capsys):
    pt = make_adaptor_pt(tmp_path / "a.pt", norm_first=True, activation="relu")
    out = tmp_path / "b"
    run(capsys, "convert", "bundle", "--sensevoice", sv_dir, "--adaptor", pt, "--llm", qwen_dir, "--output", out,
        "--heads", ADAPTOR_TINY["nhead"], "--norm-first", "--activation", "relu", "--drop-query-frames",
        "--language", "en", "--textnorm", "withitn", "--q-bits", "4", "--embeddings-8bit", "--dtype", "float32")
    b = Bundle.read(out)
    assert b.adaptor_config.norm_first and b.adaptor_config.activation == "relu" and not b.keep_query_frames
    assert (b.query.language, b.query.textnorm) == ("en", "withitn")
    assert b.components["llm"].q_bits == 4 and b.components["llm"].entry["embeddings_8bit"]
    llm_cfg = json.loads((out / "llm" / "config.json").read_text())
    assert llm_cfg["quantization"]["bits"] == 4
    assert llm_cfg["quantization"]["model.embed_tokens"]["bits"] == 8

    one = tmp_path / "one"
    run(capsys, "convert", "sensevoice", sv_dir, "--output", one, "--language", "en", "--textnorm", "withitn")
    run(capsys, "convert", "adaptor", pt, "--output", one, "--heads", ADAPTOR_TINY["nhead"], "--norm-first",
        "--activation", "relu", "--drop-query-frames")
    run(capsys, "convert", "llm", qwen_dir, "--output", one, "--q-bits", "4", "--embeddings-8bit")
    b1 = Bundle.read(one)
    assert (b1.query, b1.adaptor_config, b1.keep_query_frames) == (b.query, b.adaptor_config, False)
    assert json.loads((one / "llm" / "config.json").read_text())["quantization"] == llm_cfg["quantization"]


def test_hub_and_revision_flags_pick_the_snapshot(caches, qwen_dir, sv_dir, tmp_path, capsys):  # noqa: F811
    from tests.test_hub import OTHER_COMMIT

    hf, _ = caches
    hf_layout(hf, "owner/sv", sv_dir, commit=COMMIT)
    hf_layout(hf, "owner/qwen", qwen_dir, commit=OTHER_COMMIT, ref=None)  # one snapshot, not main's
    pt = make_adaptor_pt(tmp_path / "a.pt")
    hf_layout(hf, "owner/adaptor", pt, commit=COMMIT)
    out = tmp_path / "b"
    assert main(["convert", "sensevoice", "owner/sv", "--hub", "modelscope", "-o", str(out)]) == 2
    assert "owner/sv" in capsys.readouterr().err  # looked for in ModelScope's cache, as --hub says
    assert main(["convert", "llm", "owner/qwen", "--hub", "huggingface", "--revision", COMMIT, "-o", str(out)]) == 2
    assert COMMIT[:12] in capsys.readouterr().err
    run(capsys, "convert", "sensevoice", "owner/sv", "--hub", "huggingface", "--revision", COMMIT, "-o", out)
    run(capsys, "convert", "adaptor", "owner/adaptor/a.pt", "--hub", "huggingface", "--revision", COMMIT,
        "-o", out, "--heads", ADAPTOR_TINY["nhead"])
    run(capsys, "convert", "llm", "owner/qwen", "--hub", "huggingface", "--revision", OTHER_COMMIT, "-o", out,
        "--dtype", "float32")

    hf_layout(hf, "you/bundle", out, commit=COMMIT)
    assert run(capsys, "transcribe", CLIP, "--ctc", "-m", "you/bundle", "--hub", "huggingface",
               "--revision", COMMIT) == run(capsys, "transcribe", CLIP, "--ctc", "-m", out)
    assert "OK" in run(capsys, "verify", "--model", "you/bundle", "--hub", "huggingface", "--revision", COMMIT)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": CLIP, "text": "开放时间"}, ensure_ascii=False) + "\n")
    by_id = run(capsys, "cer", "-m", "you/bundle", "--hub", "huggingface", "--revision", COMMIT, "--manifest", manifest)
    snapshot = hf / "hub" / "models--you--bundle" / "snapshots" / COMMIT
    by_path = run(capsys, "cer", "-m", out, "--manifest", manifest).replace(str(out), str(snapshot))
    assert by_id.split("Time:")[0] == by_path.split("Time:")[0]
    bench = tmp_path / "bench.json"
    run(capsys, "bench", "--model", "you/bundle", "--hub", "huggingface", "--revision", COMMIT, "--clips", "1",
        "--reps", "1", "--warmup", "0", "--tokens", "4", "--draft-rate", "0.5", "--json", bench)
    rep = json.loads(bench.read_text())
    assert rep["settings"]["source"].endswith(COMMIT) and rep["results"]["mlx"]["speculation"]["draft_rate"] == 0.5


# --- verify, bench, serve ------------------------------------------------------------------

def test_verify_sources_names_a_changed_original(moved_sources, capsys):
    bundle, _ = moved_sources
    assert main(["verify", "--model", str(bundle), "--sources"]) == 0  # sources are reported, not judged
    out = capsys.readouterr().out
    assert "sensevoice source: OK" in out and "adaptor source:" in out and "not found" in out


def test_bench_batch_sizes_and_peer(full_bundle, tmp_path, capsys, monkeypatch):
    out = tmp_path / "b.json"
    run(capsys, "bench", "-m", full_bundle, "--batch-sizes", "1,2", "--reps", "1", "--warmup", "0", "--tokens", "4",
        "--json", out)
    rep = json.loads(out.read_text())
    assert rep["settings"]["batch_sizes"] == [1, 2] and sorted(rep["throughput"]["sizes"]) == ["1", "2"]
    monkeypatch.setitem(sys.modules, "funasr_mlx", None)  # as if not installed: --peer refused before any work
    assert main(["bench", "-m", str(full_bundle), "--peer", "--clips", "1", "--reps", "1", "--warmup", "0",
                 "--tokens", "4"]) == 2
    assert "funasr-mlx" in capsys.readouterr().err


def test_bench_calibrate_stores_this_machines_pass_costs(full_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUNASR_QWEN4B_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "c.json"
    run(capsys, "bench", "-m", full_bundle, "--calibrate", "--reps", "1", "--warmup", "0", "--json", out)
    rep = json.loads(out.read_text())["calibration"]
    assert Path(rep["cache_file"]).parent == tmp_path / "cache" and len(rep["seconds"]) > 1
    assert main(["bench", "-m", str(full_bundle), "--calibrate", "--tokens", "4"]) == 2  # a stage-table flag
    assert "--calibrate" in capsys.readouterr().err


def test_bench_synthetic_builds_mlx_models(monkeypatch, tmp_path, capsys):
    """--synthetic full at a shrunken size (the real one is GPU work): the models are MLX's own,
    quantized as -q asks."""
    from funasr_qwen4b.app import bench_mlx
    from funasr_qwen4b.config import AdaptorConfig, EncoderConfig

    monkeypatch.setattr(bench_mlx, "EncoderConfig", lambda: EncoderConfig(output_size=64, attention_heads=4,
                                                                           linear_units=128, num_blocks=2, tp_blocks=1))
    monkeypatch.setattr(bench_mlx, "AdaptorConfig", lambda: AdaptorConfig(**{**ADAPTOR_TINY, "llm_dim": 64}))
    monkeypatch.setattr(bench_mlx, "QWEN3_4B", {**bench_mlx.QWEN3_4B, "hidden_size": 64, "num_hidden_layers": 1,
                                                 "intermediate_size": 128, "num_attention_heads": 4,
                                                 "num_key_value_heads": 2, "head_dim": 16})
    out = tmp_path / "s.json"
    run(capsys, "bench", "--synthetic", "full", "--q-bits", "4", "--clips", "1", "--reps", "1", "--warmup", "0",
        "--tokens", "4", "--json", out)
    rep = json.loads(out.read_text())
    assert rep["settings"]["source"] == "synthetic full" and rep["settings"]["q_bits"] == 4
    assert set(rep["results"]["mlx"]["weights_bytes"]) == {"sensevoice", "adaptor", "llm"}
    assert np.isfinite(rep["results"]["mlx"]["clips"]["1s"]["total_s"]["median"])


def test_serve_flags_reach_the_server_config(full_bundle, monkeypatch, tmp_path, capsys):
    from funasr_qwen4b.app import server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda cfg, **kw: seen.update(cfg=cfg, **kw))
    tpl = tmp_path / "t.txt"
    tpl.write_text(PRESETS["chatml"], encoding="utf-8")
    assert main(["serve", "--model", str(full_bundle), "--batch-wait-ms", "5", "--template-file", str(tpl),
                 "--log-level", "warning", "--port", "8123"]) == 0
    assert seen["cfg"].batch_wait == 0.005 and seen["cfg"].template == PRESETS["chatml"]
    assert (seen["log_level"], seen["port"]) == ("warning", 8123)
    assert main(["serve", "-m", str(full_bundle), "--template", "prefix"]) == 0
    assert seen["cfg"].template == PRESETS["prefix"]


def test_version(capsys):
    from funasr_qwen4b import __version__

    assert main(["--version"]) == 0 and __version__ in capsys.readouterr().out
