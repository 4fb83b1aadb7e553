"""The demonstration model's recipe: sentences, speakers, vocabularies, the
committed held-out sets, and a smoke run of the trainer (needs espeak-ng)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import corpus, data, speech
from training.tokenizers import build_ctc_bpe, build_llm_tokenizer, ctc_text

ROOT = Path(__file__).resolve().parent.parent
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.mark.parametrize("n, words", [
    (0, "零"), (7, "七"), (10, "十"), (15, "十五"), (20, "二十"), (48, "四十八"), (100, "一百"), (103, "一百零三"),
    (110, "一百一十"), (999, "九百九十九"), (1050, "一千零五十"), (2005, "二千零五"), (1999, "一千九百九十九")])
def test_zh_number(n, words):
    assert corpus.zh_number(n) == words


@pytest.mark.parametrize("n, words, ordinal", [
    (1, "one", "first"), (3, "three", "third"), (12, "twelve", "twelfth"), (20, "twenty", "twentieth"),
    (21, "twenty-one", "twenty-first"), (32, "thirty-two", "thirty-second"), (40, "forty", "fortieth")])
def test_en_numbers(n, words, ordinal):
    assert corpus.en_number(n) == words
    assert corpus.en_ordinal(n) == ordinal


def test_en_hundreds():
    assert corpus.en_number(115) == "one hundred and fifteen"
    assert corpus.en_number(300) == "three hundred"


def test_heldout_sentences_never_trained_on():
    heldout, train = data.items(data.Recipe(train_per_lang=2000, heldout_per_lang=50))
    assert not {h.text for h in heldout} & {t.text for t in train}
    assert not data.committed_texts() & {t.text for t in train}
    assert len({h.text for h in heldout}) == len(heldout) == 100


def test_heldout_speakers_never_in_training():
    heldout, train = data.items(data.Recipe(train_per_lang=500))

    def settings(spk):
        base, _, variant = spk.voice.partition("+")
        return variant, spk.speed, spk.pitch

    for it in heldout:
        variant, speed, pitch = settings(it.speaker)
        assert variant in speech.VARIANTS_HELDOUT and speed in speech.SPEEDS_HELDOUT
        assert pitch in speech.PITCHES_HELDOUT
    for it in train:
        variant, speed, pitch = settings(it.speaker)
        assert variant in speech.VARIANTS and speed in speech.SPEEDS and pitch in speech.PITCHES
        assert it.speaker.voice.partition("+")[0] not in speech.EN_ACCENTS_HELDOUT


def test_committed_heldout_sets_follow_the_recipe():
    """The committed manifests are what the recipe draws (texts and speakers), so the
    training script and the test sets cannot drift apart."""
    heldout, _ = data.items(data.Recipe())
    for lang, d in data.HELDOUT_DIRS.items():
        lines = [json.loads(x) for x in (d / "test.jsonl").read_text(encoding="utf-8").splitlines()]
        mine = [h for h in heldout if h.lang == lang]
        assert [(x["id"], x["text"], x["voice"], x["speed"], x["pitch"]) for x in lines] == \
               [(h.id, h.text, h.speaker.voice, h.speaker.speed, h.speaker.pitch) for h in mine]
        assert sum(x["condition"] == "noise" for x in lines) == data.HELDOUT_NOISY
        assert all((d / x["audio"]).is_file() for x in lines)


def test_augment_is_seeded_and_bounded():
    x = np.sin(np.arange(16000) / 10).astype(np.float32) * 0.5
    r = data.Recipe()
    a = data.augment(x, r, np.random.default_rng([1, 2, 3]))
    b = data.augment(x, r, np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert x.size <= a.size <= x.size + 2 * int(r.pad_s * 16000)
    assert np.abs(a).max() <= 1.0


def test_ctc_text():
    assert ctc_text("开放时间：早上九点至下午五点。", "zh") == "开放时间早上九点至下午五点"
    assert ctc_text("It's twenty-one o'clock.", "en") == "its twenty one oclock"


def test_vocabularies(tmp_path):
    texts = ["现在是下午三点二十分。", "It is ten twenty in the morning.", "今天是三月十五日，星期五。"] * 20
    tok = build_llm_tokenizer(texts, 400)
    from reference.checkpoints import QWEN3_ADDED

    ids = [tok.convert_tokens_to_ids(t) for t in QWEN3_ADDED]
    assert ids == list(range(ids[0], ids[0] + len(QWEN3_ADDED))) and ids[-1] == len(tok) - 1
    assert tok.eos_token == "<|im_end|>"
    for t in texts[:3]:
        assert tok.decode(tok.encode(t, add_special_tokens=False)) == t
    # the ChatML preset tokenizes its markers as single special tokens
    chat = tok.encode("<|im_start|>user\n<|im_end|>", add_special_tokens=False)
    assert chat[0] == tok.convert_tokens_to_ids("<|im_start|>") and chat[-1] == tok.convert_tokens_to_ids("<|im_end|>")

    import sentencepiece as spm

    size = build_ctc_bpe(tmp_path / "bpe.model", [ctc_text(t, "zh" if ord(t[0]) > 127 else "en") for t in texts], 120)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe.model"))
    assert sp.get_piece_size() == size and sp.id_to_piece(0) == "<blank>"
    assert all(sp.piece_to_id(t) > 1 for t in ("<|zh|>", "<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>"))
    assert sp.decode(sp.encode("现在是下午三点二十分")) == "现在是下午三点二十分"


@needs_espeak
def test_heldout_audio_regenerates():
    """`python -m training.data --check`: the committed FLACs are what espeak-ng says now."""
    r = subprocess.run([sys.executable, "-m", "training.data", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout


@needs_espeak
def test_trainer_smoke_writes_original_formats(tmp_path):
    """--quick: a few hundred utterances, 2 epochs on the CPU; what it writes converts into a bundle."""
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "training.train", "--out", str(out), "--quick", "--workers", "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("sensevoice/model.pt", "sensevoice/config.yaml", "sensevoice/am.mvn", "sensevoice/configuration.json",
              "adaptor.pt", "qwen3/config.json", "qwen3/model.safetensors", "qwen3/tokenizer.json",
              "training_log.json"):
        assert (out / f).is_file(), f
    log = json.loads((out / "training_log.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in log["history"]] == [1, 2] and set(log["heldout"]) == {"zh", "en"}
    first, last = log["history"][0], log["history"][-1]
    assert last["ctc"] < first["ctc"] and last["llm"] < first["llm"]  # it learns something
    import yaml

    assert yaml.safe_load((out / "sensevoice/config.yaml").read_text())["train_conf"]["recipe"]["train_per_lang"] == 100
    from funasr_qwen4b.app.cli import main

    assert main(["convert", "bundle", "--sensevoice", str(out / "sensevoice"), "--adaptor", str(out / "adaptor.pt"),
                 "--llm", str(out / "qwen3"), "-o", str(tmp_path / "bundle")]) == 0
