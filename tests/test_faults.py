"""Fault injection: every class of fault a user can hit, as the user hits it.

Each case runs the command line (in-process through `main`, or as a process where a
signal is involved) on a broken input and asserts what the user gets: the exit status,
no traceback, one error line whose key words say what is wrong and what to do, no
transcript, nothing left behind, and the user's input files byte for byte as they were.

Classes (docs/reliability.md describes what each guarantees):
1 confident wrong answers, 2 tracebacks, 3 misleading messages, 4 silent acceptance,
5 the server, 6 files, 7 no speech, 8 inputs overwritten, 9 flags, arguments and bounds checked
before any work, 10 the environment (exit 74, not a bug).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from funasr_qwen4b import atomic
from funasr_qwen4b.app.cli import build_parser, main
from funasr_qwen4b.audio import load_audio
from funasr_qwen4b.bundle import Bundle
from funasr_qwen4b.prompt import PRESETS
from funasr_qwen4b.testing import make_adaptor_pt
from tests.conftest import CLIPS, HANG_S, poll_until

ROOT = Path(__file__).resolve().parent.parent
CLIP = CLIPS / "zh_open_hours.wav"
HEADS = ["--heads", "4"]  # the tiny adaptor's


# --- what every case asserts ---------------------------------------------------------

def digest(path: Path) -> str:
    """Every file's name and bytes under `path` (or of `path`), modes included."""
    h = hashlib.sha256()
    for p in sorted([path, *path.rglob("*")] if path.is_dir() else [path]):
        h.update(f"{p.relative_to(path) if p != path else '.'} {p.stat().st_mode:o}".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@dataclass
class Fault:
    argv: list
    code: int = 2  # 2: the input is wrong; 74: the machine failed it; 1: a check failed; 0: done (with a warning)
    words: tuple = ()  # key words of the message, all of them
    out: Path | None = None  # must not exist afterwards, nor any hidden staging beside it
    inputs: tuple = ()  # must be byte for byte as they were


def check(fault: Fault, capsys) -> str:
    """Run the case; return stderr."""
    before = {p: digest(p) for p in fault.inputs}
    capsys.readouterr()
    code = main([str(a) for a in fault.argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert code == fault.code, (code, err)
    errors = [line for line in err.splitlines() if line.startswith("funasr-qwen4b:")]
    if fault.code in (2, 74):
        assert len(errors) == 1, err  # one line says it all
        assert out == "", out  # and no transcript was printed
    for w in fault.words:
        assert w in err, (w, err)
    if fault.out is not None:
        assert not fault.out.exists(), fault.out
        assert not [p.name for p in fault.out.parent.iterdir() if p.name.startswith(f".{fault.out.name}.")]
    for p, d in before.items():
        assert digest(p) == d, f"{p} was modified"
    return err


# --- making broken things ---------------------------------------------------------------

def overwrite(path: Path, offset: int, n: int, seed: int = 0) -> None:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def edit_yaml(path: Path, section: str, key: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    data[section][key] = value
    path.write_text(yaml.safe_dump(data))


def wav(path: Path, seconds: float, fn=None, rate: int = 16000) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    x = fn(t) if fn else 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(str(path), x.astype(np.float32), rate, subtype="PCM_16")
    return path


def manifest(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def adaptor_pt(path: Path, wrap: dict | None = None, edit=None, **dims) -> Path:
    """The tiny adaptor (`dims` changing its shapes), optionally with its weights edited and
    saved as {"model_state_dict": ..., **wrap}."""
    make_adaptor_pt(path, **dims)
    if edit or wrap:
        sd = torch.load(path, weights_only=True)
        if edit:
            edit(sd)
        torch.save({"model_state_dict": sd, **(wrap or {})} if wrap else sd, path)
    return path


@pytest.fixture
def ws(tmp_path, sv_dir, bundle, full_bundle, qwen_dir):
    """Copies of the session's originals and bundles, to break."""
    class W:
        tmp = tmp_path

        @staticmethod
        def copy(src: Path, name: str) -> Path:
            return Path(shutil.copytree(src, tmp_path / name))

        def full(self, name="full"):
            return self.copy(full_bundle, name)

        def ctc(self, name="ctc"):
            return self.copy(bundle, name)

        def sv(self, name="sv"):
            return self.copy(sv_dir, name)

        def qwen(self, name="qwen"):
            return self.copy(qwen_dir, name)

    w = W()
    w.sv_dir, w.qwen_dir, w.bundle, w.full_bundle = sv_dir, qwen_dir, bundle, full_bundle
    return w


# --- class 1: confident wrong answers, once exit 0 -----------------------------------------

def wrong_sensevoice_bytes(w):
    b = w.full()
    f = b / "sensevoice" / "model.safetensors"
    overwrite(f, f.stat().st_size // 2, 2000)
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("sensevoice/model.safetensors", "damaged", "reconvert"),
                 inputs=(b,))


def wrong_llm_bytes(w):
    b = w.full()
    f = b / "llm" / "model.safetensors"
    overwrite(f, f.stat().st_size // 3, 16)
    return Fault(["transcribe", CLIP, "-m", b], words=("llm/model.safetensors", "checksum differs"), inputs=(b,))


def wrong_adaptor_bytes(w):
    b = w.full()
    overwrite(b / "adaptor" / "model.safetensors", 4000, 64)
    return Fault(["transcribe", CLIP, "-m", b], words=("adaptor/model.safetensors", "damaged"), inputs=(b,))


def wrong_nan_adaptor(w):
    pt = adaptor_pt(w.tmp / "a.pt", edit=lambda sd: sd["transformer.layers.1.linear1.weight"].__setitem__((0, 0), float("nan")))
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS],
                 words=("NaN or infinite", "transformer.layers.1.linear1.weight"), out=w.tmp / "out", inputs=(pt,))


def wrong_inf_sensevoice(w):
    src = w.sv()
    sd = torch.load(src / "model.pt", weights_only=True)
    sd["embed.weight"][3, 5] = float("inf")
    torch.save(sd, src / "model.pt")
    return Fault(["convert", "sensevoice", src, "-o", w.tmp / "out"], words=("NaN or infinite", "embed.weight"),
                 out=w.tmp / "out", inputs=(src,))


def wrong_float16_overflow(w):
    pt = adaptor_pt(w.tmp / "a.pt", edit=lambda sd: sd["output_proj.weight"].__setitem__((1, 1), 1e6))
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS, "--dtype", "float16"],
                 words=("output_proj.weight", "overflow float16", "bfloat16"), out=w.tmp / "out", inputs=(pt,))


def wrong_adaptor_narrower_than_encoder(w):
    pt = adaptor_pt(w.tmp / "a.pt", encoder_dim=32)
    return Fault(["convert", "bundle", "--sensevoice", w.sv_dir, "--adaptor", pt, *HEADS, "-o", w.tmp / "out"],
                 words=("do not fit", "32-wide", "gives 64"), out=w.tmp / "out", inputs=(pt, w.sv_dir))


def wrong_adaptor_wider_than_llm(w):
    pt = adaptor_pt(w.tmp / "a.pt", llm_dim=48)
    return Fault(["convert", "bundle", "--sensevoice", w.sv_dir, "--adaptor", pt, *HEADS, "--llm", w.qwen_dir,
                  "-o", w.tmp / "out"], words=("48-wide rows", "hidden size is 64"), out=w.tmp / "out",
                 inputs=(pt, w.sv_dir, w.qwen_dir))


def wrong_adaptor_added_that_does_not_fit(w):
    b, pt = w.ctc(), adaptor_pt(w.tmp / "a.pt", encoder_dim=128)
    return Fault(["convert", "adaptor", pt, "-o", b, *HEADS], words=("do not fit", "128-wide"), inputs=(b, pt))


def wrong_hand_assembled_bundle(w):
    """An adaptor for another LLM copied into a bundle by hand, bundle.json entry and all."""
    from funasr_qwen4b.convert.adaptor import convert_adaptor

    other = convert_adaptor(adaptor_pt(w.tmp / "a.pt", llm_dim=128), w.tmp / "other", nhead=4)
    b = w.full()
    shutil.rmtree(b / "adaptor")
    shutil.copytree(other / "adaptor", b / "adaptor")
    entry = json.loads((other / "bundle.json").read_text())["components"]["adaptor"]
    edit_json(b / "bundle.json", lambda d: d["components"].__setitem__("adaptor", entry))
    return Fault(["transcribe", CLIP, "-m", b], words=("128-wide rows", "hidden size is 64"), inputs=(b,))


def wrong_tokenizer_outside_vocabulary(w):
    q = w.qwen()
    edit_json(q / "config.json", lambda c: c.__setitem__("vocab_size", 1000))
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=("tokenizer.json", "1000 rows"),
                 out=w.tmp / "out", inputs=(q,))


def wrong_component_config_edited(w):
    b = w.full()
    cfg = b / "adaptor" / "config.json"
    cfg.write_text(cfg.read_text().replace('"nhead": 4', '"nhead": 8'))  # same size, other meaning
    return Fault(["transcribe", CLIP, "-m", b], words=("adaptor/config.json", "not the file conversion wrote"),
                 inputs=(b,))


def wrong_ctc_cer_without_tokenizer(w):
    from funasr_qwen4b.convert.sensevoice import convert_sensevoice

    src = w.sv()
    next(src.glob("*.bpe.model")).unlink()
    b = convert_sensevoice(src, w.tmp / "b")
    m = manifest(w.tmp / "m.jsonl", [{"id": "a", "audio": str(CLIP), "text": "开放时间"}])
    return Fault(["cer", "-m", b, "--manifest", m, "--no-progress"], words=("tokenizer.model", "token ids"),
                 inputs=(b, m))


WRONG = [wrong_sensevoice_bytes, wrong_llm_bytes, wrong_adaptor_bytes, wrong_nan_adaptor, wrong_inf_sensevoice,
         wrong_float16_overflow, wrong_adaptor_narrower_than_encoder, wrong_adaptor_wider_than_llm,
         wrong_adaptor_added_that_does_not_fit, wrong_hand_assembled_bundle, wrong_tokenizer_outside_vocabulary,
         wrong_component_config_edited, wrong_ctc_cer_without_tokenizer]


@pytest.mark.parametrize("case", WRONG, ids=lambda f: f.__name__)
def test_1_wrong_answer(case, ws, capsys):
    check(case(ws), capsys)


def test_1_wrong_answer_what_only_verify_sees(ws, capsys):
    """Two 8-byte words swapped keep the sum the check at load compares; `verify`'s sha256 sees it."""
    b = ws.full()
    f = b / "llm" / "model.safetensors"
    data = bytearray(f.read_bytes())
    at = len(data) // 2 // 8 * 8
    data[at:at + 8], data[at + 8:at + 16] = data[at + 8:at + 16], data[at:at + 8]
    assert data[at:at + 8] != data[at + 8:at + 16]
    f.write_bytes(bytes(data))
    assert Bundle.read(b).check_files("llm") == []  # the cheap check cannot see it
    check(Fault(["verify", "-m", b], code=1, words=("is damaged",), inputs=(b,)), capsys)
    assert main(["verify", "-m", str(ws.full("intact"))]) == 0
    assert "llm: OK" in capsys.readouterr().out


# --- class 2: tracebacks, now one line ----------------------------------------------------------

def tb_truncated_safetensors(w):
    b = w.full()
    os.truncate(b / "sensevoice" / "model.safetensors", 500_000)
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("500,000 bytes", "truncated"), inputs=(b,))


