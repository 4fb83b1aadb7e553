"""The demonstration model's recipe: word lists, sentences, speakers, non-speech
sounds, vocabularies, the committed held-out sets, the feature cache, batches and
batched losses, a smoke run of the trainer, and a paused and resumed run that equals
an uninterrupted one (the last two need espeak-ng)."""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import itertools
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funasr_qwen4b.text import normalize
from training import corpus, data, speech, wordlists
from training.tokenizers import NONSPEECH_TAGS, build_ctc_bpe, build_llm_tokenizer, ctc_text
from tests.conftest import HANG_S

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
    _, pairs = corpus.open_heldout(lang, recipe.open_per_lang, recipe.seed, data.OPEN_PROBE_SHARES)
    found = corpus.Pairs(lang, pairs)
    assert len(pairs) > 2 * recipe.open_per_lang
    assert not [s for s in train if found.found_in(s)]
    assert found.found_in(corpus.join(lang, list(next(iter(sorted(pairs))))))  # the matcher does match
    assert all(len(corpus.tokens(lang, s)) <= corpus.OPEN_MAX_TOKENS[lang] for s in data.texts(recipe)[lang]["open"])


def test_open_sentences_adjacent_words_never_said_together_in_training():
    """English: where two pieces of an open sentence meet ("... five cents" + "men ..."), those two
    words occur next to each other in no training sentence (templates included), found here by
    plain text search; Mandarin has no word boundaries in its text, its pieces are its words."""
    recipe = data.Recipe()
    t = data.texts(recipe)["en"]
    compositions, _ = corpus.open_pieces("en", recipe.open_per_lang, recipe.seed, data.OPEN_PROBE_SHARES,
                                         exclude=data.committed_texts() | set(t["heldout"]))
    assert [corpus.join("en", parts) for parts in compositions] == t["open"]
    meet = {f" {normalize(a).split()[-1]} {normalize(b).split()[0]} " for parts in compositions
            for a, b in itertools.pairwise(parts)}
    assert len(meet) > recipe.open_per_lang
    said = "|".join(f" {normalize(s)} " for s in t["train"])
    assert not [m for m in meet if m in said]
    assert " cents men " in meet  # the pair of en_open_007 ("... five cents" + "men ..."): the check sees it


def test_training_text_mixes_templates_words_and_numbers():
    recipe = data.Recipe(train_per_lang=4000)
    train = data.texts(recipe)["en"]["train"]
    fixed = sum(s in corpus.PHRASES_EN for s in train) / len(train)  # one template in 12 is a fixed phrase
    assert abs(fixed - recipe.template_share / 12) < 0.01
    vocab = {w for s in train for w in corpus.tokens("en", s)}
    assert len(vocab) > 4000 and {"thousand", "percent", "quarter", "umbrella"} <= vocab


def test_training_draws_listed_words_at_the_recipes_exponent():
    """corpus.words draws ∝ count**exponent: of 100000 draws, the share of the most frequent word
    and of the 5000 least frequent is their count**e over the sum, within 4 binomial standard
    deviations, at the held-out sets' 0.6 and the recipe's 0.3; the recipe's exponent reaches the
    training text and leaves the held-out and open sentences as they are."""
    counts = wordlists.load("zh")[1]
    for e in (corpus.WORD_EXPONENT, data.Recipe().word_exponent):
        drawn = collections.Counter(corpus.words("zh", random.Random(1), 100000, e))
        w = [c ** e for c in counts]
        top, tail = w[0] / sum(w), sum(w[-5000:]) / sum(w)
        words = corpus._word_table("zh")[0]
        for p, got in ((top, drawn[words[0]]), (tail, sum(drawn[x] for x in words[-5000:]))):
            assert abs(got - 100000 * p) < 4 * (100000 * p * (1 - p)) ** 0.5, (e, got, 100000 * p)
    assert data.Recipe().word_exponent < corpus.WORD_EXPONENT
    flat, steep = (data.texts(data.Recipe(train_per_lang=300, word_exponent=e)) for e in (0.0, 0.6))
    for lang in ("zh", "en"):
        assert flat[lang]["heldout"] == steep[lang]["heldout"] and flat[lang]["open"] == steep[lang]["open"]
        assert flat[lang]["train"] != steep[lang]["train"]


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
    generated = set(speech.generated_variants(recipe.generated_voices))
    assert not generated & set(speech.VARIANTS_OPEN) and len(generated) == recipe.generated_voices
    said = [settings(it.speaker)[0] for it in train if it.text]
    assert abs(sum(v in generated for v in said) / len(said) - recipe.generated_share) < 0.05
    for it in train:
        if it.text:
            variant, speed, pitch = settings(it.speaker)
            assert (variant in speech.VARIANTS or variant in generated) and speed in speech.SPEEDS \
                and pitch in speech.PITCHES
            assert it.speaker.voice.partition("+")[0] not in speech.EN_ACCENTS_HELDOUT
        else:
            assert isinstance(it.speaker, speech.Sound)


@needs_espeak
def test_heldout_voices_sound_unlike_training_voices():
    """espeak-ng has aliases (caleb and klatt6 sound like klatt): no held-out variant may be one
    of a training variant, named or generated; the generated ones are voices of their own."""
    def say(variant: str) -> bytes:
        voice = f"{speech.ZH_VOICE}+{variant}" if variant else speech.ZH_VOICE
        return speech.synthesize("今天下午三点", speech.Speaker(voice, 175, 50)).tobytes()

    named = {say(v) for v in speech.VARIANTS}
    generated = {say(v) for v in speech.generated_variants(speech.GENERATED_MAX)}
    assert not [v for v in speech.VARIANTS_OPEN if say(v) in named | generated]
    assert len(generated) == speech.GENERATED_MAX and not generated & named


def test_bars_name_what_a_result_misses():
    from training.evaluate import misses

    ok = {"zh_open": {"llm_cer": 0.10, "llm_wer": 0.9, "nospeech": {"clips": 7, "empty": 7}},
          "en_open": {"llm_cer": 0.05, "llm_wer": 0.12, "nospeech": {"clips": 7, "empty": 7}},
          "zh_heldout": {"llm_cer": 0.0, "llm_wer": 0.0}, "en_heldout": {"llm_cer": 0.004, "llm_wer": 0.01}}
    assert misses(ok) == []
    bad = {**ok, "zh_open": {**ok["zh_open"], "llm_cer": 0.237}, "en_open": {**ok["en_open"], "llm_wer": 0.1723,
                                                                              "nospeech": {"clips": 7, "empty": 6}}}
    assert misses(bad) == ["zh_open CER 23.70% > 10%", "en_open WER 17.23% > 12%", "en_open non-speech 6/7 empty"]


def test_generated_voices_are_drawn_from_their_names(monkeypatch):
    text = speech.variant_text("fq0007")
    assert text == speech.variant_text("fq0007") != speech.variant_text("fq0008")
    lines = dict(line.split(" ", 1) for line in text.splitlines())
    assert lines["language"] == "variant" and lines["name"] == "fq0007"
    low, high = map(int, lines["pitch"].split())
    assert 65 <= low < high <= 310

    def spans() -> list[int]:
        pitch = [dict(line.split(" ", 1) for line in speech.variant_text(f"fq{i:04d}").splitlines())["pitch"]
                 for i in range(speech.GENERATED_MAX)]
        return [b - a for a, b in (map(int, p.split()) for p in pitch)]
    assert 15 <= min(spans()) < 30 and 85 < max(spans()) <= 100  # the recipe's 15-100 Hz
    monkeypatch.setattr(speech, "VARIANT_PITCH_RANGE", (60, 200))  # training.tones --variant-pitch-range
    assert 60 <= min(spans()) < 75 and 185 < max(spans()) <= 200
    with pytest.raises(ValueError, match="0..200"):
        speech.generated_variants(speech.GENERATED_MAX + 1)


