"""The demonstration model's recipe: word lists, sentences, speakers, non-speech
sounds, vocabularies, the committed held-out sets, the batched losses, and a smoke
run of the trainer (needs espeak-ng)."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import corpus, data, speech, wordlists
from training.tokenizers import NONSPEECH_TAGS, build_ctc_bpe, build_llm_tokenizer, ctc_text

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


@pytest.mark.parametrize("n, words", [
    (9999, "九千九百九十九"), (10000, "一万"), (10500, "一万零五百"), (10015, "一万零一十五"), (120000, "十二万"),
    (12345, "一万二千三百四十五"), (99999999, "九千九百九十九万九千九百九十九")])
def test_zh_large(n, words):
    assert corpus.zh_large(n) == words


def test_zh_count_says_liang():
    r = random.Random(0)
    assert corpus.zh_count(2, r) == "两" and corpus.zh_count(12, r) == "十二"
    assert {corpus.zh_count(200, r) for _ in range(40)} == {"二百", "两百"}


@pytest.mark.parametrize("n, words", [
    (1000, "one thousand"), (2005, "two thousand and five"), (12345, "twelve thousand three hundred and forty-five"),
    (4_000_300, "four million three hundred"), (1_000_001, "one million and one")])
def test_en_large(n, words):
    assert corpus.en_large(n) == words


def test_en_year():
    r = random.Random(0)
    assert corpus.en_year(1998, r) == "nineteen ninety-eight" and corpus.en_year(1905, r) == "nineteen oh five"
    assert corpus.en_year(2000, r) == "two thousand" and corpus.en_year(2007, r) == "two thousand and seven"
    assert {corpus.en_year(2026, r) for _ in range(40)} == {"twenty twenty-six", "two thousand and twenty-six"}


def test_word_lists():
    """The committed lists: most frequent first, common characters (Mandarin), plain words (English)."""
    for lang in ("zh", "en"):
        words, counts = wordlists.load(lang)
        assert len(words) == len(set(words)) == wordlists.SIZE
        assert list(counts) == sorted(counts, reverse=True)
    zh, _ = wordlists.load("zh")
    assert zh[:3] == ("了", "是", "在") and all(wordlists.common_hanzi(c) for w in zh for c in w)
    en, _ = wordlists.load("en")
    assert en[:3] == ("the", "to", "and") and "fuck" not in en and all(w == w.lower() for w in en)


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("jieba", "wordfreq")),
                    reason="jieba and wordfreq are not installed (pip install jieba==0.42.1 wordfreq==3.1.1)")
def test_word_lists_rebuild_from_the_packages():
    assert wordlists.main(["--check"]) == 0


def test_heldout_sentences_never_trained_on():
    recipe = data.Recipe(train_per_lang=2000)
    heldout, train = data.items(recipe)
    opened = [it for it in data.open_items(recipe) if it.text]
    said = {t.text for t in train}
    assert not {h.text for h in heldout + opened} & said
    assert not data.committed_texts() & said
    assert len({h.text for h in heldout}) == len(heldout) == 100
    assert len({h.text for h in opened}) == len(opened) == 2 * recipe.open_per_lang
    assert len(train) == 2 * recipe.train_per_lang + 2 * round(recipe.nonspeech_share * recipe.train_per_lang)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_open_sentences_combine_pieces_training_never_combines(lang):
    """No two adjacent pieces of an open sentence (word + word, word + number, ...) occur
    together anywhere in the default recipe's training text, templates included."""
    recipe = data.Recipe()
    train = data.texts(recipe)[lang]["train"]
    _, pairs = corpus.open_heldout(lang, recipe.open_per_lang, recipe.seed, recipe.shares)
    found = corpus.Pairs(lang, pairs)
    assert len(pairs) > 2 * recipe.open_per_lang
    assert not [s for s in train if found.found_in(s)]
    assert found.found_in(corpus.join(lang, list(next(iter(sorted(pairs))))))  # the matcher does match
    assert all(len(corpus.tokens(lang, s)) <= corpus.OPEN_MAX_TOKENS[lang] for s in data.texts(recipe)[lang]["open"])


