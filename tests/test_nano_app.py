"""Fun-ASR-Nano on the user's side: `convert bundle --funasr-nano` (both published layouts, a hub
id from a Hugging Face cache), `transcribe` (hotwords by flag and by file, batches, output files),
the Python API, the refusals that name their flag, and a server holding a Nano and a qwen4b
bundle at once, each request's `model` picking one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funasr_qwen4b.app.cli import main
from funasr_qwen4b.language import from_text
from funasr_qwen4b.prompt import nano_template
from tests.conftest import CLIPS

CLIP = CLIPS / "zh_open_hours.wav"


HUB_ID = "FunAudioLLM/Fun-ASR-Nano-2512"


@pytest.fixture(scope="module")
def nano_hf(tmp_path_factory):
    """A tiny Fun-ASR-Nano in transformers' -hf layout, by transformers' own classes (seeded)."""
    from funasr_qwen4b.testing_nano_hf import make_nano_hf_dir

    return make_nano_hf_dir(tmp_path_factory.mktemp("nano_hf") / "Fun-ASR-Nano-hf")


@pytest.fixture(scope="module")
def hf_cache(nano_hf, tmp_path_factory):
    """A Hugging Face cache holding the same model in FunASR's layout (config.yaml, model.pt, the
    Qwen3 folder; written from the -hf files by convert.nano_hf.write_original) under HUB_ID."""
    from funasr_qwen4b.convert.nano_hf import write_original
    from tests.test_hub import hf_layout

    root = tmp_path_factory.mktemp("hf_cache")
    original = write_original(nano_hf, root / "Fun-ASR-Nano")
    return root / "hf", hf_layout(root / "hf", HUB_ID, original)


def _offline(cache, mp: pytest.MonkeyPatch) -> None:
    """HF_HOME at the fake cache, offline: hub ids resolve from it or not at all."""
    import huggingface_hub.constants

    mp.setenv("HF_HOME", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache / "hub"))


@pytest.fixture
def offline_hub(hf_cache, monkeypatch):
    _offline(hf_cache[0], monkeypatch)
    return hf_cache[1]


@pytest.fixture(scope="module")
def nano(hf_cache, tmp_path_factory):
    """The FunASR-layout model converted by the command a user types: by its hub id, offline."""
    with pytest.MonkeyPatch.context() as mp:
        _offline(hf_cache[0], mp)
        out = tmp_path_factory.mktemp("nano_bundle") / "nano"
        assert main(["convert", "bundle", "--funasr-nano", HUB_ID, "-o", str(out), "--dtype", "float32",
                     "--hub", "huggingface"]) == 0
    return out


class Spy:
    """A pipeline wrapped to record the template each call passes (the prompt ids a template
    makes are FunASR's own, token for token: tests/test_nano.py)."""

    def __init__(self, pipeline):
        self.pipeline, self.templates = pipeline, []

    def __getattr__(self, name):
        return getattr(self.pipeline, name)

    def run(self, *args, template=None, **kwargs):
        self.templates.append(("run", template))
        return self.pipeline.run(*args, template=template, **kwargs)

    def run_batch(self, *args, template=None, **kwargs):
        self.templates.append(("run_batch", template))
        return self.pipeline.run_batch(*args, template=template, **kwargs)


def test_convert_both_layouts_and_hub_id(nano, nano_hf, offline_hub, tmp_path, capsys):
    """FunASR's layout by its hub id, resolved offline from a Hugging Face cache (the `nano`
    fixture), and transformers' -hf layout by its directory both convert by `convert bundle
    --funasr-nano`; an id not in the cache, and flags of the qwen4b parts, are refused by name,
    with nothing written."""
    from funasr_qwen4b.bundle import Bundle

    b = Bundle.read(nano)
    assert b.kind == "funasr-nano" and b.precisions == {"sensevoice": "float32", "adaptor": "float32",
                                                        "llm": "float32"}
    assert b.components["llm"].entry["source_dir"] == str(offline_hub) and "model.pt" in b.components["adaptor"].sources
    hf = nano_hf
    assert main(["convert", "bundle", "--funasr-nano", str(hf), "-o", str(tmp_path / "from_hf"), "-q", "8"]) == 0
    b = Bundle.read(tmp_path / "from_hf")
    assert b.kind == "funasr-nano" and b.precisions["llm"] == "8bit"
    assert "config.json" in b.components["adaptor"].sources
    capsys.readouterr()
    assert main(["convert", "bundle", "--funasr-nano", "FunAudioLLM/Not-Cached", "-o", str(tmp_path / "x"),
                 "--hub", "huggingface"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err and not (tmp_path / "x").exists()

    for extra in (["--llm", "Qwen3/"], ["--sensevoice", "sv/", "--heads", "4"], ["--adaptor-q-bits", "8"]):
        assert main(["convert", "bundle", "--funasr-nano", str(hf), "-o", str(tmp_path / "y"), *extra]) == 2
        err = capsys.readouterr().err
        assert "--funasr-nano" in err and all(f in err for f in extra if f.startswith("--"))
    assert main(["convert", "bundle", "-o", str(tmp_path / "y")]) == 2
    assert "--funasr-nano SRC" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_transcribe_plain_json_hotwords_batch_outputs(nano, tmp_path, capsys, monkeypatch):
    """`transcribe` on a Nano bundle: plain text, --json without CTC fields, --hotwords and
    --hotwords-file becoming the prompt FunASR builds, --batch-size 2 (one prompt for the batch),
    output files; the segment is the piece's speech, without word times."""
    from funasr_qwen4b.app import transcriber as tr

    spies = []
    load = tr.Transcriber.load.__func__

    def spied(cls, *args, **kwargs):
        t = load(cls, *args, **kwargs)
        t.pipeline = Spy(t.pipeline)
        spies.append(t.pipeline)
        return t

    monkeypatch.setattr(tr.Transcriber, "load", classmethod(spied))
    assert main(["transcribe", str(CLIP), "-m", str(nano)]) == 0
    plain = capsys.readouterr().out
    assert spies[-1].templates == [("run", None)]  # the bundle's own: nano_template()

    assert main(["transcribe", str(CLIP), "-m", str(nano), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["text"] + "\n" == plain and r["language"] == from_text(r["text"]) and r["tokens"] > 0
    assert not {"ctc_text", "ctc_ids", "tags", "tag_ids"} & set(r)
    [seg] = r["segments"]
    assert seg["words"] == [] and 0.0 <= seg["start"] < seg["end"] <= r["seconds"]

    assert main(["transcribe", str(CLIP), "-m", str(nano), "--hotwords", "通义， FunASR,", "--language", "en",
                 "--json"]) == 0
    hot = json.loads(capsys.readouterr().out)
    assert hot["language"] == "en" and hot["segments"][0]["tokens"] != seg["tokens"]  # the prompt reached the LLM
    assert spies[-1].templates == [("run", nano_template(["通义", "FunASR"], "en"))]

    words = tmp_path / "hotwords.txt"
    words.write_text("通义\n\n  阿里巴巴 \n", encoding="utf-8")
    assert main(["transcribe", str(CLIP), "-m", str(nano), "--hotwords-file", str(words), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    out = tmp_path / "out"
    assert main(["transcribe", str(CLIP), str(CLIP), "-m", str(nano), "--hotwords-file", str(words),
                 "--batch-size", "2", "--output-dir", str(out), "--output-format", "all"]) == 0
    assert spies[-1].templates == [("run_batch", nano_template(["通义", "阿里巴巴"]))]
    stored = json.loads((out / "zh_open_hours.wav.json").read_text(encoding="utf-8"))
    drop = lambda segs: [{k: v for k, v in s.items() if k != "logprobs"} for s in segs]  # noqa: E731
    assert drop(stored["segments"]) == drop(alone["segments"]) and stored["text"] == alone["text"]  # a batch row
    np.testing.assert_allclose(stored["segments"][0]["logprobs"], alone["segments"][0]["logprobs"], rtol=0, atol=1e-4)
    assert (out / "zh_open_hours.wav.txt").read_text(encoding="utf-8") == alone["text"] + "\n"
    assert {p.suffix for p in out.iterdir()} == {".txt", ".srt", ".vtt", ".tsv", ".json"}


def test_transcribe_refusals(nano, bundle, tmp_path, capsys):
    """Each a one line naming its flag, exit 2, before any model loads: hotwords for a model
    without hotword training, --ctc on Nano, both hotword flags, a bad hotwords file, a language
    the Nano prompt does not name, query-row flags on Nano."""
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    marker = tmp_path / "marker.txt"
    marker.write_text("ok\nx{audio}\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    cases = [(["-m", str(bundle), "--hotwords", "a,b"], "--hotwords: "),
             (["-m", str(nano), "--ctc"], "--ctc: "),
             (["-m", str(nano), "--hotwords-file", str(bad)], f"--hotwords-file {bad}: not UTF-8"),
             (["-m", str(nano), "--hotwords-file", str(marker)], f"--hotwords-file {marker} line 2"),
             (["-m", str(nano), "--hotwords-file", str(empty)], "holds no hotword"),
             (["-m", str(nano), "--hotwords-file", str(tmp_path / "none.txt")], "no such file"),
             (["-m", str(nano), "--language", "ko"], "--language ko"),
             (["-m", str(nano), "--textnorm", "woitn"], "--textnorm")]
    for args, said in cases:
        assert main(["transcribe", str(CLIP), *args]) == 2, args
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    for args, said in [(["--hotwords", "a", "--hotwords-file", str(marker)], "not allowed with argument --hotwords"),
                       (["--hotwords", " , "], "--hotwords"), (["--ctc", "--hotwords", "a"], "--hotwords")]:
        assert main(["transcribe", str(CLIP), "-m", str(nano), *args]) == 2
        assert said in capsys.readouterr().err


def test_api_hotwords_and_refusals(nano, bundle, caplog):
    """Transcriber on a Nano bundle: hotwords and language per call (one prompt a call, whatever
    the batch), --speculate ctc said in one line and decoded plain; hotwords on qwen4b a
    ValueError; ctc_only on Nano refused."""
    import logging

    from funasr_qwen4b.app.transcriber import Transcriber

    with caplog.at_level(logging.WARNING):
        t = Transcriber.load(nano, speculate="ctc")
    assert "no CTC draft; decoding plain" in caplog.text
    spy = t.pipeline = Spy(t.pipeline)
    r = t.transcribe(str(CLIP), hotwords=["开放时间"], language="ja")
    assert r["drafted"] == 0 and r["language"] == "ja" and "ctc_text" not in r
    rs = t.transcribe_batch([str(CLIP), str(CLIP)], hotwords=["开放时间"], language="ja", batch_size=2)
    prompt = nano_template(["开放时间"], "ja")
    assert spy.templates == [("run", prompt), ("run_batch", prompt)]
    assert [x["segments"][0]["tokens"] for x in rs] == [r["segments"][0]["tokens"]] * 2
    with pytest.raises(TypeError, match="list of words"):
        t.transcribe(str(CLIP), hotwords="开放时间")
    with pytest.raises(ValueError, match="hotword"):
        t.transcribe(str(CLIP), hotwords=["{audio}"])
    with pytest.raises(ValueError, match="no CTC head"):
        Transcriber.load(nano, ctc_only=True)
    with pytest.raises(ValueError, match="template="):
        Transcriber.load(nano, template="funasr-nano").transcribe(str(CLIP), hotwords=["a"])
    with pytest.raises(ValueError, match="no hotword training"):
        Transcriber.load(bundle, ctc_only=True).transcribe(str(CLIP), hotwords=["a"])


def test_parity_oracles_by_flag(nano, nano_hf, tmp_path, capsys):
    """`parity --oracle transformers --hf-dir DIR` on a bundle converted from FunASR's layout of the
    same model (the -hf checkpoint mapped by convert.nano_hf.write_original): float32, exit 0,
    the report names the oracle; the flags that do not go together refused by name."""
    hf, b = nano_hf, nano
    report = tmp_path / "rep" / "parity.json"
    capsys.readouterr()
    assert main(["parity", "-m", str(b), "--audio", str(CLIP), "--mode", "chained", "--oracle", "transformers",
                 "--hf-dir", str(hf), "--report", str(report)]) == 0
    assert "(transformers oracle)" in capsys.readouterr().out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["passed"] and data["meta"]["oracle"]["name"] == "transformers"
    for args, said in [(["--hf-dir", str(hf)], "--hf-dir is where the transformers oracle"),
                       (["--oracle", "transformers", "--hf-dir", str(hf), "--sensevoice-src", str(hf)],
                        "--hf-dir and --sensevoice-src")]:
        assert main(["parity", "-m", str(b), "--audio", str(CLIP), *args]) == 2
        assert said in capsys.readouterr().err
    assert main(["parity", "-m", str(b), "--audio", str(CLIP), "--oracle", "transformers"]) == 2
    assert "converted from FunASR's layout" in capsys.readouterr().err
    assert main(["bench", "--synthetic", "nano", "--adaptor-q-bits", "8"]) == 2
    assert "--adaptor-q-bits" in capsys.readouterr().err


def test_server_holds_a_nano_and_a_qwen4b_bundle(nano, full_bundle, capsys):
    """One server, two bundles: /v1/models lists each bundle's models, the request's `model` picks
    one; Fun-ASR-Nano's `prompt` carries hotwords (commas or newlines) into its prompt, and requests
    batch only with their like; funasr-qwen4b accepts `prompt` and ignores it as before, and refuses
    a `hotwords` field in OpenAI's error shape."""
    import threading
    from concurrent.futures import Future

    import numpy as np

    from funasr_qwen4b.app.server import CTC_MODEL, LLM_MODEL, NANO_MODEL, ServerConfig, create_app
    from funasr_qwen4b.app.server.slots import Waiting
    from funasr_qwen4b.app.transcriber import Transcriber
    from tests.test_server import HANG_S, LiveServer, _error, httpx

    with LiveServer([full_bundle, nano], idle_unload=0) as s:
        assert [m.id for m in s.client().models.list()] == [LLM_MODEL, CTC_MODEL, NANO_MODEL]
        h = httpx.get(s.url + "/health", timeout=HANG_S).json()
        assert h["default_model"] == LLM_MODEL and h["bundles"][NANO_MODEL] == str(nano)
        assert httpx.post(f"{s.url}/v1/models/{NANO_MODEL}/load", timeout=HANG_S).status_code == 200
        slot = s.manager.slots[NANO_MODEL]
        spy = slot.model.pipeline = Spy(slot.model.pipeline)

        with open(CLIP, "rb") as f:
            r = s.client().audio.transcriptions.create(file=f, model=NANO_MODEL, prompt="通义, FunASR\n阿里巴巴",
                                                       response_format="verbose_json")
        assert spy.templates == [("run", nano_template(["通义", "FunASR", "阿里巴巴"]))]
        direct = Transcriber.load(nano).transcribe(str(CLIP), hotwords=["通义", "FunASR", "阿里巴巴"])
        assert r.text == direct["text"] and [g.tokens for g in r.segments] == [direct["segments"][0]["tokens"]]
        assert s.post(audio=CLIP, model=NANO_MODEL, language="en").status_code == 200
        assert spy.templates[-1] == ("run", nano_template(language="en"))
        _error(s.post(audio=CLIP, model=NANO_MODEL, language="ko"), 400, "unsupported_language", "language")
        _error(s.post(audio=CLIP, model=NANO_MODEL, prompt="a{audio}"), 400, "invalid_value", "prompt")
        _error(s.post(audio=CLIP, model=NANO_MODEL, prompt="a", hotwords="b"), 400, "invalid_value", "hotwords")

        plain = Transcriber.load(full_bundle).transcribe(str(CLIP))["text"]
        r = s.post(audio=CLIP, model=LLM_MODEL, prompt="previous sentence, as OpenAI clients send it")
        assert r.status_code == 200 and r.json()["text"] == plain
        err = _error(s.post(audio=CLIP, model=LLM_MODEL, hotwords="通义"), 400, "unsupported_hotwords", "hotwords")
        assert "no hotword training" in err["message"]
        err = _error(s.post("/v1/audio/translations", audio=CLIP, model=CTC_MODEL), 400, "unsupported_task")
        assert LLM_MODEL in err["message"] and NANO_MODEL in err["message"]

        # requests waiting together batch by their prompt: hotwords are part of the key
        def waiting(hotwords):
            return Waiting(np.zeros(1600, np.float32), (None, False, hotwords), None, threading.Event(), Future())
        items = [waiting(("a",)), waiting(()), waiting(("a",))]
        with slot._count_lock:
            slot.waiting = list(items)
        assert slot._next_batch() == [items[0], items[2]] and slot._next_batch() == [items[1]]

    with pytest.raises(ValueError, match="both qwen4b bundles"):
        create_app(ServerConfig([str(full_bundle), str(full_bundle)]))
    with pytest.raises(ValueError, match="not served here"):
        create_app(ServerConfig([str(nano)], default_model=LLM_MODEL))
    assert create_app(str(nano)).state.manager.default_model == NANO_MODEL
    for args, said in [(["-m", str(full_bundle), "-m", str(full_bundle)], "both qwen4b bundles"),
                       (["-m", str(nano), "--template", "chatml"], "--template/--template-file"),
                       (["-m", str(nano), "--default-model", CTC_MODEL], "--default-model sensevoice-small")]:
        assert main(["serve", *args]) == 2
        assert said in capsys.readouterr().err


def test_cer_both_backends(nano, tmp_path, capsys):
    """`cer --backend both` on a Nano bundle: the reference backend runs FunASR's own FunASRNano
    modules from the original directory, the MLX one the converted bundle; at float32 their
    transcripts are identical, utterance by utterance. Query-row flags are refused by name."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": p.stem, "audio": str(p), "text": t}, ensure_ascii=False) + "\n"
                                for p, t in [(CLIP, "开放时间：早上九点至下午五点"), (CLIPS / "zh_10s.wav", "十秒")]),
                        encoding="utf-8")
    report = tmp_path / "cer.json"
    assert main(["cer", "-m", str(nano), "--manifest", str(manifest), "--backend", "both", "--report",
                 str(report), "--no-progress"]) == 0
    rep = json.loads(report.read_text(encoding="utf-8"))
    assert set(rep["summary"]) == {"mlx", "reference"} and rep["meta"]["transcriber"] == "llm"
    assert rep["mlx_vs_reference"]["identical"] == rep["mlx_vs_reference"]["utterances"] == 2
    assert [u["mlx"]["hyp"] for u in rep["utterances"]] == [u["reference"]["hyp"] for u in rep["utterances"]]
    capsys.readouterr()
    assert main(["cer", "-m", str(nano), "--manifest", str(manifest), "--language", "en"]) == 2
    assert "no query rows" in capsys.readouterr().err