def test_spec_augment_masks_the_same_bins_in_every_stacked_frame():
    """FunASR's SpecAugLFR as the trainer builds it: one band of mel bins, the same in each of
    the 7 stacked frames of a 560-wide LFR row, and one run of frames, each narrower than asked."""
    import torch

    from training import train

    torch.manual_seed(0)
    aug = train.spec_augment(train.Settings())
    x, _ = aug(torch.ones(64, 40, 560), torch.full((64,), 40))
    for row in x:
        kept_frames = row.abs().sum(1) > 0
        assert (~kept_frames).sum() < train.Settings.spec_time_width
        bins = row[kept_frames.nonzero()[0, 0]].view(7, 80) == 0
        assert (bins == bins[0]).all() and bins[0].sum() < train.Settings.spec_freq_width
    assert (x == 0).any() and (x == 1).any()
    assert train.spec_augment(train.Settings(spec_freq_width=0, spec_time_width=0)) is None


@pytest.mark.parametrize("freq, time, frames", [(20, 5, 40), (20, 5, 9), (20, 0, 30), (0, 5, 30), (3, 40, 60)])
def test_spec_augment_drawn_on_the_host_is_funasrs(freq, time, frames):
    """The trainer's SpecAugLFR draws on the CPU what FunASR's draws on the features' device: on
    the CPU the masked features are FunASR's bit for bit, seed for seed (short clips too, where
    FunASR bounds the positions by 1)."""
    import torch
    from funasr.models.specaug.specaug import SpecAugLFR

    from training.specaug import SpecAugLFR as HostDrawn

    funasr_aug = SpecAugLFR(apply_time_warp=False, apply_freq_mask=freq > 0, freq_mask_width_range=(0, freq),
                            num_freq_mask=1, lfr_rate=6, apply_time_mask=time > 0,
                            time_mask_width_range=(0, time), num_time_mask=1)
    ours = HostDrawn(freq, time, lfr_rate=6)
    x = torch.randn(16, frames, 560)
    masked = 0
    for seed in range(8):
        torch.manual_seed(seed)
        want, _ = funasr_aug(x.clone(), torch.full((16,), frames))
        torch.manual_seed(seed)
        got, _ = ours(x.clone(), torch.full((16,), frames))
        assert torch.equal(got, want), seed
        masked += int((got == 0).sum())
    assert masked > 0


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
    from funasr_qwen4b.testing import QWEN3_ADDED

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


def _per_utterance_llm_loss(m, audio, enc_lens, llm_ids, given=None):
    """The LLM loss of each utterance on its own: [audio rows, transcript] then averaged over tokens;
    `given[i]`: the transcript inputs utterance i is fed instead of its own labels shifted."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    for i, ids in enumerate(llm_ids):
        a, t = int(enc_lens[i]), torch.tensor(ids)
        inputs = torch.cat([audio[i, :a], m.llm.get_input_embeddings()(t[:-1] if given is None else given[i])])[None]
        logits = m.llm(inputs_embeds=inputs).logits[0, a - 1:]
        total, count = total + F.cross_entropy(logits, t, reduction="sum"), count + len(ids)
    return total / count


def _model_and_batch(llm: list[list[int]], lengths: list[int], ctc_lengths: list[int], tone_vocab: int = 0,
                     **settings):
    """A small DemoModel (seeded; `settings` for train.Settings; a tone head over `tone_vocab`
    syllables) and a batch of random features,
    CTC targets and tags for these transcripts; then the encoder's output, its lengths and the
    adaptor's rows, as the trainer computes them."""
    import torch

    from training import train

    torch.manual_seed(0)
    m = train.DemoModel(train.Settings(**settings), 200, 320, {"<|endoftext|>": 300, "<|im_end|>": 302},
                        torch.device("cpu"), tone_vocab)
    m.train(False)
    B = len(llm)
    ids = torch.zeros(B, max(map(len, llm)), dtype=torch.long)
    for j, x in enumerate(llm):
        ids[j, :len(x)] = torch.tensor(x)
    ctc = torch.randint(20, 190, (B, 5))
    ctc_lengths, lengths = torch.tensor(ctc_lengths), torch.tensor(lengths)
    llm_lengths = torch.tensor([len(x) for x in llm])
    b = train.Batch(torch.randn(B, 30, 560), lengths, torch.tensor([[0, 5, 6, 15]] * B),
                    ctc.masked_fill(torch.arange(5)[None] >= ctc_lengths[:, None], -1), ctc_lengths,
                    torch.randint(2, 20, (B, 4)), ids, llm_lengths, lengths.clone(), llm_lengths.clone())
    with torch.no_grad():
        enc, enc_lens = m.sv.encoder(torch.cat((m.sv.embed(b.query), b.feats), dim=1), b.lengths + 4)
        audio = m.adaptor(enc, mask=torch.arange(enc.shape[1])[None] < enc_lens[:, None])
    return m, b, enc, enc_lens, audio


def test_batched_losses_match_one_utterance_at_a_time():
    """The trainer builds the LLM's inputs and labels for the whole batch with index arithmetic:
    the loss is what each utterance gives alone, empty transcripts (non-speech) included."""
    import torch

    from training import train

    r = random.Random(0)
    llm = [[r.randrange(290) for _ in range(r.randint(1, 9))] + [302] for _ in range(6)]
    llm[2] = [302]  # no speech: <|im_end|> at once
    m, b, enc, enc_lens, audio = _model_and_batch(llm, [30, 22, 17, 25, 30, 12], [5, 3, 0, 5, 4, 1])
    with torch.no_grad():
        got = train.losses(m, b)
        want = _per_utterance_llm_loss(m, audio, enc_lens, llm)
        # FunASR's own CTC module (its loop over utterances), per target token as the trainer weighs it
        want_ctc = m.sv.ctc(enc[:, 4:], enc_lens - 4, b.ctc_targets, b.ctc_lengths) * len(llm) / b.ctc_lengths.sum()
    assert torch.allclose(got["llm"], want, rtol=1e-5, atol=1e-6)
    assert torch.allclose(got["ctc"], want_ctc, rtol=1e-6, atol=0)
    assert torch.isfinite(got["rich"])


def test_tone_loss_is_each_mandarin_clips_ctc_over_its_syllables():
    """The tone head's loss: torch's CTC loss of each Mandarin clip alone (non-speech included:
    no syllables), summed and divided by the batch's syllables; an English clip counts nothing,
    though all blanks would cost it something. A model without the head has no tone loss."""
    import torch
    import torch.nn.functional as F

    from training import train

    llm = [[5, 302]] * 5
    lengths = [30, 22, 17, 25, 12]
    m, b, enc, enc_lens, _ = _model_and_batch(llm, lengths, [3] * 5, tone_vocab=12, tone_weight=0.5)
    syllables = [[3, 3, 7, 1], [12, 5], [], [], [9, 9, 2]]  # clip 2: non-speech; clip 3: English
    zh = torch.tensor([True, True, True, False, True])
    width = max(map(len, syllables))
    targets = torch.tensor([x + [-1] * (width - len(x)) for x in syllables])
    b = dataclasses.replace(b, zh=zh, tone_targets=targets, tone_lengths=torch.tensor(list(map(len, syllables))))
    with torch.no_grad():
        got = train.losses(m, b)["tone"]
        want = 0.0
        for j, x in enumerate(syllables):
            if zh[j]:
                logp = m.tone(enc[j:j + 1, 4:4 + lengths[j]]).log_softmax(2).transpose(0, 1)
                want += float(F.ctc_loss(logp, torch.tensor([x], dtype=torch.long), [lengths[j]], [len(x)],
                                         reduction="sum"))
        english = m.tone(enc[3:4, 4:4 + lengths[3]]).log_softmax(2)[0, :, 0].sum()
    assert float(got) == pytest.approx(want / 9, rel=1e-5)
    assert float(-english) > 0.01 * want  # an unmasked English row would have shown
    m0, b0, *_ = _model_and_batch(llm, lengths, [3] * 5)
    assert m0.tone is None and float(train.losses(m0, b0)["tone"]) == 0.0