def tb_missing_safetensors(w):
    b = w.full()
    (b / "sensevoice" / "model.safetensors").unlink()
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("model.safetensors is missing", "reconvert"))


def tb_header_damaged_safetensors(w):
    b = w.full()
    overwrite(b / "adaptor" / "model.safetensors", 0, 8)
    return Fault(["transcribe", CLIP, "-m", b], words=("adaptor/model.safetensors", "damaged"))


def tb_bundle_json_a_list(w):
    b = w.ctc()
    (b / "bundle.json").write_text("[1, 2]")
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("bundle.json must hold a JSON object",))


def tb_bundle_json_a_list_serve(w):
    b = w.ctc()
    (b / "bundle.json").write_text('"bundle"')
    return Fault(["serve", "-m", b, "--port", "1"], words=("bundle.json must hold a JSON object",))


def _yaml_case(section, key, value, *words):
    def case(w):
        src = w.sv()
        edit_yaml(src / "config.yaml", section, key, value)
        return Fault(["convert", "sensevoice", src, "-o", w.tmp / "out"], words=("config.yaml", *words),
                     out=w.tmp / "out", inputs=(src,))
    case.__name__ = f"tb_config_yaml_{key}_{value}".replace(" ", "")
    return case


def tb_encoder_conf_a_list(w):
    src = w.sv()
    data = yaml.safe_load((src / "config.yaml").read_text())
    data["encoder_conf"] = [1, 2]
    (src / "config.yaml").write_text(yaml.safe_dump(data))
    return Fault(["convert", "sensevoice", src, "-o", w.tmp / "out"], words=("encoder_conf must be a mapping",),
                 out=w.tmp / "out")


def tb_truncated_hf_safetensors(w):
    q = w.qwen()
    shard = sorted(q.glob("*.safetensors"))[-1]
    os.truncate(shard, shard.stat().st_size - 1000)
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=(shard.name, "not a complete safetensors file"),
                 out=w.tmp / "out", inputs=(q,))


def tb_hf_safetensors_header_overwritten(w):
    q = w.qwen()
    shard = sorted(q.glob("*.safetensors"))[0]
    overwrite(shard, 8, 16)
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=(shard.name, "header"), out=w.tmp / "out")


def tb_hf_config_not_json(w):
    q = w.qwen()
    (q / "config.json").write_text('{"model_type": "qwen3",')
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=("config.json is not valid JSON",),
                 out=w.tmp / "out")


def tb_hf_config_hidden_size_text(w):
    q = w.qwen()
    edit_json(q / "config.json", lambda c: c.__setitem__("hidden_size", "64"))
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=("hidden_size must be a positive integer",),
                 out=w.tmp / "out")


def _generation_case(key, value, *words):
    def case(w):
        b = w.full()
        edit_json(b / "bundle.json", lambda d: d["generation"].__setitem__(key, value))
        return Fault(["transcribe", CLIP, "-m", b], words=("bundle.json", *words))
    case.__name__ = f"tb_generation_{key}_{value}"
    return case


def tb_sources_malformed(w):
    b = w.ctc()
    edit_json(b / "bundle.json", lambda d: d["components"]["sensevoice"].__setitem__("sources", ["model.pt"]))
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("components.sensevoice.sources", "reconvert"))


TRACEBACK = [tb_truncated_safetensors, tb_missing_safetensors, tb_header_damaged_safetensors, tb_bundle_json_a_list,
             tb_bundle_json_a_list_serve,
             _yaml_case("encoder_conf", "attention_heads", 0, "attention_heads must be >= 1"),
             _yaml_case("encoder_conf", "output_size", "banana", "output_size must be int", "banana"),
             _yaml_case("encoder_conf", "sanm_shfit", 99, "sanm_shift 99"),
             _yaml_case("encoder_conf", "tp_blocks", -1, "tp_blocks must be >= 0"),
             _yaml_case("frontend_conf", "fs", 8000, "fs must be 16000"),
             _yaml_case("frontend_conf", "lfr_m", 0, "lfr_m must be >= 1"),
             tb_encoder_conf_a_list, tb_truncated_hf_safetensors,
             tb_hf_safetensors_header_overwritten, tb_hf_config_not_json, tb_hf_config_hidden_size_text,
             _generation_case("tokens_per_second", "fast", "generation.tokens_per_second must be float"),
             _generation_case("loop_guard", 3, "generation.loop_guard must be bool"),
             _generation_case("min_tokens", 500, "min_tokens <= max_tokens"),
             tb_sources_malformed]


@pytest.mark.parametrize("case", TRACEBACK, ids=lambda f: f.__name__)
def test_2_traceback(case, ws, capsys):
    check(case(ws), capsys)


def _broken_command(exc: BaseException):
    def fn(args):
        raise exc
    return fn