def test_training_text_mixes_templates_words_and_numbers():
    recipe = data.Recipe(train_per_lang=4000)
    train = data.texts(recipe)["en"]["train"]
    fixed = sum(s in corpus.PHRASES_EN for s in train) / len(train)  # one template in 12 is a fixed phrase
    assert abs(fixed - recipe.template_share / 12) < 0.01
    vocab = {w for s in train for w in corpus.tokens("en", s)}
    assert len(vocab) > 4000 and {"thousand", "percent", "quarter", "umbrella"} <= vocab


def test_heldout_speakers_never_in_training():
    recipe = data.Recipe(train_per_lang=500)
    heldout, train = data.items(recipe)

    def settings(spk):
        base, _, variant = spk.voice.partition("+")
        return variant, spk.speed, spk.pitch

    for it, variants in [(it, speech.VARIANTS_HELDOUT) for it in heldout] + \
                        [(it, speech.VARIANTS_OPEN) for it in data.open_items(recipe) if it.text]:
        variant, speed, pitch = settings(it.speaker)
        assert variant in variants and speed in speech.SPEEDS_HELDOUT and pitch in speech.PITCHES_HELDOUT
    assert not set(speech.VARIANTS_OPEN) & set(speech.VARIANTS)
    assert not set(speech.SPEEDS_HELDOUT) & set(speech.SPEEDS) and not set(speech.PITCHES_HELDOUT) & set(speech.PITCHES)
    for it in train:
        if it.text:
            variant, speed, pitch = settings(it.speaker)
            assert variant in speech.VARIANTS and speed in speech.SPEEDS and pitch in speech.PITCHES
            assert it.speaker.voice.partition("+")[0] not in speech.EN_ACCENTS_HELDOUT
        else:
            assert isinstance(it.speaker, speech.Sound)


@needs_espeak
def test_heldout_voices_sound_unlike_training_voices():
    """espeak-ng has aliases (caleb and klatt6 sound like klatt): no held-out variant may be one
    of a training variant."""
    def say(variant: str) -> bytes:
        voice = f"{speech.ZH_VOICE}+{variant}" if variant else speech.ZH_VOICE
        return speech.synthesize("今天下午三点", speech.Speaker(voice, 175, 50)).tobytes()

    trained = {say(v) for v in speech.VARIANTS}
    assert not [v for v in speech.VARIANTS_OPEN if say(v) in trained]