def test_toned_syllables_follow_espeaks_rules():
    """Hand-derived: the dictionary tone, 一 in its first tone, a third tone before a third tone
    in the same clause as a second (espeak-ng: 你好 n'i35 X'Au214; 展览馆 35 35 214)."""
    from training import tonal

    assert tonal.syllables("方房访放。") == ["fang1", "fang2", "fang3", "fang4"]
    assert tonal.syllables("你好。") == ["ni2", "hao3"]
    assert tonal.syllables("展览馆很好。") == ["zhan2", "lan2", "guan2", "hen2", "hao3"]
    assert tonal.syllables("你好，你好。") == ["ni2", "hao3", "ni2", "hao3"]  # not across the comma
    assert tonal.syllables("一千一百。") == ["yi1", "qian1", "yi1", "bai3"]
    ids, vocab = tonal.targets(["你好。", "", "好人。", "你好。"])
    assert vocab == ["hao3", "ni2", "ren2"] and ids == [[2, 1], [], [1, 3], [2, 1]]


def test_tone_targets_are_made_by_a_runs_first_call_and_read_by_the_next(tmp_path):
    from training import train

    clips = [data.Item("a", "zh", "你好。", None), data.Item("b", "en", "Hello.", None), data.Item("c", "zh", "", None)]
    assert train.tone_targets(clips, tmp_path, resumed=False) == ([[2, 1], [], []], ["hao3", "ni2"])
    kept = tmp_path / "tone_targets.json"
    kept.write_text(json.dumps({"ids": [[1], [], []], "vocab": ["x"]}), encoding="utf-8")
    assert train.tone_targets(clips, tmp_path, resumed=True) == ([[1], [], []], ["x"])
    assert train.tone_targets(clips, tmp_path, resumed=False) == ([[2, 1], [], []], ["hao3", "ni2"])
    assert json.loads(kept.read_text(encoding="utf-8"))["vocab"] == ["hao3", "ni2"]


@needs_espeak
def test_toned_syllables_agree_with_what_espeak_says():
    """On training sentences, the tones of tonal.syllables are those `espeak-ng -x` marks on
    98 % of the syllables (55 first, 35 second, 214 or 21 third, 51 fourth, any other neutral),
    one syllable a character; without the third-tone rule it would be about 90 %."""
    import re

    from training import tonal

    r = random.Random(7)
    said = [s for s in (corpus.train_sentence("zh", r, *data.Recipe().shares("zh")) for _ in range(600))
            if not re.search("[，：]", s)]  # a comma is a line of its own there
    lines = subprocess.run(["espeak-ng", "-q", "-x", "-v", speech.ZH_VOICE], input="".join(f"{s}\n" for s in said),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(lines) == len(said)
    tone = {"55": "1", "35": "2", "214": "3", "21": "3", "51": "4"}
    same = total = 0
    for s, line in zip(said, lines):
        theirs = [tone.get(m.group(1), "5") if (m := re.search(r"(\d+)", w)) else "5" for w in line.split()]
        ours = [p[-1] for p in tonal.syllables(s)]
        assert len(ours) == len(theirs), (s, line)
        same, total = same + sum(a == b for a, b in zip(ours, theirs)), total + len(ours)
    assert total > 5000 and same / total >= 0.97, same / total


def test_token_noise_feeds_the_llm_other_labels_and_keeps_its_targets():
    """With every transcript input replaced (token_noise 1), each one the LLM is given is a label of
    the batch, most differ from the transcript's, and the loss is what each utterance gives alone
    with those inputs and its own labels."""
    import torch

    from training import train

    r = random.Random(1)
    llm = [[r.randrange(290) for _ in range(r.randint(2, 9))] + [302] for _ in range(5)]
    m, b, enc, enc_lens, audio = _model_and_batch(llm, [30, 22, 17, 25, 12], [3] * 5)
    fed = []
    hook = m.llm.get_input_embeddings().register_forward_hook(lambda mod, args, out: fed.append(args[0].clone()))
    with torch.no_grad():
        got = train.losses(m, b, token_noise=1.0)
        hook.remove()
        given = [fed[0][i, int(enc_lens[i]):int(enc_lens[i]) + len(x) - 1] for i, x in enumerate(llm)]
        want = _per_utterance_llm_loss(m, audio, enc_lens, llm, given)
    labels = {v for x in llm for v in x}
    assert len(fed) == 1 and all(set(g.tolist()) <= labels for g in given)
    changed = sum(int((g != torch.tensor(x[:-1])).sum()) for g, x in zip(given, llm))
    assert changed > sum(len(x) - 1 for x in llm) // 2
    assert torch.allclose(got["llm"], want, rtol=1e-5, atol=1e-6)


def test_token_noise_of_a_row_replaces_that_rows_inputs_only():
    """A share for each row (Settings.token_noise_zh for Mandarin rows): the rows given none are fed
    their own transcripts, every input of the rows given 1 is a label of the batch, and the loss is
    what each utterance gives alone with those inputs."""
    import torch

    from training import train

    r = random.Random(4)
    llm = [[r.randrange(290) for _ in range(r.randint(3, 9))] + [302] for _ in range(5)]
    m, b, enc, enc_lens, audio = _model_and_batch(llm, [30, 22, 17, 25, 12], [3] * 5)
    fed = []
    hook = m.llm.get_input_embeddings().register_forward_hook(lambda mod, args, out: fed.append(args[0].clone()))
    torch.manual_seed(6)
    with torch.no_grad():
        got = train.losses(m, b, token_noise=torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0]))
        hook.remove()
        given = [fed[0][i, int(enc_lens[i]):int(enc_lens[i]) + len(x) - 1] for i, x in enumerate(llm)]
        want = _per_utterance_llm_loss(m, audio, enc_lens, llm, given)
    labels = {v for x in llm for v in x}
    for i in (1, 3, 4):
        assert given[i].tolist() == llm[i][:-1]
    assert all(set(given[i].tolist()) <= labels for i in (0, 2))
    assert sum(int((given[i] != torch.tensor(llm[i][:-1])).sum()) for i in (0, 2)) > (len(llm[0]) + len(llm[2])) // 2
    assert torch.allclose(got["llm"], want, rtol=1e-5, atol=1e-6)