@pytest.mark.parametrize("debug", ["", "--debug", "env"])
def test_2_traceback_internal_error_is_named_a_bug(debug, monkeypatch, capsys):
    """A bug says it is one, in one line, and how to see the traceback (which --debug shows)."""
    from funasr_qwen4b.app.cli import verify

    monkeypatch.setattr(verify, "cmd_verify", _broken_command(RuntimeError("[rms_norm] weight\nhas a size")))
    if debug == "env":
        monkeypatch.setenv("FUNASR_QWEN4B_DEBUG", "1")
    argv = ["verify", "-m", "nowhere"] + ([debug] if debug == "--debug" else [])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 70
    line = [x for x in err.splitlines() if x.startswith("funasr-qwen4b:")]
    assert len(line) == 1 and "internal error (a bug, not your input): RuntimeError: [rms_norm] weight has a size" \
        in line[0]
    if debug:
        assert "Traceback" in err and "the traceback is above" in line[0]
    else:
        assert "Traceback" not in err and "--debug" in line[0] and "FUNASR_QWEN4B_DEBUG=1" in line[0]


@pytest.mark.parametrize("module, extra", [("torch", "reference"), ("mlx_lm", "mlx"), ("uvicorn", "serve"),
                                           ("sentencepiece", "all")])
def test_2_traceback_missing_optional_dependency_names_the_extra(module, extra, monkeypatch, capsys):
    from funasr_qwen4b.app.cli import verify

    monkeypatch.setattr(verify, "cmd_verify", _broken_command(ModuleNotFoundError(f"No module named '{module}'",
                                                                                  name=module)))
    assert main(["verify", "-m", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"pip install 'funasr-qwen4b-mlx[{extra}]'" in err and module in err


def test_2_traceback_none_as_a_process(ws):
    """The same boundary in a real process."""
    b = ws.full()
    os.truncate(b / "llm" / "model.safetensors", 1000)
    r = subprocess.run([sys.executable, "-m", "funasr_qwen4b.app.cli", "transcribe", str(CLIP), "-m", str(b)],
                       capture_output=True, text=True, timeout=HANG_S, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith("funasr-qwen4b: error: ") and "1,000 bytes" in r.stderr


# --- class 3: misleading messages -------------------------------------------------------------

def msg_bundle_without_llm_dir(w):
    b = w.full()
    shutil.rmtree(b / "llm")
    return Fault(["transcribe", CLIP, "-m", b], words=("llm is missing although", "bundle.json lists it",
                                                        "convert llm"))


def msg_missing_llm_tokenizer(w):
    b = w.full()
    (b / "llm" / "tokenizer.json").unlink()
    return Fault(["transcribe", CLIP, "-m", b], words=("llm/tokenizer.json is missing",))


def msg_random_bytes_pt(w):
    pt = w.tmp / "adaptor.pt"
    pt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS], words=("is not a PyTorch checkpoint",),
                 out=w.tmp / "out", inputs=(pt,))


def msg_truncated_pt(w):
    pt = adaptor_pt(w.tmp / "a.pt")
    os.truncate(pt, 3000)
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS], words=("truncated",), out=w.tmp / "out")


def msg_pickle_that_runs_code(w):
    """A hostile pickle: refused, and never run."""
    pt, marker = w.tmp / "evil.pt", w.tmp / "pwned"
    torch.save({"state_dict": torch.load(adaptor_pt(w.tmp / "a.pt"), weights_only=True),
                "hook": Evil(str(marker))}, pt)
    assert not marker.exists()
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS], words=("needs a full unpickle",),
                 out=w.tmp / "out", inputs=(pt,))


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def msg_directory_as_audio(w):
    """The command line reads the audio inside a directory; one without any is named."""
    (w.tmp / "notes.txt").write_text("not audio")
    return Fault(["transcribe", "--ctc", w.tmp, "-m", w.bundle], words=(str(w.tmp),))


def msg_directory_as_pt(w):
    return Fault(["convert", "adaptor", w.tmp, "-o", w.tmp / "out", *HEADS], words=(str(w.tmp), ".pt"),
                 out=w.tmp / "out")


def msg_bundle_json_invalid(w):
    b = w.ctc()
    (b / "bundle.json").write_text('{"format_version": 2,')
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=(str(b / "bundle.json"), "not valid JSON"))


def msg_component_config_invalid(w):
    b = w.full()
    (b / "adaptor" / "config.json").write_text('{"layout": ')
    return Fault(["transcribe", CLIP, "-m", b], words=("adaptor/config.json", "reconvert"))


def msg_manifest_invalid_json(w):
    m = manifest(w.tmp / "m.jsonl", [{"id": "a", "audio": str(CLIP), "text": "开放"}, '{"id": "b",'])
    return Fault(["cer", "-m", w.bundle, "--manifest", m], words=(f"{m} line 2", "not valid JSON"), inputs=(m,))


def msg_manifest_short_clip(w):
    short = wav(w.tmp / "short.wav", 0.03)
    m = manifest(w.tmp / "m.jsonl", [{"id": "a", "audio": str(CLIP), "text": "开放"},
                                     {"id": "tiny", "audio": "short.wav", "text": "好"}])
    return Fault(["cer", "-m", w.bundle, "--manifest", m], words=("line 2", "id 'tiny'", "30 ms", "100 ms"),
                 inputs=(m, short))


def msg_manifest_unreadable_clip(w):
    (w.tmp / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    m = manifest(w.tmp / "m.jsonl", [{"id": "bad", "audio": "bad.wav", "text": "好"}])
    return Fault(["cer", "-m", w.bundle, "--manifest", m], words=("line 1", "cannot read audio", "id 'bad'"))


def msg_manifest_a_directory(w):
    return Fault(["cer", "-m", w.bundle, "--manifest", w.tmp], words=("is a directory",))


def msg_manifest_not_utf8(w):
    m = w.tmp / "m.jsonl"
    m.write_bytes('{"id": "a", "audio": "a.wav", "text": "开放"}\n'.encode("gb18030"))
    return Fault(["cer", "-m", w.bundle, "--manifest", m], words=("line 1", "not UTF-8"))


def msg_format_version_a_string(w):
    b = w.ctc()
    edit_json(b / "bundle.json", lambda d: d.__setitem__("format_version", "2"))
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("format_version must be the number 2", "'2'",
                                                                "without quotes"))


def msg_format_version_older(w):
    b = w.ctc()
    edit_json(b / "bundle.json", lambda d: d.__setitem__("format_version", 1))
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("format_version 1", "older", "reconvert"))


def msg_format_version_newer(w):
    b = w.ctc()
    edit_json(b / "bundle.json", lambda d: d.__setitem__("format_version", 3))
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("newer", "upgrade"))


def msg_hf_dir_not_qwen3(w):
    q = w.qwen()
    edit_json(q / "config.json", lambda c: c.__setitem__("model_type", "llama"))
    return Fault(["convert", "llm", q, "-o", w.tmp / "out"], words=("model_type is 'llama'", "qwen3"),
                 out=w.tmp / "out")


MESSAGES = [msg_bundle_without_llm_dir, msg_missing_llm_tokenizer, msg_random_bytes_pt, msg_truncated_pt,
            msg_pickle_that_runs_code, msg_directory_as_audio, msg_directory_as_pt,
            msg_bundle_json_invalid, msg_component_config_invalid, msg_manifest_invalid_json, msg_manifest_short_clip,
            msg_manifest_unreadable_clip, msg_manifest_a_directory, msg_manifest_not_utf8,
            msg_format_version_a_string, msg_format_version_older, msg_format_version_newer, msg_hf_dir_not_qwen3]


@pytest.mark.parametrize("case", MESSAGES, ids=lambda f: f.__name__)
def test_3_message(case, ws, capsys):
    check(case(ws), capsys)
    assert not (ws.tmp / "pwned").exists()  # the hostile pickle never ran


# --- class 4: silent acceptance -----------------------------------------------------------------

def silent_embedded_config_more_layers(w):
    pt = adaptor_pt(w.tmp / "a.pt", wrap={"config": {"num_layers": 3, "d_model": 32}, "epoch": 9})
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS],
                 words=("embedded config disagrees", "num_layers=3", "has 2", "the weights hold this"),
                 out=w.tmp / "out", inputs=(pt,))


def silent_embedded_config_other_heads(w):
    pt = adaptor_pt(w.tmp / "a.pt", wrap={"args": {"nhead": 8, "norm_first": False}})
    return Fault(["convert", "adaptor", pt, "-o", w.tmp / "out", *HEADS], words=("nhead=8", "pass --heads"),
                 out=w.tmp / "out")