def test_committed_heldout_sets_follow_the_recipe():
    """The committed manifests are what the recipe draws (texts, speakers, sounds), so the
    training script and the test sets cannot drift apart."""
    recipe = data.Recipe()
    heldout, _ = data.items(recipe)
    for batch, dirs in ((heldout, data.HELDOUT_DIRS), (data.open_items(recipe), data.OPEN_DIRS)):
        for lang, d in dirs.items():
            lines = [json.loads(x) for x in (d / "test.jsonl").read_text(encoding="utf-8").splitlines()]
            mine = [h for h in batch if h.lang == lang and h.text]
            assert [(x["id"], x["text"], x["voice"], x["speed"], x["pitch"]) for x in lines] == \
                   [(h.id, h.text, h.speaker.voice, h.speaker.speed, h.speaker.pitch) for h in mine]
            assert sum(x["condition"] == "noise" for x in lines) == data.HELDOUT_NOISY
            assert all((d / x["audio"]).is_file() for x in lines)
    for lang, d in data.OPEN_DIRS.items():
        quiet = [json.loads(x) for x in (d / "nospeech.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [x["kind"] for x in quiet] == list(speech.NONSPEECH) and all(x["text"] == "" for x in quiet)
        assert all((d / x["audio"]).is_file() for x in quiet)


def test_nonspeech_sounds():
    r = random.Random(0)
    for kind in speech.NONSPEECH:
        s = speech.draw_sound(r, kind)
        x = speech.nonspeech(s)
        assert x.dtype == np.float32 and x.size == int(s.seconds * speech.SAMPLE_RATE)
        assert np.array_equal(x, speech.nonspeech(s))  # made from its fields alone
        rms_db = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-30)
        assert rms_db < -200 if kind == "silence" else abs(rms_db - s.level_db) < 0.01


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
    tok = build_llm_tokenizer(texts + ["鹦鹉螺。"], 400)
    assert all(len(tok.encode(c, add_special_tokens=False)) == 1 for c in "鹦鹉螺现在是下午")  # one token a character
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
    assert all(sp.piece_to_id(t) > 1 for t in ("<|zh|>", "<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>",
                                               "<|nospeech|>", *NONSPEECH_TAGS))
    assert sp.decode(sp.encode("现在是下午三点二十分")) == "现在是下午三点二十分"


def _per_utterance_llm_loss(m, audio, enc_lens, llm_ids):
    """The LLM loss of each utterance on its own: [audio rows, transcript] then averaged over tokens."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    for i, ids in enumerate(llm_ids):
        a, t = int(enc_lens[i]), torch.tensor(ids)
        inputs = torch.cat([audio[i, :a], m.llm.get_input_embeddings()(t[:-1])])[None]
        logits = m.llm(inputs_embeds=inputs).logits[0, a - 1:]
        total, count = total + F.cross_entropy(logits, t, reduction="sum"), count + len(ids)
    return total / count


def test_batched_losses_match_one_utterance_at_a_time():
    """The trainer builds the LLM's inputs and labels for the whole batch with index arithmetic:
    the loss is what each utterance gives alone, empty transcripts (non-speech) included."""
    import torch

    from training import train

    torch.manual_seed(0)
    r = random.Random(0)
    m = train.DemoModel(train.Settings(), 200, 320, {"<|endoftext|>": 300, "<|im_end|>": 302}, torch.device("cpu"))
    m.train(False)
    B = 6
    llm = [[r.randrange(290) for _ in range(r.randint(1, 9))] + [302] for _ in range(B)]
    llm[2] = [302]  # no speech: <|im_end|> at once
    ids = torch.zeros(B, max(map(len, llm)), dtype=torch.long)
    for j, x in enumerate(llm):
        ids[j, :len(x)] = torch.tensor(x)
    ctc = torch.randint(20, 190, (B, 5))
    ctc_lengths = torch.tensor([5, 3, 0, 5, 4, 1])
    b = train.Batch(torch.randn(B, 30, 560), torch.tensor([30, 22, 17, 25, 30, 12]), torch.tensor([[0, 5, 6, 15]] * B),
                    ctc.masked_fill(torch.arange(5)[None] >= ctc_lengths[:, None], -1), ctc_lengths,
                    torch.randint(2, 20, (B, 4)), ids, torch.tensor([len(x) for x in llm]))
    with torch.no_grad():
        got = train.losses(m, b)
        enc, enc_lens = m.sv.encoder(torch.cat((m.sv.embed(b.query), b.feats), dim=1), b.lengths + 4)
        audio = m.adaptor(enc, mask=torch.arange(enc.shape[1])[None] < enc_lens[:, None])
        want = _per_utterance_llm_loss(m, audio, enc_lens, llm)
    assert torch.allclose(got["llm"], want, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(got["ctc"]) and torch.isfinite(got["rich"])


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
    assert [h["epoch"] for h in log["history"]] == [1, 2]
    assert set(log["heldout"]) == {"zh_heldout", "en_heldout", "zh_open", "en_open"}
    assert log["heldout"]["zh_open"]["utterances"] == 4 and log["heldout"]["en_open"]["nospeech"]["clips"] == 4
    first, last = log["history"][0], log["history"][-1]
    assert last["ctc"] < first["ctc"] and last["llm"] < first["llm"]  # it learns something
    import yaml

    assert yaml.safe_load((out / "sensevoice/config.yaml").read_text())["train_conf"]["recipe"]["train_per_lang"] == 100
    from funasr_qwen4b.app.cli import main

    assert main(["convert", "bundle", "--sensevoice", str(out / "sensevoice"), "--adaptor", str(out / "adaptor.pt"),
                 "--llm", str(out / "qwen3"), "-o", str(tmp_path / "bundle")]) == 0