def test_llm_mask_is_transformers_own_and_reads_nothing_from_the_device():
    """The trainer hands the LLM its 4D attention mask: the hidden states and gradients are those
    of transformers' own mask built from the [B, n] one, and the LLM's forward pass then reads no
    value from a tensor (on a GPU each such read waits for the device; transformers 5.25, building
    the mask itself, reads two)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from training import train

    class Reads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += func.overloadpacket is torch.ops.aten._local_scalar_dense
            return func(*args, **(kwargs or {}))

    m, *_ = _model_and_batch([[1, 302]], [30], [3])
    torch.manual_seed(3)
    ends = torch.tensor([[9], [4], [7]])  # row 0 unpadded, the others padded at the end
    pos = torch.arange(9)[None]
    x = torch.randn(3, 9, 256)
    mask = train.llm_mask(pos, ends)
    assert mask.shape == (3, 1, 9, 9) and mask.dtype == torch.bool
    assert mask[1, 0].tolist() == [[k <= q and k < 4 for k in range(9)] for q in range(9)]

    def run(attention_mask):
        xi = x.clone().requires_grad_()
        with Reads() as reads:
            h = m.llm.model(inputs_embeds=xi, attention_mask=attention_mask, use_cache=False).last_hidden_state
        h.square().sum().backward()
        return h.detach(), xi.grad, reads.n

    got, got_grad, reads = run(mask)
    want, want_grad, _ = run((pos < ends).long())
    assert reads == 0
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)


def test_llm_layers_are_recomputed_in_the_backward_pass_with_the_same_gradients(tmp_path):
    """With Settings.recompute_llm the trainer's LLM keeps no layer's activations for the backward
    pass (transformers' own gradient checkpointing; the recipe's): each layer runs again there,
    the loss and every gradient are those of the same model keeping them, and the model it
    writes is configured as one that never did."""
    import torch

    from training import train

    r = random.Random(2)
    llm = [[r.randrange(290) for _ in range(r.randint(2, 9))] + [302] for _ in range(4)]
    m, b, *_ = _model_and_batch(llm, [30, 22, 17, 25], [3] * 4, recompute_llm=True)
    m.train(True)
    calls = []
    m.llm.model.layers[0].self_attn.register_forward_pre_hook(lambda *_: calls.append(1))

    def step():
        for p in m.parameters():
            p.grad = None
        calls.clear()
        torch.manual_seed(5)  # the encoder's dropout and the token noise draw alike
        got = train.losses(m, b, token_noise=0.3)
        (got["ctc"] + got["rich"] + got["llm"]).backward()
        return [float(v) for v in got.values()], [p.grad.clone() for p in m.parameters()], len(calls)

    losses, grads, runs = step()
    m.llm.gradient_checkpointing_disable()
    want_losses, want_grads, want_runs = step()
    assert (runs, want_runs) == (2, 1)
    assert losses == want_losses
    assert all(torch.allclose(g, w, rtol=1e-5, atol=1e-7) for g, w in zip(grads, want_grads))
    m.llm.save_pretrained(tmp_path / "with")
    assert train.Settings().recompute_llm  # kept, an H100 ran out of memory (training/RUN.md)
    fresh = train.DemoModel(train.Settings(recompute_llm=False), 200, 320, {"<|endoftext|>": 300, "<|im_end|>": 302},
                            torch.device("cpu"))
    assert not fresh.llm.is_gradient_checkpointing
    fresh.llm.save_pretrained(tmp_path / "without")
    with_, without = (json.loads((tmp_path / f"{d}/config.json").read_text()) for d in ("with", "without"))
    settings = with_.pop("training"), without.pop("training")
    assert with_ == without and settings[0] == {**settings[1], "recompute_llm": True}


def test_bf16_steps_run_the_forward_pass_in_bfloat16_and_keep_float32_weights():
    """Settings.bf16: the step's forward pass runs under autocast (the LM head's output is
    bfloat16), its losses and gradients are the float32 step's to bfloat16's precision, and the
    weights, their gradients and the optimiser's state stay float32."""
    import torch

    from training import train

    r = random.Random(3)
    llm = [[r.randrange(290) for _ in range(r.randint(2, 9))] + [302] for _ in range(4)]
    out = {}
    for half in (False, True):
        m, b, *_ = _model_and_batch(llm, [30, 22, 17, 25], [3] * 4, bf16=half)
        b = dataclasses.replace(b, zh=torch.tensor([True, False, True, False]))
        seen = []
        m.llm.lm_head.register_forward_hook(lambda _m, _i, o: seen.append(o.dtype))
        params = m.parameters()
        opt = train.optimizer(params, train.Settings())
        torch.manual_seed(7)  # the token noise draws alike
        parts = train.train_step(m, opt, params, b, train.Settings(bf16=half), None, 1e-3)
        out[half] = ({k: float(v) for k, v in parts.items()}, seen, params, opt)
    (want, want_seen, want_p, _), (got, got_seen, got_p, opt) = out[False], out[True]
    assert (want_seen, got_seen) == ([torch.float32], [torch.bfloat16])
    assert got != want
    for k in ("ctc", "rich", "llm"):
        assert abs(got[k] - want[k]) <= 0.02 * abs(want[k]), (k, got[k], want[k])
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in got_p)
    assert all(v.dtype == torch.float32 for st in opt.state.values() for v in st.values() if v.is_floating_point())
    # the gradients are the float32 step's, to bfloat16's precision
    g, w = (torch.cat([p.grad.flatten() for p in ps]).double() for ps in (got_p, want_p))
    assert torch.nn.functional.cosine_similarity(g, w, dim=0) > 0.99


def test_ctc_loss_is_funasr_modules_with_its_gradients():
    """The trainer's CTC loss against FunASR's CTC module on the same weights: the same value and
    the same gradients (in training mode, empty targets included), and an utterance whose targets
    cannot fit its frames counts zero where the module drops it."""
    import torch

    from training import train

    torch.manual_seed(1)
    m = train.DemoModel(train.Settings(), 200, 320, {"<|endoftext|>": 300, "<|im_end|>": 302}, torch.device("cpu"))
    m.train(True)
    B, T = 5, 24
    lengths, tl = torch.tensor([24, 17, 9, 20, 13]), torch.tensor([7, 0, 4, 11, 2])
    targets = torch.randint(1, 200, (B, 11)).masked_fill(torch.arange(11)[None] >= tl[:, None], -1)
    enc = torch.randn(B, T, 256, requires_grad=True)

    def grads(loss):
        m.sv.ctc.ctc_lo.zero_grad()
        enc.grad = None
        loss.backward()
        return enc.grad.clone(), m.sv.ctc.ctc_lo.weight.grad.clone()

    got = train.ctc_loss(m, enc, lengths, targets, tl)
    got_grads = grads(got)
    want = m.sv.ctc(enc, lengths, targets, tl)
    want_grads = grads(want)
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-7)
    impossible = tl.clone()
    impossible[2] = 11  # 11 targets, 9 frames
    targets_2 = torch.randint(1, 200, (B, 11)).masked_fill(torch.arange(11)[None] >= impossible[:, None], -1)
    with torch.no_grad():
        per = [float(train.ctc_loss(m, enc[j:j + 1], lengths[j:j + 1], targets_2[j:j + 1], impossible[j:j + 1]))
               for j in range(B)]
        assert per[2] == 0.0
        assert float(train.ctc_loss(m, enc, lengths, targets_2, impossible)) == pytest.approx(sum(per) / B, rel=1e-6)