def silent_unknown_lang(w):
    m = manifest(w.tmp / "m.jsonl", [{"id": "a", "audio": str(CLIP), "text": "开放", "lang": "zh-CN"},
                                     {"id": "b", "audio": str(CLIP), "text": "open", "lang": "english"}])
    return Fault(["cer", "-m", w.bundle, "--manifest", m], words=("line 2", "unknown lang 'english'", "en, ja"))


def silent_bundle_json_unknown_key(w):
    b = w.ctc()
    edit_json(b / "bundle.json", lambda d: d.__setitem__("generaton", {"max_tokens": 10}))
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("unknown keys ['generaton']",))


def silent_component_entry_unknown_key(w):
    b = w.ctc()
    edit_json(b / "bundle.json", lambda d: d["components"]["sensevoice"].__setitem__("dtpye", "float16"))
    return Fault(["transcribe", "--ctc", CLIP, "-m", b], words=("components.sensevoice", "unknown keys ['dtpye']"))


def silent_stray_weights(w):
    b = w.full()
    shutil.copyfile(b / "adaptor" / "model.safetensors", b / "llm" / "extra.safetensors")
    return Fault(["transcribe", CLIP, "-m", b], words=("llm/extra.safetensors was not written by conversion",))


def silent_prompt_default_unknown(w):
    b = w.full()
    edit_json(b / "bundle.json", lambda d: d["prompt"].__setitem__("default", "chatlm"))
    return Fault(["transcribe", CLIP, "-m", b], words=("prompt.default 'chatlm' names no preset",))


def silent_preset_without_audio_slot(w):
    b = w.full()
    edit_json(b / "bundle.json", lambda d: d["prompt"]["presets"].__setitem__("mine", "transcribe this:"))
    return Fault(["transcribe", CLIP, "-m", b], words=("prompt.presets", "exactly one {audio} slot"))


def silent_keep_query_frames_text(w):
    b = w.full()
    edit_json(b / "bundle.json", lambda d: d["components"]["adaptor"].__setitem__("keep_query_frames", "yes"))
    return Fault(["transcribe", CLIP, "-m", b], words=("keep_query_frames must be true or false",))


SILENT = [silent_embedded_config_more_layers, silent_embedded_config_other_heads, silent_unknown_lang,
          silent_bundle_json_unknown_key, silent_component_entry_unknown_key, silent_stray_weights,
          silent_prompt_default_unknown, silent_preset_without_audio_slot, silent_keep_query_frames_text]


@pytest.mark.parametrize("case", SILENT, ids=lambda f: f.__name__)
def test_4_silent(case, ws, capsys):
    check(case(ws), capsys)


@pytest.mark.parametrize("how", ["cut", "header_promises_more"])
def test_4_silent_truncated_wav_is_transcribed_with_a_warning(how, ws, capsys):
    """Warned, not refused: a cut recording still holds valid audio; the user is told how much."""
    src = CLIP.read_bytes()
    f = ws.tmp / "cut.wav"
    if how == "cut":
        f.write_bytes(src[: len(src) // 2])
    else:  # the data chunk's size field says three times what follows it
        at = src.index(b"data") + 4
        promised = int.from_bytes(src[at:at + 4], "little") * 3
        f.write_bytes(src[:at] + promised.to_bytes(4, "little") + src[at + 4:])
    err = check(Fault(["transcribe", "--ctc", f, "-m", ws.bundle, "--json"], code=0,
                      words=(f"audio {f} is truncated", "header promises"), inputs=(f,)), capsys)
    assert err.count("is truncated") == 1  # once, although the file is read twice


def test_4_silent_sensevoice_without_bpe_model_warns(ws, capsys):
    src = ws.sv()
    next(src.glob("*.bpe.model")).unlink()
    check(Fault(["convert", "sensevoice", src, "-o", ws.tmp / "b"], code=0,
                words=("no sentencepiece .bpe.model", "token ids, not text"), inputs=(src,)), capsys)


# --- class 5: the server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live():
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from tests.test_server import LiveServer, _error

    return LiveServer, _error, httpx


def _wav_bytes(seconds: float) -> bytes:
    import io

    buf = io.BytesIO()
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("seconds, stream", [(0.01, "false"), (0.06, "false"), (0.01, "true")])
def test_5_server_too_short_upload_is_400(seconds, stream, live, bundle):
    LiveServer, _error, _ = live
    with LiveServer(bundle) as s:
        err = _error(s.post(audio=_wav_bytes(seconds), stream=stream), 400, "audio_too_short", "file")
        assert f"{seconds * 1000:.0f} ms long" in err["message"] and "100 ms" in err["message"]


def test_5_server_truncated_upload_is_transcribed_and_logged(live, bundle, caplog):
    LiveServer, _, _ = live
    data = CLIP.read_bytes()
    with LiveServer(bundle) as s, caplog.at_level("WARNING", logger="funasr_qwen4b.audio"):
        r = s.post(audio=data[: len(data) * 2 // 3], name="cut.wav")
        assert r.status_code == 200 and r.json()["text"]
    assert any("cut.wav is truncated" in m for m in caplog.messages), caplog.messages


def test_5_server_bundle_gone_after_start_is_503(live, bundle, tmp_path):
    LiveServer, _error, httpx = live
    b = Path(shutil.copytree(bundle, tmp_path / "b"))
    with LiveServer(b) as s:
        shutil.rmtree(b)
        assert "is not a bundle" in _error(s.post(audio=CLIP), 503, "model_unavailable")["message"]
        assert httpx.get(s.url + "/health", timeout=HANG_S).status_code == 200


def _bundle_json_list(b):
    (b / "bundle.json").write_text("[]")


def _generation_text(b):
    edit_json(b / "bundle.json", lambda d: d["generation"].__setitem__("max_tokens", "many"))


def _adaptor_config_edited(b):
    cfg = b / "adaptor" / "config.json"
    cfg.write_text(cfg.read_text().replace('"nhead": 4', '"nhead": 8'))


def _no_ctc_tokenizer(b):
    (b / "sensevoice" / "tokenizer.model").unlink()
    edit_json(b / "bundle.json", lambda d: d["components"]["sensevoice"]["files"].pop("tokenizer.model"))


@pytest.mark.parametrize("breaks, llm, ctc", [  # what each model answers: 503 with these words, or None: 200
    (_bundle_json_list, "must hold a JSON object", "must hold a JSON object"),
    (_generation_text, "generation.max_tokens must be int", "generation.max_tokens must be int"),
    (_adaptor_config_edited, "adaptor/config.json is not the file conversion wrote", None),
    (_no_ctc_tokenizer, None, "no tokenizer.model"),
], ids=["bundle_json_a_list", "generation_setting_text", "adaptor_config_edited", "no_ctc_tokenizer"])
def test_5_server_bad_bundle_is_503(breaks, llm, ctc, live, full_bundle, tmp_path):
    """The model's fault, not the request's: 503, never 500; the other model and the server keep answering."""
    LiveServer, _error, httpx = live
    b = Path(shutil.copytree(full_bundle, tmp_path / "b"))
    breaks(b)
    with LiveServer(b) as s:
        for model, words in (("funasr-qwen4b", llm), ("sensevoice-small", ctc)):
            r = s.post(audio=CLIP, model=model)
            if words is None:
                assert r.status_code == 200 and r.json()["text"], r.text
            else:
                assert words in _error(r, 503, "model_unavailable", "model")["message"]
        assert httpx.get(s.url + "/health", timeout=HANG_S).status_code == 200


def _sent(url: str, audio: bytes, httpx) -> socket.socket:
    """A client that sent a whole transcription request and waits for the answer on an open socket
    (closing the socket is giving up: a client's timeout, a closed tab)."""
    req = httpx.Request("POST", url + "/v1/audio/transcriptions", files={"file": ("a.wav", audio)})
    head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    sock = socket.create_connection((req.url.host, req.url.port))
    sock.sendall(f"POST {req.url.raw_path.decode()} HTTP/1.1\r\n{head}\r\n".encode() + req.read())
    return sock


@pytest.mark.parametrize("batch_size", [1, 8])
def test_5_server_clients_that_gave_up_are_not_decoded(live, full_bundle, batch_size):
    """Non-streaming clients that give up (close the connection) while their request is decoded or
    queued: the running job stops at its next token, and the next request is answered with nothing
    in front of it. One at a time, the queued one never starts; in a batch, both rows stop early."""
    from dataclasses import replace

    from tests.test_server import HeldDecoding

    LiveServer, _error, httpx = live
    with LiveServer(full_bundle, idle_unload=0, batch_size=batch_size) as s:
        slot = s.manager.slots["funasr-qwen4b"]
        assert httpx.post(f"{s.url}/v1/models/funasr-qwen4b/load", timeout=HANG_S).json()["loaded"]
        # to the token cap, one token a pass; held while the clients that give up are there
        held = HeldDecoding(slot.model.pipeline, lambda d: replace(d, loop_guard=False, speculate="off"))
        produced = held.produced
        assert s.post(audio=CLIP).status_code == 200
        n_full = len(produced)
        assert n_full >= 20
        produced.clear()
        cancelled, requests = slot.stats["cancelled"], slot.stats["requests"]

        held.on.set()
        clients = [_sent(s.url, CLIP.read_bytes(), httpx) for _ in range(2)]
        # both requests are at the model, and the first one's decoding has begun (held at a token)
        assert poll_until(lambda: slot.queued == 2 and produced)
        for c in clients:
            c.close()
        held.gone.set()
        assert s.wait(lambda: slot.queued == 0)
        assert slot.stats["cancelled"] == cancelled + 2 and slot.stats["requests"] == requests + 2
        # stopped early: one alone (the other never started), or both rows of one batch (or, had
        # they arrived too far apart to batch, each alone)
        assert len(produced) < n_full / 2, (len(produced), n_full)
        held.on.clear()
        produced.clear()
        # nothing in front of it: nothing queued, and no token decoded but its own
        assert s.post(audio=CLIP).status_code == 200 and len(produced) == n_full
        assert slot.stats["requests"] == requests + 3 and slot.queued == 0


# --- class 6: files -----------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_6_files_bundle_and_reports_get_the_users_umask(umask, sv_dir, tmp_path, capsys):
    from funasr_qwen4b.atomic import write_json_atomic

    old = os.umask(umask)
    try:
        pt = adaptor_pt(tmp_path / "a.pt")
        assert main(["convert", "bundle", "--sensevoice", str(sv_dir), "--adaptor", str(pt), *HEADS,
                     "-o", str(tmp_path / "b")]) == 0
        write_json_atomic(tmp_path / "report.json", {"cer": 0.1})
    finally:
        os.umask(old)
    b = tmp_path / "b"
    for p in [b, *b.rglob("*"), tmp_path / "report.json"]:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b", "report.json"]


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# The command line in a process of its own (its work in a worker thread, as the console script
# runs it), held in the middle of `convert bundle` (SenseVoice and the adaptor written into the
# hidden staging, the LLM's weights converted beside them, nothing in place yet) as a long
# computation holds it, never returning to Python: it says so by creating the file argv[1].
_PAUSED_CONVERT = """
import pathlib, sys, threading
import funasr_qwen4b.convert.llm as llm
from funasr_qwen4b.app.cli import main

mid, check = pathlib.Path(sys.argv.pop(1)), llm.check_finite_mlx

def paused(*args, **kwargs):
    check(*args, **kwargs)
    mid.touch()
    threading.Event().wait()

llm.check_finite_mlx = paused
sys.exit(main())
"""

STOPS = [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")]


def _stoppable_process(argv: list, **kwargs) -> subprocess.Popen:
    """The command line as a process whose stderr the test reads, with Python's own Ctrl-C handler
    (a job started in the background inherits SIGINT ignored, and Python then installs none)."""
    return subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def test_6_files_sigterm_during_convert_leaves_nothing(sv_dir, qwen_dir, tmp_path):
    """A process stopped by SIGTERM mid-conversion (a service manager, a CI timeout); Ctrl-C: below."""
    sig, code, said = STOPS[0]
    pt = adaptor_pt(tmp_path / "a.pt")
    out, mid = tmp_path / "out", tmp_path / "mid-conversion"
    before = [digest(p) for p in (sv_dir, qwen_dir, pt)]
    proc = _stoppable_process([sys.executable, "-c", _PAUSED_CONVERT, str(mid), "convert", "bundle", "--sensevoice",
                               str(sv_dir), "--adaptor", str(pt), *HEADS, "--llm", str(qwen_dir), "-o", str(out)])
    poll_until(lambda: mid.exists() or proc.poll() is not None)
    assert proc.poll() is None and mid.exists(), proc.stderr.read()
    assert _leftovers(tmp_path, "out") and not out.exists()  # caught mid-conversion
    proc.send_signal(sig)
    err = proc.communicate(timeout=HANG_S)[1]
    assert proc.returncode == code, err
    assert said in err and "Traceback" not in err
    assert not out.exists() and _leftovers(tmp_path, "out") == []
    assert [digest(p) for p in (sv_dir, qwen_dir, pt)] == before


@pytest.mark.parametrize("sig, code, said", STOPS, ids=["SIGTERM", "SIGINT"])
def test_6_files_signal_during_a_long_decode_ends_it(sig, code, said, demo_bundle, tmp_path):
    """A 3-minute clip decoded whole (--max-seconds 0, --vad off): the encoder and the LLM run for minutes inside
    MLX without returning to Python, and the signal still ends the run, with nothing written. The
    test waits for the line that says decoding began (-v), never for a time."""
    x, rate = sf.read(ROOT / "datasets" / "zh_synth" / "zh_long_pauses.wav", dtype="float32")
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(x, 3), rate, subtype="PCM_16")
    out = tmp_path / "out"
    proc = _stoppable_process([sys.executable, "-m", "funasr_qwen4b.app.cli", "-v", "transcribe", str(long), "-m",
                               str(demo_bundle), "--max-seconds", "0", "--vad", "off", "--output-dir", str(out)],
                              stdout=subprocess.PIPE)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("decoding 1 piece(s), 188.7 s of audio"):
            break
    assert proc.poll() is None, "".join(seen)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == code, "".join(seen) + err
    assert err.strip().splitlines()[-1] == f"funasr-qwen4b: {said}" and "Traceback" not in err
    assert stdout == "" and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]  # no temporary file either


def test_6_files_ctrl_c_during_convert_leaves_nothing(sv_dir, qwen_dir, tmp_path, capsys, monkeypatch):
    """Ctrl-C (a real SIGINT) in the middle of `convert bundle`: at the same point as the SIGTERM case."""
    import funasr_qwen4b.convert.llm as llm

    pt, out = adaptor_pt(tmp_path / "a.pt"), tmp_path / "out"
    check, caught = llm.check_finite_mlx, []

    def interrupt(*args, **kwargs):
        check(*args, **kwargs)
        caught.append(bool(_leftovers(tmp_path, "out")) and not out.exists())
        os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt comes here, before the next line
        poll_until(lambda: False)  # not reached (a hang guard, should it be)

    monkeypatch.setattr(llm, "check_finite_mlx", interrupt)
    # Python's own Ctrl-C handler, as in a terminal (a job a shell starts in the background inherits
    # SIGINT ignored, and Python then installs none)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(["convert", "bundle", "--sensevoice", str(sv_dir), "--adaptor", str(pt), *HEADS,
                     "--llm", str(qwen_dir), "-o", str(out)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    assert "interrupted" in capsys.readouterr().err
    assert caught == [True]  # caught mid-conversion
    assert not out.exists() and _leftovers(tmp_path, "out") == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_6_files_stale_staging_is_cleaned_by_the_next_run(sv_dir, tmp_path, capsys):
    """What SIGKILL left (a dead process's staging and temporary files) goes; a live one's stays."""
    host, dead = atomic._HOST, _dead_pid()
    stale = [tmp_path / f".out.staging-{host}-{dead}-0123abcd", tmp_path / f".out.tmp-{host}-{dead}-89abcdef.json"]
    stale[0].mkdir()
    (stale[0] / "half.safetensors").write_bytes(b"x" * 100)
    stale[1].write_text("{")
    alive = [tmp_path / f".out.staging-{host}-{os.getppid()}-0123abcd",  # a running process's
             tmp_path / f".out.staging-otherhost-{dead}-0123abcd"]  # another machine's (a shared disk)
    for p in alive:
        p.mkdir()
    assert main(["convert", "sensevoice", str(sv_dir), "-o", str(tmp_path / "out")]) == 0
    assert "left by an interrupted run" in capsys.readouterr().err
    assert not any(p.exists() for p in stale) and all(p.exists() for p in alive)
    assert Bundle.read(tmp_path / "out").has("sensevoice")


def test_6_files_failed_conversion_into_a_bundle_leaves_it_as_it_was(ws, capsys):
    b = ws.full()
    pt = adaptor_pt(ws.tmp / "a.pt", edit=lambda sd: sd["norm.bias"].__setitem__(0, float("nan")))
    check(Fault(["convert", "adaptor", pt, "-o", b, *HEADS, "--force"], words=("NaN",), inputs=(b, pt)), capsys)
    assert _leftovers(b, b.name) == [] and sorted(p.name for p in b.iterdir() if p.name.startswith("."))  == []


def test_6_files_replacing_a_bundle_keeps_the_old_one_when_the_last_step_fails(ws, monkeypatch, capsys):
    import funasr_qwen4b.atomic as fb  # swap_in: where a finished bundle is renamed into place

    b = ws.full()
    rename = os.rename

    def fail_into_place(src, dst):
        if Path(dst) == b and Path(src).name == "bundle":
            raise OSError(28, "No space left on device", str(dst))
        rename(src, dst)

    monkeypatch.setattr(fb.os, "rename", fail_into_place)
    check(Fault(["convert", "bundle", "--sensevoice", ws.sv_dir, "--adaptor", adaptor_pt(ws.tmp / "a.pt"), *HEADS,
                 "-o", b, "--force"], code=74, words=("no space left on the device", str(b), "GB free there"),
                inputs=(b,)), capsys)
    assert _leftovers(ws.tmp, b.name) == []


def test_6_files_disk_full_mid_conversion_leaves_nothing(ws, monkeypatch, capsys):
    import funasr_qwen4b.convert.sensevoice as cs

    def full_disk(tensors, path, metadata=None):
        Path(path).write_bytes(b"\0" * 1000)  # part of it got written
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(cs, "save_file", full_disk)
    check(Fault(["convert", "sensevoice", ws.sv_dir, "-o", ws.tmp / "out"], code=74,
                words=("no space left on the device writing", "model.safetensors", "free some space"),
                out=ws.tmp / "out", inputs=(ws.sv_dir,)), capsys)


def test_6_files_a_directory_that_is_not_a_bundle_is_not_written_into(ws, capsys):
    d = ws.tmp / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"\xff\xd8")
    check(Fault(["convert", "sensevoice", ws.sv_dir, "-o", d], words=("not a bundle", "choose another -o"),
                inputs=(d,)), capsys)


# --- class 7: no speech -------------------------------------------------------------------------

@pytest.mark.parametrize("name, seconds, fn, reason", [
    ("silence", 4.0, lambda t: np.zeros_like(t), "silence"),
    ("white_noise_clipped", 3.0, lambda t: np.clip(np.random.default_rng(0).normal(0, 0.8, t.size), -1, 1), "noise"),
    ("sub_word_30ms", 0.03, None, "shorter than 100 ms"),
])
def test_7_no_speech_is_empty_text_with_the_reason(name, seconds, fn, reason, bundle, tmp_path, capsys):
    f = wav(tmp_path / f"{name}.wav", seconds, fn)
    assert main(["transcribe", "--ctc", str(f), "-m", str(bundle), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["text"] == "" and reason in r["no_speech"]


def test_7_no_speech_speech_is_still_transcribed(bundle, capsys):
    assert main(["transcribe", "--ctc", str(CLIP), "-m", str(bundle), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["text"] and "no_speech" not in r


# --- class 8: inputs are only ever read ----------------------------------------------------------

def _cer_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A two-line manifest of committed clips, copied here (so that a write would show)."""
    audio = shutil.copy(CLIPS / "zh_open_hours.wav", tmp_path / "a.wav")
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"id": f"u{i}", "audio": "a.wav", "text": "开放时间"}, ensure_ascii=False) + "\n"
                         for i in range(2)), encoding="utf-8")
    return m, Path(audio)


@pytest.mark.parametrize("report", ["manifest", "audio", "symlink", "hardlink", "partial", "bundle"])
def test_8_inputs_cer_report_never_replaces_an_input(report, bundle, tmp_path, capsys):
    """--report that names the manifest, an audio file, a link to either, or a file of the bundle (or
    whose FILE.partial.jsonl is the manifest) is refused before anything is written."""
    m, audio = _cer_inputs(tmp_path)
    target = {"manifest": m, "audio": audio, "bundle": bundle / "bundle.json"}.get(report)
    if report == "symlink":
        target = tmp_path / "link.json"
        target.symlink_to(m)
    elif report == "hardlink":
        target = tmp_path / "hard.json"
        os.link(m, target)
    elif report == "partial":  # FILE.json's partial file is FILE.partial.jsonl
        shutil.copy(m, tmp_path / "r.partial.jsonl")
        m = tmp_path / "r.partial.jsonl"
        target = tmp_path / "r.json"
    listing = sorted(p.name for p in tmp_path.iterdir())
    err = check(Fault(["cer", "-m", bundle, "--manifest", m, "--report", target], words=("--report", "input"),
                      inputs=(m, audio, bundle)), capsys)
    assert str(m if report == "partial" else target) in err  # the file it would have written
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written beside them


def test_8_inputs_cer_merge_report_never_replaces_a_shard(bundle, tmp_path, capsys):
    m, audio = _cer_inputs(tmp_path)
    report = tmp_path / "r.json"
    for i in (1, 2):
        assert main(["cer", "-m", str(bundle), "--manifest", str(m), "--report", str(report), "--shard", f"{i}/2",
                     "--no-progress"]) == 0
    parts = [tmp_path / f"r.shard{i}-of-2.partial.jsonl" for i in (1, 2)]
    for target in (parts[0], m):  # a shard it merges, the manifest it scores
        check(Fault(["cer-merge", *parts, "--report", target], words=("--report", "input"), inputs=(*parts, m)),
              capsys)
    assert main(["cer-merge", *map(str, parts), "--report", str(tmp_path / "merged.json")]) == 0


def test_8_inputs_transcribe_output_files_never_replace_an_input(bundle, tmp_path, capsys):
    """An input whose name is an output's (notes.txt transcribed to --output-format txt in its own
    folder: WAV bytes under a .txt name, as a user may keep them) is refused before anything runs."""
    src = tmp_path / "notes.txt"
    shutil.copy(CLIPS / "zh_open_hours.wav", src)
    check(Fault(["transcribe", src, "-m", bundle, "--ctc", "--output-dir", tmp_path, "--output-format", "txt"],
                words=("--output-dir", "input", str(src)), inputs=(src,)), capsys)
    assert main(["transcribe", str(src), "-m", str(bundle), "--ctc", "--output-dir", str(tmp_path / "out"),
                 "--output-format", "txt"]) == 0
    assert (tmp_path / "out" / "notes.txt").read_text(encoding="utf-8").strip()


# --- class 9: flags and API arguments, checked before any work -----------------------------------

def refused(argv: list, capsys, *words: str) -> str:
    """argparse's refusal: exit 2, the flag and what it takes on stderr, nothing on stdout."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def numeric_flags() -> list[tuple[list[str], str]]:
    """([subcommand...], flag, type) for every option that takes a number (and is not one of a few
    choices), in every (sub)command."""
    from tests.test_flags import subcommand_options

    parser, found = build_parser(), []
    for cmd, groups in subcommand_options().items():
        sub = parser
        for word in cmd.split():
            sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
        for a in sub._actions:
            if a.option_strings and a.type is not None and a.choices is None:  # choices: checked by argparse
                found.append((cmd.split(), a.option_strings[-1], a.type))
    return found


def test_9_every_numeric_flag_is_checked_at_parse_time():
    """No option takes a bare int or float (which take nan, inf, and any sign): each goes through a
    type of cli/args.py that names its range."""
    bare = [f"{' '.join(cmd)} {flag}" for cmd, flag, t in numeric_flags() if t in (int, float)]
    assert bare == [], bare


@pytest.mark.parametrize("cmd, flag", [(c, f) for c, f, t in numeric_flags() if t not in (int, float)],
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_9_numeric_flag_refuses_nonsense(cmd, flag, value, capsys):
    refused([*cmd, flag, value], capsys, f"argument {flag}", repr(value))


@pytest.mark.parametrize("argv, words", [
    (["transcribe", "--max-seconds", "0.1"], ("--max-seconds", "at least 0.2", "0 (never split)")),
    (["transcribe", "--max-seconds", "0.19"], ("--max-seconds", "at least 0.2")),
    (["transcribe", "--batch-size", "0"], ("--batch-size", "at least 1")),
    (["transcribe", "--repetition-penalty", "0"], ("--repetition-penalty", "above 0")),
    (["serve", "--max-upload-mb", "nan"], ("--max-upload-mb", "0 (no limit)")),
    (["serve", "--max-audio-seconds", "nan"], ("--max-audio-seconds", "0 (no limit)")),
    (["serve", "--port", "70000"], ("--port", "from 1 to 65535")),
    (["bench", "--clips", "5,700"], ("--clips", "from 1 to 600")),
    (["bench", "--batch-sizes", "1,0"], ("--batch-sizes", "integers of at least 1")),
    (["bench", "--draft-rate", "1.5"], ("--draft-rate", "from 0 to 1")),
    (["cer", "--shard", "3/2"], ("--shard", "I/N", "'3/2'")),
    (["convert", "adaptor", "--eps", "0"], ("--eps", "above 0")),
    (["transcribe", "--max-audio-seconds", "0"], ("--max-audio-seconds", "above 0")),
    (["cer", "--max-audio-seconds", "0"], ("--max-audio-seconds", "above 0")),
])
def test_9_flag_out_of_range(argv, words, capsys):
    refused(argv, capsys, *words)


def test_9_max_seconds_minimum_is_the_splitters():
    """0.2 s is the shortest span split_points can cut (its 100 ms window in the span's last half);
    below it the splitter cannot work, which is why --max-seconds refuses it."""
    from funasr_qwen4b.app.checks import MIN_SPLIT_SECONDS
    from funasr_qwen4b.audio import split_points

    x = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    cuts = split_points(x, MIN_SPLIT_SECONDS)
    assert cuts and max(np.diff([0, *cuts, x.size])[:-1]) <= MIN_SPLIT_SECONDS * 16000
    with pytest.raises(ValueError, match="window shape"):
        split_points(x, MIN_SPLIT_SECONDS - 0.001)


@pytest.mark.parametrize("argv, words", [
    (["transcribe", CLIP, "-m", "b", "--template", "raw", "--template-file", "t.txt"],
     ("--template-file", "not allowed with argument --template")),
    (["transcribe", CLIP, "-m", "b", "--no-query", "--language", "en"], ("--no-query", "--language")),
    (["cer", "-m", "b", "--manifest", "m", "--no-query", "--textnorm", "withitn"], ("--no-query", "--textnorm")),
    (["transcribe", CLIP, "-m", "b", "--ctc", "--translate", "--speculate", "off"],
     ("--translate, --speculate", "--ctc")),
    (["transcribe", CLIP, "-m", "b", "--stream", "--json"], ("--stream", "--json")),
    (["transcribe", CLIP, "-m", "b", "--stream", "--batch-size", "2"], ("--stream", "--batch-size 1")),
    (["convert", "llm", "q", "-o", "o", "-q", "8", "--embeddings-8bit"], ("--embeddings-8bit", "-q 4")),
    (["cer", "-m", "b", "--manifest", "m", "--shard", "1/2"], ("--shard 1/2", "--report")),
    (["bench", "-m", "b", "--synthetic", "full"], ("either -m BUNDLE or --synthetic",)),
    (["bench", "-m", "b", "-q", "4"], ("-q/--q-bits", "--synthetic")),
    (["bench", "--synthetic", "full", "--batch-sizes", "1,2", "--clips", "5"], ("--clips", "--batch-sizes")),
])
def test_9_conflicting_flags_are_refused_by_name(argv, words, capsys):
    err = refused(argv, capsys, *words)
    assert f"funasr-qwen4b {argv[0]}" in err  # the subcommand's own usage and error line


def test_9_api_arguments_are_checked_by_name(full_bundle, bundle):
    from funasr_qwen4b import Transcriber
    from funasr_qwen4b.app.server import ServerConfig

    with pytest.raises(ValueError, match=r"template must be a preset name \(chatml, .*raw.*\).*'nope'"):
        Transcriber.load(full_bundle, template="nope")
    assert Transcriber.load(full_bundle, template="chatml").pipeline.setup.prompt \
        == Transcriber.load(full_bundle, template=PRESETS["chatml"]).pipeline.setup.prompt
    for value in (0.1, float("nan"), float("inf"), -1, "30"):
        with pytest.raises(ValueError, match="max_seconds must be a finite number of at least 0.2"):
            Transcriber.load(bundle, ctc_only=True, max_seconds=value)
    with pytest.raises(ValueError, match="template sets how the LLM decodes; ctc_only=True"):
        Transcriber.load(bundle, ctc_only=True, template="raw")
    t = Transcriber.load(bundle, ctc_only=True)
    for call, method in ((lambda: list(t.transcribe_files(str(CLIP))), "transcribe_files"),
                         (lambda: t.transcribe_batch(CLIP), "transcribe_batch"),
                         (lambda: list(t.transcribe_each(CLIP.read_bytes())), "transcribe_each")):
        with pytest.raises(TypeError, match=f"{method} takes a list of inputs, got one .*pass \\[audio\\]"):
            call()
    x = np.zeros(16000, np.float32)
    for rate, words in ((float("nan"), "finite number"), (16000.5, "whole number"), (True, "finite number"),
                        ("16000", "finite number")):
        with pytest.raises(ValueError, match=f"sample_rate must be a {words}"):
            t.transcribe(x, sample_rate=rate)
    assert t.transcribe(x, sample_rate=16000.0)["no_speech"]  # a whole number of Hz, written as a float
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        t.transcribe_batch([x], sample_rate=16000, batch_size=0)
    for field, value in (("max_audio_seconds", float("nan")), ("max_upload_mb", -1), ("batch_size", 0),
                         ("max_seconds", 0.1), ("default_model", "whisper-1")):
        with pytest.raises(ValueError, match=field):
            ServerConfig("b", **{field: value})


def test_8_inputs_parity_report_and_dump_never_replace_an_input(bundle, tmp_path, capsys):
    """--report naming the audio (by a link), --dump whose DIR/mlx.npz is a file of the bundle (a hard
    link to it): refused before anything runs."""
    audio = Path(shutil.copy(CLIP, tmp_path / "a.wav"))
    (tmp_path / "report.json").symlink_to(audio)
    dump = tmp_path / "taps"
    dump.mkdir()
    os.link(bundle / "bundle.json", dump / "mlx.npz")
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    for flags, hit in ((["--report", tmp_path / "report.json"], audio), (["--dump", dump], bundle / "bundle.json")):
        err = check(Fault(["parity", "-m", bundle, "--audio", audio, *flags], words=("--report/--dump", "input"),
                          inputs=(audio, bundle)), capsys)
        assert str(hit) in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing


def test_8_inputs_bench_json_never_replaces_a_bundle_file(bundle, capsys):
    check(Fault(["bench", "-m", bundle, "--json", bundle / "sensevoice" / "config.json"],
                words=("--json", "input", "config.json"), inputs=(bundle,)), capsys)


def test_8_inputs_convert_never_writes_over_its_sources(ws, capsys):
    """-o that is a source, lies inside one (through a link), or whose replacement (--force) holds one."""
    src, pt = ws.sv(), adaptor_pt(ws.tmp / "a.pt")
    (ws.tmp / "link").symlink_to(src)
    cases = [(["convert", "sensevoice", src, "-o", src], "is the source"),
             (["convert", "sensevoice", src, "-o", ws.tmp / "link" / "bundle"], "lies inside the source"),
             (["convert", "adaptor", pt, "-o", pt, *HEADS], "is the source"),
             (["convert", "bundle", "--sensevoice", src, "--adaptor", pt, *HEADS, "-o", ws.tmp / "link" / "b"],
              "lies inside the source")]
    for argv, words in cases:
        check(Fault(argv, words=("-o", words, "sources are only read"), inputs=(src, pt)), capsys)
    # a bundle that holds its own originals: converting into it replaces the component (or, for
    # `convert bundle --force`, the whole bundle) and would take them with it
    b = ws.ctc()
    inside = Path(shutil.copytree(src, b / "sensevoice" / "original"))
    bundle_json = (b / "bundle.json").read_bytes()
    for argv in (["convert", "sensevoice", inside, "-o", b, "--force"],
                 ["convert", "bundle", "--sensevoice", inside, "-o", b, "--force"]):
        check(Fault(argv, words=("would replace", str(inside), "sources are only read"), inputs=(inside,)), capsys)
    assert (b / "bundle.json").read_bytes() == bundle_json
    # beside the bundle, not replaced by converting the adaptor: converted as asked
    assert main(["convert", "adaptor", str(pt), "-o", str(b), *HEADS]) == 0 and inside.is_dir()


def test_9_audio_longer_than_the_bound_is_refused(bundle, tmp_path, capsys):
    """--max-audio-seconds (and max_audio_seconds= in Python): a 4.1 s clip over a 3 s bound is refused
    from its header, naming the file and the flag; the default bound (4 h) takes it."""
    check(Fault(["transcribe", "--ctc", CLIP, "-m", bundle, "--max-audio-seconds", "3"],
                words=(str(CLIP), "4.1 s long", "bound of 3 s", "--max-audio-seconds")), capsys)
    m = manifest(tmp_path / "m.jsonl", [{"id": "long", "audio": str(CLIP), "text": "开放时间"}])
    check(Fault(["cer", "-m", bundle, "--manifest", m, "--no-progress", "--max-audio-seconds", "3"],
                words=(f"{m} line 1", "id 'long'", "bound of 3 s"), inputs=(m,)), capsys)
    assert main(["cer", "-m", str(bundle), "--manifest", str(m), "--no-progress", "--max-audio-seconds", "5"]) == 0

    from funasr_qwen4b import Transcriber
    from funasr_qwen4b.audio import AudioError

    t = Transcriber.load(bundle, ctc_only=True, max_audio_seconds=3)
    for audio in (CLIP, CLIP.read_bytes(), load_audio(CLIP)):
        with pytest.raises(AudioError, match="bound of 3 s"):
            t.transcribe(audio, 16000 if isinstance(audio, np.ndarray) else None)
    want = Transcriber.load(bundle, ctc_only=True).transcribe(CLIP)["text"]
    assert t.transcribe(CLIP, max_audio_seconds=None)["text"] == want  # a call's own bound: none
    assert t.transcribe_batch([CLIP], max_audio_seconds=5)[0]["text"] == want
    for value in (0, float("nan"), float("inf"), "4"):
        with pytest.raises(ValueError, match="max_audio_seconds must be a finite number above 0"):
            Transcriber.load(bundle, ctc_only=True, max_audio_seconds=value)
        with pytest.raises(ValueError, match="max_audio_seconds must be a finite number above 0"):
            t.transcribe(CLIP, max_audio_seconds=value)


# --- class 10: the environment fails, and it is said so (exit 74), never called a bug ------------

def test_10_environment_mlx_cannot_write_is_a_full_disk(ws, monkeypatch, capsys):
    """MLX's own save fails on a full disk with "Unable to write N bytes": said as a full disk, with
    the place and its free space; nothing left behind."""
    import mlx.core as mx

    def full(path, arrays, metadata=None):
        Path(path).write_bytes(b"\0" * 100)
        raise RuntimeError("[save_safetensors] Unable to write 4096 bytes.")

    monkeypatch.setattr(mx, "save_safetensors", full)
    check(Fault(["convert", "llm", ws.qwen_dir, "-o", ws.tmp / "out"], code=74,
                words=("could not write 4,096 bytes under", str(ws.tmp / "out"), "GB free there", "disk is full"),
                out=ws.tmp / "out", inputs=(ws.qwen_dir,)), capsys)


@pytest.mark.parametrize("error, words", [
    (errno.EACCES, ("permission denied", "check who owns it")),
    (errno.EROFS, ("is on a read-only file system", "write elsewhere")),
], ids=["EACCES", "EROFS"])
def test_10_environment_a_directory_that_refuses_writes(error, words, ws, monkeypatch, capsys):
    """A read-only place or one without permission (injected: tests may run as root, whom chmod does
    not stop): the path and what to do, exit 74."""
    import funasr_qwen4b.atomic as atomic_module

    parent = ws.tmp / "locked"
    parent.mkdir()
    mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.parent == parent:
            raise OSError(error, os.strerror(error), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(atomic_module.Path, "mkdir", refuse)
    err = check(Fault(["convert", "sensevoice", ws.sv_dir, "-o", parent / "out"], code=74, words=words,
                      out=parent / "out", inputs=(ws.sv_dir,)), capsys)
    assert str(parent / ".out.staging") in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_10_environment_a_real_read_only_directory(ws, capsys):
    parent = ws.tmp / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        check(Fault(["convert", "sensevoice", ws.sv_dir, "-o", parent / "out"], code=74,
                    words=("permission denied", str(parent)), out=parent / "out"), capsys)
    finally:
        parent.chmod(0o755)


@pytest.mark.parametrize("tmpdir, words", [("missing", "does not exist"), ("a_file", "is not a directory")])
def test_10_environment_tmpdir_that_is_not_a_directory(tmpdir, words, bundle, tmp_path, monkeypatch, capsys):
    """TMPDIR pointing nowhere: said at once, before any library trips on it half-way."""
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("TMPDIR", str(tmp_path / tmpdir))
    check(Fault(["transcribe", "--ctc", CLIP, "-m", bundle], code=74,
                words=(f"TMPDIR={tmp_path / tmpdir}", words)), capsys)


def test_10_environment_tmpdir_missing_as_a_process(bundle, tmp_path):
    """The same in a real process, where MLX would otherwise fail inside C++ ("temp_directory_path")."""
    env = {**os.environ, "TMPDIR": str(tmp_path / "nowhere")}
    r = subprocess.run([sys.executable, "-m", "funasr_qwen4b.app.cli", "transcribe", "--ctc", str(CLIP), "-m",
                        str(bundle)], capture_output=True, text=True, timeout=HANG_S, cwd=ROOT, env=env)
    assert r.returncode == 74 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    assert f"TMPDIR={tmp_path / 'nowhere'} does not exist" in r.stderr and "bug" not in r.stderr


def test_10_environment_ffmpeg_missing(bundle, tmp_path, monkeypatch, capsys):
    """A format only ffmpeg reads, with no ffmpeg on PATH: the tool named, and where it was looked for."""
    m4a = tmp_path / "talk.m4a"
    m4a.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    monkeypatch.setenv("PATH", str(tmp_path))
    check(Fault(["transcribe", "--ctc", m4a, "-m", bundle], code=74,
                words=(str(m4a), "ffmpeg", "not installed", f"not on PATH ({tmp_path})"), inputs=(m4a,)), capsys)


def test_10_environment_input_errors_stay_input_errors(bundle, tmp_path, capsys):
    """A file that is not there is the input's fault (2), not the machine's."""
    check(Fault(["transcribe", "--ctc", tmp_path / "missing.wav", "-m", bundle], words=("not found",)), capsys)


@pytest.mark.parametrize("kind", ["fifo", "dev_fd"])
def test_3_message_streams_as_audio_paths_are_read(kind, bundle, tmp_path, capsys):
    """A named pipe, or /dev/fd/N (a shell's `<(ffmpeg ...)`), is read once as a stream, as
    standard input is: the transcript of the bytes written into it."""
    import threading

    assert main(["transcribe", "--ctc", str(CLIP), "-m", str(bundle)]) == 0
    want = capsys.readouterr().out
    if kind == "fifo":
        path = tmp_path / "talk.wav"
        os.mkfifo(path)
        def write():  # opening blocks until the reader opens it
            path.write_bytes(CLIP.read_bytes())
    else:
        r, w = os.pipe()
        path = Path(f"/dev/fd/{r}")
        def write():
            with os.fdopen(w, "wb") as f:
                f.write(CLIP.read_bytes())
    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert main(["transcribe", "--ctc", str(path), "-m", str(bundle)]) == 0
    finally:
        writer.join(HANG_S)
        if kind == "dev_fd":
            os.close(r)
    assert capsys.readouterr().out == want


def test_9_a_template_for_a_bundle_without_llm_is_refused(bundle, tmp_path, capsys):
    m = manifest(tmp_path / "m.jsonl", [{"id": "a", "audio": str(CLIP), "text": "开放时间"}])
    check(Fault(["cer", "-m", bundle, "--manifest", m, "--template", "chatml"],
                words=("no adaptor and LLM", "--template", "would do nothing")), capsys)