@needs_espeak
def test_heldout_audio_regenerates():
    """`python -m training.data --check`: the committed FLACs are what espeak-ng says now."""
    r = subprocess.run([sys.executable, "-m", "training.data", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout


@needs_espeak
def test_trainer_smoke_writes_original_formats(tmp_path):
    """--quick: a few hundred utterances, 2 epochs on the CPU (with the tone head and the forward
    pass in bfloat16, which the recipe leaves off); what it writes converts into a bundle."""
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "training.train", "--out", str(out), "--quick", "--workers", "2",
                        "--tone-weight", "0.5", "--bf16"],
                       cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("sensevoice/model.pt", "sensevoice/config.yaml", "sensevoice/am.mvn", "sensevoice/configuration.json",
              "adaptor.pt", "qwen3/config.json", "qwen3/model.safetensors", "qwen3/tokenizer.json",
              "training_log.json"):
        assert (out / f).is_file(), f
    log = json.loads((out / "training_log.json").read_text(encoding="utf-8"))
    assert [(h["epoch"], h["clips"]) for h in log["history"]] == [(1, 21), (2, 210), (3, 210)]  # 10 % first
    assert set(log["heldout"]) == {"zh_heldout", "en_heldout", "zh_open", "en_open"}
    assert log["heldout"]["zh_open"]["utterances"] == 4 and log["heldout"]["en_open"]["nospeech"]["clips"] == 4
    first, last = log["history"][0], log["history"][-1]
    assert last["ctc"] < first["ctc"] and last["llm"] < first["llm"] and last["tone"] < first["tone"]  # it learns
    import yaml

    assert yaml.safe_load((out / "sensevoice/config.yaml").read_text())["train_conf"]["recipe"]["train_per_lang"] == 100
    from funasr_qwen4b.app.cli import main

    assert main(["convert", "bundle", "--sensevoice", str(out / "sensevoice"), "--adaptor", str(out / "adaptor.pt"),
                 "--llm", str(out / "qwen3"), "-o", str(tmp_path / "bundle")]) == 0


# --- the feature cache, batches, pausing and resuming -----------------------------------------

def _quiet_items(n: int) -> list[data.Item]:
    """Non-speech clips (no espeak-ng needed), 0.5-1.5 s."""
    r = random.Random(0)
    return [data.Item(f"q{i}", "zh", "", speech.Sound(speech.NONSPEECH[i % 7], round(r.uniform(0.5, 1.5), 2),
                                                      -30.0, r.randrange(2**31))) for i in range(n)]


def test_feature_cache_is_made_once_and_completed(tmp_path, monkeypatch):
    """Chunks are what one worker computes from the clip alone; a missing chunk is made again,
    the others are kept; a cache of another recipe is replaced."""
    from training import features

    monkeypatch.setattr(features, "CHUNK", 4)
    items, recipe = _quiet_items(11), data.Recipe(train_per_lang=11)
    parts = features.layout(len(items), recipe.seed, 1 / 3)
    assert sorted(parts[0] + parts[1]) == list(range(11)) and len(parts[0]) == 4
    assert parts == features.layout(len(items), recipe.seed, 1 / 3)  # seeded
    cache = features.Cache(tmp_path / "c", recipe, parts)
    assert [len(c) for _, c in cache.chunks(1)] == [4, 3] and len(cache.missing(0)) == 1
    # one pool of workers for both runs below (FunASR's modules only, as on a GPU machine)
    with features.pool(2, True) as pool:
        for f in cache.submit(pool, 0, items) + cache.submit(pool, 1, items):
            f.result()
        assert not cache.missing(0) and not cache.missing(1)
        whole = cache.load(1)
        assert whole.index.tolist() == parts[1] and whole.feats.dtype == np.float16
        assert whole.feats.shape == (whole.frames.sum(), 560)
        wide = whole.feats.astype(np.float64)
        assert np.allclose(whole.s1, wide.sum(0)) and np.allclose(whole.s2, np.square(wide).sum(0))
        with pytest.raises(ValueError, match="holds other clips than this recipe's layout"):  # read in threads
            features.Cache(tmp_path / "c", recipe, [parts[0], parts[1][::-1]]).load(1)

        # one clip, made here, is the chunk's: synthesis, augmentation and features depend on the clip alone
        from funasr_qwen4b.config import FrontendConfig
        from funasr_qwen4b.reference.frontend import Frontend

        i = parts[1][0]
        x = data.augment(data.synthesize(items[i]), recipe, np.random.default_rng([recipe.seed, i, 0]))
        mine = Frontend(FrontendConfig(cmvn=False), None)(x).numpy().astype(np.float16)
        assert np.array_equal(whole.feats[:whole.frames[0]], mine)

        gone, _ = cache.chunks(1)[1]
        kept, _ = cache.chunks(1)[0]
        before = kept.stat().st_mtime_ns
        gone.unlink()
        again = features.Cache(tmp_path / "c", recipe, parts)  # a later run
        assert [p for p, _ in again.missing(1)] == [gone]
        # what a fitted run takes at an epoch's start: the written chunks up to the first that is not
        assert again.ready(1, 0).index.tolist() == parts[1][:4] and len(again.ready(1, 4).frames) == 0
        with pytest.raises(ValueError, match="does not begin a chunk"):
            again.ready(1, 2)
        for f in again.submit(pool, 1, items):
            f.result()
        assert again.ready(1, 4).index.tolist() == parts[1][4:]
    assert np.array_equal(again.load(1).feats, whole.feats) and kept.stat().st_mtime_ns == before
    other = features.Cache(tmp_path / "c", data.Recipe(train_per_lang=11, gain_db=(-6.0, 0.0)), parts)
    assert len(other.missing(0)) == 1 and len(other.missing(1)) == 2


def _tokenized_items(d: Path):
    """Four speech items and two non-speech ones, with tokenizers written into `d` from them."""
    from training import train

    texts = ["现在是下午三点二十分。", "It is ten twenty in the morning.", "今天是三月十五日，星期五。", "Good morning."]
    items = [data.Item(f"t{i}", "zh" if ord(t[0]) > 127 else "en", t, None) for i, t in enumerate(texts)]
    items += _quiet_items(2)
    train.write_tokenizers(d, train.Settings(ctc_vocab=120, llm_vocab=400),
                           [(it.text, it.lang) for it in items if it.text] * 10)
    return (items, *train.load_tokenizers(d))


def test_batches_gather_what_padding_built(tmp_path):
    """Examples keeps every feature on the device and gathers a batch; the batch is what the
    first trainer built by zero-padding each utterance's features, with the same targets."""
    import sentencepiece as spm
    import torch

    from funasr_qwen4b.config import LANGUAGE_IDS
    from funasr_qwen4b.testing import BPE_NAME
    from training import features, train

    d = tmp_path / "model"
    train_items, sp, tok = _tokenized_items(d)
    assert isinstance(sp, spm.SentencePieceProcessor) and (d / "sensevoice" / BPE_NAME).is_file()
    order = [4, 0, 3, 1, 5, 2]
    r = np.random.default_rng(0)
    frames = r.integers(5, 30, len(order))
    part = features.Part(r.normal(size=(frames.sum(), 560)).astype(np.float16), frames, np.array(order),
                         np.zeros(560), np.zeros(560))
    ex = train.Examples(train_items, order, sp, tok, torch.device("cpu"))
    ex.add(part)
    shift, scale = torch.randn(560), torch.rand(560) + 0.5
    rows = np.split(part.feats, np.cumsum(frames)[:-1])
    seen = []
    for ks, b in ex.batches(random.Random(3), 6, 4, (shift, scale)):
        T = int(frames[ks].max())
        assert b.feats.dtype == torch.float32 and b.feats.shape == (len(ks), T, 560)
        assert b.lengths.tolist() == b.host_lengths.tolist() == frames[ks].tolist()
        assert b.host_lengths.device.type == b.ctc_lengths.device.type == "cpu"
        assert torch.equal(b.host_llm_lengths, b.llm_lengths.cpu())
        for j, k in enumerate(ks):
            seen.append(k)
            it = train_items[order[k]]
            padded = torch.zeros(T, 560)
            padded[:frames[k]] = features.from_grid(features.to_grid(torch.from_numpy(rows[k])))
            assert torch.equal(b.feats[j], (padded + shift) * scale * (torch.arange(T) < frames[k])[:, None])
            ctc = sp.encode(train.ctc_text(it.text, it.lang)) if it.text else []
            assert b.ctc_targets[j, :len(ctc)].tolist() == ctc and (b.ctc_targets[j, len(ctc):] == -1).all()
            assert int(b.ctc_lengths[j]) == len(ctc)
            ids = tok.encode(it.text, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
            assert b.llm_ids[j, :len(ids)].tolist() == ids and (b.llm_ids[j, len(ids):] == 0).all()
            assert int(b.llm_lengths[j]) == len(ids)
            assert int(b.query[j, 0]) in {LANGUAGE_IDS[q] for q in train.QUERY_LANGUAGES}
            assert sp.id_to_piece(int(b.tags[j, 0])) == (f"<|{it.lang}|>" if it.text else "<|nospeech|>")
            assert bool(b.zh[j]) == (it.lang == "zh")
    assert sorted(seen) == list(range(6))


def test_features_are_held_on_a_grid_of_256_points_from_the_log_floor():
    """The device's uint8 rows: fbank's floor (digital silence) and every grid point come back
    exactly, any value within the grid within half a step (0.094), values beyond it clamped."""
    import torch

    from training import features

    floor = float(np.log(np.float32(np.finfo(np.float32).eps)))  # kaldi's log floor: -15.942385
    step = (32 - floor) / 255
    assert features.GRID_STEP == pytest.approx(step) and 0.18 < step < 0.19
    points = torch.tensor([floor + k * step for k in range(256)])
    assert torch.equal(features.to_grid(points), torch.arange(256, dtype=torch.uint8))
    assert torch.allclose(features.from_grid(torch.arange(256, dtype=torch.uint8)), points, atol=1e-5, rtol=0)
    assert features.from_grid(features.to_grid(torch.tensor([floor]))).item() == pytest.approx(floor, abs=1e-6)
    x = torch.from_numpy(np.random.default_rng(0).uniform(floor, 32, 10000).astype(np.float16))
    assert (features.from_grid(features.to_grid(x)) - x.float()).abs().max() <= step / 2 + 1e-5
    assert features.to_grid(torch.tensor([-40.0, 33.0, 1e4])).tolist() == [0, 255, 255]


class _SixClips:
    """Six tokenized clips (two of 5 feature rows, four of 30) in a training order; `part(a, b)`
    is the features of the order's clips a..b-1, `examples()` an empty Examples on the CPU."""

    order, frames = [4, 0, 3, 1, 5, 2], np.array([5, 5, 30, 30, 30, 30])

    def __init__(self, tmp_path):
        self.items, self.sp, self.tok = _tokenized_items(tmp_path)
        self.feats = np.random.default_rng(1).normal(size=(self.frames.sum(), 560)).astype(np.float16)
        self.first = np.concatenate(([0], np.cumsum(self.frames)))

    def part(self, a: int, b: int):
        from training import features

        return features.Part(self.feats[self.first[a]:self.first[b]], self.frames[a:b], np.array(self.order[a:b]),
                             np.zeros(560), np.zeros(560))

    def examples(self):
        import torch

        from training import train

        return train.Examples(self.items, self.order, self.sp, self.tok, torch.device("cpu"))


def _same_batches(a, b, n: int, batch_size: int) -> None:
    import torch

    cmvn = (torch.zeros(560), torch.ones(560))
    pairs = zip(a.batches(random.Random(5), n, batch_size, cmvn), b.batches(random.Random(5), n, batch_size, cmvn))
    for (ka, x), (kb, y) in pairs:
        assert ka.tolist() == kb.tolist() and torch.equal(x.feats, y.feats) and torch.equal(x.llm_ids, y.llm_ids)


def test_examples_added_in_parts_are_the_examples_added_at_once(tmp_path):
    """A fitted run adds the clips as they are made: the buffer sized on the first (short) ones
    is outgrown and moved, and the batches are those of the features added at once."""
    import torch

    clips = _SixClips(tmp_path)
    whole, grown = clips.examples(), clips.examples()
    grown.SLICE = 7  # and its rows go onto the device a few at a time
    whole.add(clips.part(0, 6))
    grown.add(clips.part(0, 2))
    assert len(grown.feats) == 10 + math.ceil(1.05 * 5 * 4)  # room at 5 % over 5 rows a clip
    with pytest.raises(ValueError, match="not the examples' next ones"):
        grown.add(clips.part(3, 4))
    grown.add(clips.part(2, 6))
    assert grown.rows == whole.rows == 130 and torch.equal(grown.feats[:130], whole.feats[:130])
    _same_batches(whole, grown, 6, 4)


def test_examples_beyond_the_device_budget_are_left_out(tmp_path):
    """A device too small for every clip's features holds those that fit its budget, in order,
    and the batches over them are those of the same clips added without a budget."""
    import torch

    clips = _SixClips(tmp_path)
    whole, small = clips.examples(), clips.examples()
    whole.add(clips.part(0, 6))
    small.add(clips.part(0, 2))
    # 0.95 of 47158 bytes less 1.1 of 0 is 44800 = 80 rows of 560 uint8: a buffer of 80 rows,
    # which holds the 10 rows there and two clips of 30
    small.set_device_need(0, 47158)
    small.add(clips.part(2, 6))
    assert len(small.feats) == 80 and small.loaded == 4 and small.rows == 70 and small.full
    assert torch.equal(small.feats[:70], whole.feats[:70])
    small.add(clips.part(4, 6))
    assert small.loaded == 4  # full: nothing more is taken
    _same_batches(whole, small, 4, 2)


def test_schedule_counts_early_and_whole_epochs():
    from training import train

    s = train.Settings()
    sizes = s.epoch_clips(63000, 189000)
    assert sizes == [63000] * s.early_epochs + [189000] * s.epochs
    assert train.Settings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="encoder"):
        train.Settings.from_dict({**s.to_dict(), "encoder": {**train.ENCODER, "num_blocks": 1}})
    with pytest.raises(ValueError, match="has no steps: another version"):
        train.Settings.from_dict({k: v for k, v in s.to_dict().items() if k != "steps"})
    old = s.to_dict()
    del old["recipe"]["word_exponent"]  # a checkpoint of the trainer before the recipe had one
    with pytest.raises(ValueError, match="recipe has no word_exponent: another version"):
        train.Settings.from_dict(old)
    total = sum(-(-k // s.batch_size) for k in sizes)
    lrs = [train.cosine_lr(i, total, s) for i in range(total)]
    assert max(lrs) == s.lr and lrs[-1] < 1e-3 * s.lr

    # Refitted at step 3000 of 5000 (half-way through the cosine after 1000 steps of warm-up) to
    # 7000 steps: the steps before it keep their rates, the cosine goes on from a half to the end.
    fitted = dataclasses.replace(s, steps=5000)
    r = dataclasses.replace(fitted, steps=7000, refits=((3000, 0.5),))
    assert train.Settings.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert train.cosine_lr(2000, 7000, r) == train.cosine_lr(2000, 5000, fitted) == s.lr * 0.5 * (1 + math.cos(math.pi / 4))
    assert train.cosine_lr(3000, 7000, r) == train.cosine_lr(3000, 5000, fitted) == pytest.approx(s.lr / 2)
    assert train.cosine_lr(5000, 7000, r) == pytest.approx(s.lr * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert train.cosine_lr(6999, 7000, r) < 1e-6 * s.lr and train.cosine_lr(999, 7000, r) == s.lr
    # shrunk at step 4000 (progress 3/4) of that to 4100
    q = dataclasses.replace(r, steps=4100, refits=((3000, 0.5), (4000, 0.625)))
    assert train.cosine_lr(4050, 4100, q) == pytest.approx(s.lr * 0.5 * (1 + math.cos(math.pi * 0.8125)))


# The trainer's dimensions, shrunk for a CPU: the schedule, data, checkpoint and resume are the real ones.
_TINY = ("import sys, training.train as t; "
         "t.ENCODER.update(output_size=64, attention_heads=2, linear_units=128, num_blocks=2, kernel_size=5); "
         "t.ADAPTOR.update(encoder_dim=64, d_model=32, num_layers=1, dim_feedforward=64, llm_dim=64, nhead=4); "
         "t.QWEN3.update(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, "
         "head_dim=32, intermediate_size=128); "
         "import training.features as f; f.CHUNK = 16; "
         "sys.exit(t.main(sys.argv[1:]))")
# As on a GPU machine (training/gpu_calls.sh): FunASR's model modules without its package
# __init__, which imports the whole toolkit in the trainer and in each feature worker.
_TINY_ARGS = ("--workers", "2", "--device", "cpu", "--no-eval", "--funasr-modules-only")


def _tiny_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _TINY, *_TINY_ARGS, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    """One uninterrupted --quick run of the tiny model: the run several tests compare with or
    start from, and (in its work directory) the feature cache their own runs start from."""
    out = tmp_path_factory.mktemp("quick") / "a"
    r = _tiny_train("--out", str(out), "--quick")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _cache_of(run: Path, tmp_path: Path) -> list[str]:
    """--data-cache with a copy of `run`'s feature cache: its features are not made again (they
    are the same in every run, fresh or from the cache), and no test touches another's files."""
    copy = tmp_path / "features"
    shutil.copytree(run.with_name(run.name + ".work") / "data", copy)
    return ["--data-cache", str(copy)]


def _weights(d: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    return {**{f"sv.{k}": v for k, v in torch.load(d / "sensevoice/model.pt", weights_only=True).items()},
            **{f"ad.{k}": v for k, v in torch.load(d / "adaptor.pt", weights_only=True)["model_state_dict"].items()},
            **{f"llm.{k}": v for k, v in load_file(d / "qwen3/model.safetensors").items()}}


@needs_espeak
def test_profiled_steps_are_logged_and_kept(tmp_path, quick_run):
    """--profile-steps 2 3: this process's steps 3-5 under torch.profiler, summarised in the log
    and in the call's record; on a CPU no device is ever busy, and the steps still run aten calls."""
    out = tmp_path / "p"
    r = _tiny_train("--out", str(out), "--quick", "--profile-steps", "2", "3", *_cache_of(quick_run, tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "profiled steps 3-5 of this process: " in r.stderr, r.stderr[-3000:]
    prof = json.loads((out / "training_log.json").read_text(encoding="utf-8"))["calls"][0]["profile"]
    assert prof["steps"] == [3, 5] and prof["device_busy_s"] == 0 and prof["device_events"] == 0
    assert prof["aten_ops"] > 0 and prof["wall_s"] > 0


@needs_espeak
def test_paused_and_resumed_run_is_the_uninterrupted_run(tmp_path, quick_run):
    """Paused inside and at the end of epochs, by time, epoch and step (first in the early epoch,
    while the other clips' features are being made, so the run that resumes makes the rest),
    its model once written early by --max-minutes, resumed to the end: the same losses and
    bitwise the same weights as one uninterrupted run; the last leg makes no features.
    A limit of 0 minutes stops after the first step whatever the machine's speed."""
    import torch

    a, b = quick_run, tmp_path / "b"
    assert not (a.with_name("a.work") / "checkpoint.pt").exists()  # finished: nothing to resume

    # --quick: 2 steps of 16 over 21 clips, then 2 epochs of 14 over 210: 30 steps
    ckpt = tmp_path / "b.work" / "checkpoint.pt"
    legs = [(["--quick", "--pause-after-minutes", "0"], [], "paused after step 1 of epoch 1 of 3, step 1 of 30"),
            (["--pause-after-epochs", "1"], ["resuming in epoch 1 after its step 1 (step 1)"],
             "paused after epoch 1 of 3, step 2 of 30"),
            (["--pause-after-steps", "9"], ["resuming after epoch 1 (step 2)"],
             "paused after step 7 of epoch 2 of 3, step 9 of 30"),
            (["--max-minutes", "0"], ["resuming in epoch 2 after its step 7 (step 9)"],
             "stopped by --max-minutes after step 8 of epoch 2 of 3, step 10 of 30"),
            ([], ["resuming in epoch 2 after its step 8 (step 10)", "; 0 chunks made)"], None)]
    for i, (args, says, last) in enumerate(legs):
        r = _tiny_train("--out", str(b), *(["--resume", str(ckpt)] if i else []), *args)
        assert r.returncode == 0, r.stderr[-3000:]
        assert all(x in r.stderr for x in says), (i, r.stderr[-3000:])
        if last is None:
            assert not ckpt.exists()
        else:
            assert last in r.stderr and ckpt.is_file(), (i, r.stderr[-3000:])
        if "--max-minutes" in args:  # written early, its checkpoint kept: a new --out finishes it
            assert last in json.loads((b / "training_log.json").read_text(encoding="utf-8"))["cut"]
            shutil.rmtree(b)
        else:
            assert b.exists() == (last is None)

    la, lb = (json.loads((d / "training_log.json").read_text(encoding="utf-8")) for d in (a, b))
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(la["history"]) == strip(lb["history"]) and len(la["history"]) == 3
    assert [(c["from_epoch"], c["to_epoch"], c["to_step"]) for c in lb["calls"]] == \
        [(0, 0, 1), (0, 1, 2), (1, 1, 9), (1, 1, 10), (1, 3, 30)]
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for f in ("sensevoice/am.mvn", "qwen3/tokenizer.json", "sensevoice/config.yaml"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f

    # Fitted to a time too short for more: the schedule ends with the second epoch, which (like
    # the first) trains as in the recipe's schedule.
    c = tmp_path / "c"
    r = _tiny_train("--out", str(c), "--quick", "--fit-minutes", "0.001", *_cache_of(a, tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "16 steps in all (the recipe's 30)" in r.stderr
    lc = json.loads((c / "training_log.json").read_text(encoding="utf-8"))
    assert lc["settings"]["steps"] == 2 + 14 and strip(lc["history"]) == strip(la["history"])[:2]


@needs_espeak
def test_fitted_run_trains_on_the_clips_made_by_each_epoch(tmp_path):
    """Fitted after its one early epoch (the other clips still being made), each later epoch
    takes the clips written by its start: never fewer than the last, its steps those clips' or
    what is left of the fitted steps, which are all trained. How many clips an epoch finds
    and how many steps fit depend on the machine's speed; what holds for any speed is asserted."""
    script = _TINY.replace("sys.exit(", "t.FIT_AFTER_EPOCHS = 1; sys.exit(")
    c = tmp_path / "c"
    r = subprocess.run([sys.executable, "-c", script, *_TINY_ARGS, "--out",
                        str(c), "--quick", "--fit-minutes", "1"], cwd=ROOT, capture_output=True, text=True,
                       timeout=HANG_S)
    assert r.returncode == 0, r.stderr[-3000:]
    lc = json.loads((c / "training_log.json").read_text(encoding="utf-8"))
    h, total = lc["history"], lc["settings"]["steps"]
    assert h[0]["clips"] == 21 and "steps" not in h[0]  # the first share of 210: 2 steps of 16
    later = h[1:]
    assert all(21 <= a["clips"] <= b["clips"] <= 210 for a, b in zip(later, later[1:] + [{"clips": 210}]))
    assert 2 + sum(row["steps"] for row in later) == total
    assert all(row["steps"] == math.ceil(row["clips"] / 16) for row in later[:-1])
    assert later == [] or 0 < later[-1]["steps"] <= math.ceil(later[-1]["clips"] / 16)
    assert lc["settings"]["early_epochs"] == 1 and not (tmp_path / "c.work" / "checkpoint.pt").exists()


@needs_espeak
def test_resumed_fitted_run_refits_the_rest_of_its_cosine(tmp_path, quick_run):
    """--fit-minutes given to a resumed fitted run: after its first REFIT_AFTER_STEPS steps (4
    here), and after each further 4, the rest of the cosine goes on from where it stood over the
    steps that fit. Fitted first to 600 minutes (far past the hang guard, so thousands of steps on
    any machine) and paused at step 9; resumed, still fitted to 600 minutes, and paused at step 17
    after refits at steps 13 and 17; resumed again and refitted to a time already past: one step
    more."""
    import re

    import torch

    from training import train

    script = _TINY.replace("sys.exit(", "t.FIT_AFTER_EPOCHS = 1; t.REFIT_AFTER_STEPS = 4; sys.exit(")
    c, ckpt = tmp_path / "c", tmp_path / "c.work" / "checkpoint.pt"

    def go(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-c", script, *_TINY_ARGS, "--out", str(c), *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=HANG_S)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    def refits(stderr: str) -> list[tuple[int, int]]:
        return [(int(new), int(old)) for new, old in
                re.findall(r"schedule refitted to [0-9.]+ minutes at [0-9.]+ s a step: (\d+) steps in all instead of "
                           r"(\d+)", stderr)]

    r = go("--quick", "--fit-minutes", "600", "--pause-after-steps", "9", *_cache_of(quick_run, tmp_path))
    fitted = int(re.search(r"s a step: (\d+) steps in all", r.stderr).group(1))
    assert f"step 9 of {fitted}" in r.stderr and fitted > 30
    r = go("--resume", str(ckpt), "--fit-minutes", "600", "--pause-after-steps", "17")
    middle = refits(r.stderr)
    assert len(middle) == 2 and middle[0][1] == fitted and middle[1][1] == middle[0][0], r.stderr[-3000:]
    assert middle[0][0] > 17 and middle[1][0] > 21  # the schedule goes on past the last resume's refit
    paused = torch.load(ckpt, weights_only=False)["settings"]  # our own file, not a weights-only pickle
    r = go("--resume", str(ckpt), "--fit-minutes", "0")
    assert refits(r.stderr) == [(22, middle[1][0])], r.stderr[-3000:]
    log = json.loads((c / "training_log.json").read_text(encoding="utf-8"))
    # --quick warms up over 5 steps: at step 13 the cosine stood at (13 - 5) / (fitted - 5), and
    # each later refit starts from where the one before had put it
    ls = log["settings"]
    want = dataclasses.replace(train.Settings(), warmup_steps=ls["warmup_steps"], lr=ls["lr"])
    total, knots = fitted, []
    for at, new in zip((13, 17, 21), (middle[0][0], middle[1][0], 22)):
        knots.append((at, train.cosine_progress(at, total, want)))
        want, total = dataclasses.replace(want, steps=new, refits=tuple(knots)), new
    assert ls["warmup_steps"] == 5 and knots[0][1] == 8 / (fitted - 5)
    assert paused["steps"] == middle[1][0] and tuple(map(tuple, paused["refits"])) == tuple(knots[:2])
    assert log["settings"]["steps"] == 22 and log["settings"]["refits"] == [list(k) for k in knots]
    assert log["history"][-1]["lr"] == round(train.cosine_lr(21, 22, want), 7)
    assert sum(row.get("steps", 2) for row in log["history"]) == 22 and not ckpt.exists()


def test_resume_refuses_what_it_cannot_do(tmp_path):
    from training import train

    with pytest.raises(SystemExit, match="no checkpoint at"):
        train.main(["--out", str(tmp_path / "m"), "--resume", str(tmp_path / "gone" / "checkpoint.pt")])
    with pytest.raises(SystemExit, match="drop --seed, --epochs, --quick"):
        train.main(["--out", str(tmp_path / "m"), "--resume", str(tmp_path / "checkpoint.pt"), "--quick"])
    with pytest.raises(SystemExit, match="drop --seed, --epochs, --quick, --work, --init, --lr, --tone-weight and --bf16"):
        train.main(["--out", str(tmp_path / "m"), "--resume", str(tmp_path / "checkpoint.pt"), "--init", "m0"])
    with pytest.raises(SystemExit, match="--bf16"):
        train.main(["--out", str(tmp_path / "m"), "--resume", str(tmp_path / "checkpoint.pt"), "--bf16"])
    with pytest.raises(SystemExit, match="--tone-weight"):
        train.main(["--out", str(tmp_path / "m"), "--resume", str(tmp_path / "checkpoint.pt"), "--tone-weight", "0"])
    with pytest.raises(SystemExit, match="--tone-weight -1.0: give a weight of 0 or more"):
        train.main(["--out", str(tmp_path / "m"), "--tone-weight", "-1"])


@needs_espeak
def test_a_run_from_a_trained_model_starts_from_its_weights_tokenizers_and_cmvn(tmp_path, quick_run):
    """--init with its bfloat16 copy: at a learning rate of 0 the weights written are the copy's,
    bit for bit (bfloat16 values widened); the tokenizers and the am.mvn are the model's; the
    first epoch's losses are those of a trained model, not a random one; the record says where
    the run started. A model of another recipe is refused before any work."""
    import torch

    from training import bf16_copy, train

    a, half, b = quick_run, tmp_path / "a16", tmp_path / "b"
    assert bf16_copy.main([str(a), str(half)]) == 0
    wa, wh = _weights(a), _weights(half)
    assert wa.keys() == wh.keys()
    assert all(torch.equal(wh[k], wa[k].bfloat16() if wa[k].is_floating_point() else wa[k]) for k in wa)
    size = lambda d: sum((d / f).stat().st_size  # noqa: E731
                         for f in ("sensevoice/model.pt", "adaptor.pt", "qwen3/model.safetensors"))
    assert size(half) < 0.55 * size(a)

    r = _tiny_train("--out", str(b), "--quick", "--init", str(half), "--lr", "0", *_cache_of(a, tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    wb = _weights(b)
    assert wb.keys() == wh.keys() and all(torch.equal(wb[k], wh[k].float()) for k in wb if wh[k].is_floating_point())
    for f in ("sensevoice/am.mvn", "sensevoice/chn_jpn_yue_eng_ko_spectok.bpe.model", "qwen3/tokenizer.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    la, lb = (json.loads((d / "training_log.json").read_text(encoding="utf-8")) for d in (a, b))
    assert lb["settings"]["init"] == {"model": str(half), "steps": 30, "minutes": la["minutes"], "device": "cpu",
                                      "init": None}
    assert lb["settings"]["lr"] == 0
    first_a, first_b, last_a = la["history"][0], lb["history"][0], la["history"][-1]
    assert all(first_b[k] < first_a[k] and first_b[k] < 1.5 * last_a[k] for k in ("ctc", "llm")), (first_b, la)

    with pytest.raises(SystemExit, match="trained with another recipe"):
        train.main(["--out", str(tmp_path / "c"), "--init", str(half)])
    with pytest.raises(SystemExit, match="no training_log.json"):
        train.main(["--out", str(tmp_path / "c"), "--init", str(tmp_path), "--quick"])
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.work").exists()
    with pytest.raises(SystemExit, match="has no sensevoice/model.pt, adaptor.pt"):
        bf16_copy.main([str(tmp_path), str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="a16 exists"):
        bf16_copy.main([str(a), str(half)])
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.partial").exists()


def test_mandarin_training_text_drills_one_character_words():
    """A tenth of the Mandarin sentences (taken from the word sequences) string 3-10 one-character
    words of the list together; English keeps its mix."""
    one_char = {w for w in wordlists.load("zh")[0] if len(w) == 1}
    r = random.Random(0)
    drills = [corpus.train_sentence("zh", r, 0.0, 0.0, 1.0) for _ in range(300)]
    assert all(3 <= len(corpus.tokens("zh", s)) <= 10 and set(corpus.tokens("zh", s)) <= one_char for s in drills)
    recipe = data.Recipe()
    assert recipe.shares("zh") == (0.08, 0.36, 0.10) and recipe.shares("en") == (0.08, 0.46, 0.0)
    # the flatter draw reaches the rare characters: of the draws, 79 % fall outside the 200 most
    # frequent one-character words under count**0.3, 59 % under the word sequences' count**0.6
    top = set(sorted(one_char, key=dict(zip(*wordlists.load("zh"))).get, reverse=True)[:200])
    said = [t for s in drills for t in corpus.tokens("zh", s)]
    assert sum(t not in top for t in said) > 0.7 * len(said)


# The fitted run below on a "device" that holds only the first clips: the features' chunks are
# made by a thread pool in the trainer's process (so that this script's _make_chunk is the one
# run), and every chunk of the other clips but the first waits until the model is written.
_FULL = _TINY.replace("sys.exit(", """t.FIT_AFTER_EPOCHS = 1; import os, time, concurrent.futures as cf
make, add = f._make_chunk, t.Examples.add
def slow(job):
    if "/p1_" in job[0] and not job[0].endswith("_00000.npz"):
        while not os.path.exists(sys.argv[sys.argv.index("--out") + 1] + "/training_log.json"):
            time.sleep(0.05)
        return job[0]
    return make(job)
def small(self, part):
    if self.feats is not None and self.budget is None:  # the first clips are in: 8 rows more fit, no clip
        self.feats, self.budget = self.feats[:self.rows].clone(), self.feats.element_size() * f.DIM * (self.rows + 8)
    add(self, part)
f._make_chunk, f.pool, t.Examples.add = slow, lambda workers, modules_only: cf.ThreadPoolExecutor(1), small
sys.exit(""")


_STOP = """import subprocess, sys
from pathlib import Path
from training import features
d = Path(sys.argv[1])
ex = features.pool(1, False)
made = [ex.submit(subprocess.call, ["sh", "-c", f"while [ ! -e {d}/go ]; do sleep 0.05; done; touch {d}/ran_{i}"])
        for i in range(20)]
features.stop(ex, made, wait=False)
del ex  # as the trainer does: nothing holds the pool any more
(d / "go").touch()
"""


def test_stopping_the_feature_workers_cancels_the_chunks_not_begun(tmp_path):
    """The process exits once the chunks already handed to the worker are made, not after all of
    them (the run then sat out its device call making features it would never train on)."""
    r = subprocess.run([sys.executable, "-c", _STOP, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=HANG_S)
    assert r.returncode == 0, r.stderr[-3000:]
    ran = len(list(tmp_path.glob("ran_*")))
    assert ran <= 3, ran  # the one in the worker and the two queued for it (workers + 1) at most


@needs_espeak
def test_a_full_device_stops_the_features_it_cannot_take(tmp_path):
    """Once the device's buffer is full, the run does not wait for the features of clips it will
    not train on: here they wait for the model, so a run that waited for them would never end."""
    c = tmp_path / "c"
    r = subprocess.run([sys.executable, "-c", _FULL, *_TINY_ARGS, "--out", str(c),
                        "--quick", "--fit-minutes", "1"], cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
    assert r.returncode == 0, r.stderr[-3000:]
    h = json.loads((c / "training_log.json").read_text(encoding="utf-8"))["history"]
    assert all(row["clips"] == 21 for row in h)  # the first share of 210, the only clips held
    if "the device holds the features of 21 of the 210 clips" in r.stderr:  # the first chunk was made in time
        assert "the features of the other 189 clips are not made" in r.stderr
