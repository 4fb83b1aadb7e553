"""training.analyse's breakdown of errors by the kind of piece, against hand-derived values."""

import shutil

import pytest

from tests.conftest import DEMO
from training import analyse, speech, wordlists


def test_piece_kinds_follow_the_pieces():
    # 现象 and 叫 are listed words (jieba's list), 二十八块 a money piece of four characters
    assert analyse.piece_kinds("zh", ["现象", "叫", "二十八块"]) == \
        ["longer_word"] * 2 + ["one_token_word"] + ["number"] * 4
    # a domain phrase of two words, a listed word, a time of two words
    assert analyse.piece_kinds("en", ["post office", "people", "seven thirty"]) == \
        ["longer_word"] * 2 + ["one_token_word"] + ["number"] * 2


def test_token_hits_mark_what_the_alignment_matches():
    # 叫→教 and 二十→而是 are substitutions; the rest match
    assert analyse.token_hits(list("现象叫二十八块"), list("现象教而是八块")) == [True, True, False, False, False, True, True]
    # b substituted, d deleted, e inserted
    assert analyse.token_hits(["a", "b", "c", "d"], ["a", "x", "c", "e", "f"]) == [True, False, True, False]
    assert analyse.token_hits(["a", "b"], ["e", "a", "b"]) == [True, True]
    assert analyse.token_hits(["a", "b"], []) == [False, False]
    assert analyse.token_hits([], ["a"]) == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tone_sets_differ_in_their_tone_alone():
    """Each probe set is four one-character words of the list that espeak-ng says with the same
    phonemes in four different tones."""
    listed = set(wordlists.load("zh")[0])
    for chars in analyse.TONE_SETS:
        said = [analyse.phonemes("zh", c) for c in chars]
        assert len(chars) == 4 and set(chars) <= listed
        assert len({p.translate(analyse._TONE_STRESS) for p in said}) == 1 and len(set(said)) == 4, (chars, said)
    assert analyse.TONE_SPEAKER.voice.partition("+")[2] in speech.VARIANTS
    assert analyse.TONE_SPEAKER.speed in speech.SPEEDS and analyse.TONE_SPEAKER.pitch in speech.PITCHES


def test_pitch_track_follows_a_glide():
    """A harmonic tone gliding from 120 to 100 Hz: its track falls by log(120/100) from end to
    end, evenly; a steady one is flat; silence gives zeros."""
    import numpy as np

    from training import tones

    sr, n = 16000, 16000
    f = np.linspace(120.0, 100.0, n)
    phase = 2 * np.pi * np.cumsum(f) / sr
    glide = sum(np.sin(k * phase) / k for k in range(1, 6))
    y = tones.pitch_track(glide)
    assert abs((y[0] - y[-1]) - np.log(120 / 100)) < 0.03 and np.all(np.diff(y) < 0)
    steady = sum(np.sin(2 * np.pi * k * 110.0 * np.arange(n) / sr) / k for k in range(1, 6))
    assert np.abs(tones.pitch_track(steady)).max() < 0.01
    assert not tones.pitch_track(np.zeros(n)).any()


def test_tone_classifiers_read_what_the_rows_carry():
    """Rows that carry the tone and the syllable one-hot (the trained encoder's output here) are
    read perfectly by held-out speakers; noise rows (the features here) leave the tone to chance."""
    import numpy as np

    from training import tones

    rng = np.random.default_rng(0)
    d: dict = {"feats": [], "encoded": [], "track": [], "tone": [], "syllable": [], "heldout": []}
    sets, speakers = len(analyse.TONE_SETS), 24
    for s in range(speakers):
        for z in range(sets):
            for t in range(4):
                n = int(rng.integers(4, 9))
                plain = rng.normal(0, 0.1, (n, 4 + sets)).astype(np.float32)
                plain[:, t] += 1
                plain[:, 4 + z] += 1
                d["encoded"].append(plain)
                d["feats"].append(rng.normal(0, 1, (n, 8)).astype(np.float32))
                d["track"].append(rng.normal(0, 1, 10))
                d["tone"].append(t)
                d["syllable"].append(z)
                d["heldout"].append(s >= speakers - 4)
    result = tones.classify(d)
    assert result["tone from the trained encoder's output"][1] == 1.0
    assert result["syllable from the trained encoder's output"][1] == 1.0
    assert result["tone from the features"][1] < 0.5  # 4 × 28 held-out clips of noise: chance is 25 %


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tone_clips_take_the_encoder_output_without_its_query_rows():
    """With a model, every word also gets the committed demonstration model's encoder output: a
    row per stacked feature frame (the four query rows left out), the encoder's width."""
    from pathlib import Path

    from training import tones

    model = Path(__file__).resolve().parents[1] / "models" / "demo"
    d = tones.clips(1, 1, 0, str(model))
    assert len(d["encoded"]) == len(d["feats"]) == 2 * 4 * len(analyse.TONE_SETS)
    assert all(e.shape == (len(f), 256) for e, f in zip(d["encoded"], d["feats"]))
    assert not tones.clips(1, 0, 0)["encoded"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_misnamed_words_are_longer_words_written_in_their_syllables_as_no_word():
    """仔细 (zi3 xi4) written 自吸 (zi4 xi1): no listed word, and the list's only word said zi xi;
    医院 written 一元: no listed word, but 亿元 and 议员 are said so too; 背部 written 被捕, a
    listed word; 基本 written 鸡: not as many characters; 方 written 房 is not a longer word (each
    between words written right: a run of edits is read as a whole)."""
    parts = ["仔细", "叫", "医院", "叫", "背部", "叫", "基本", "叫", "方", "叫"]
    ref = list("".join(parts))
    got = analyse.misnamed_words(ref, list("自吸叫一元叫被捕叫鸡叫房叫"), parts)
    assert got == [{"ref": "仔细", "hyp": "自吸", "edits": 2, "only": True},
                   {"ref": "医院", "hyp": "一元", "edits": 2, "only": False}]
    assert analyse.misnamed_words(ref, ref, parts) == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_toneless_best_writes_each_listed_word_as_its_most_frequent_namesake():
    """医院 (yi1 yuan4) is said, without tones, as 亿元, 议员, 意愿 and 一员 are: of the five, the
    list counts 亿元 most often; 仔细 has no namesake; 书 (shu1) loses to 属 (shu3), counted more
    often; a number piece and a domain word stay as they are."""
    counts = dict(zip(*wordlists.load("zh")))
    yi_yuan = ["医院", "亿元", "议员", "意愿", "一员"]
    assert max(yi_yuan, key=counts.__getitem__) == "亿元" and counts["属"] > counts["书"]
    got = analyse.toneless_best(["医院", "仔细", "书", "二十八块", "超市"])
    assert got == ["亿元", "仔细", "属", "二十八块", "超市"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_listed_words_heard_are_the_words_the_tone_does_not_decide():
    """仔细 (no namesake) counts, wrong where one of its characters is; 医院 does not (without
    tones it is written 亿元), nor 叫 (one character), nor a number or a domain word. English: every
    listed word, and not a number piece."""
    parts = ["仔细", "医院", "叫", "二十八块", "超市", "仔细"]
    hits = [True, False] + [True] * 11  # 13 characters: 仔 of the first 仔细 matched, 细 not
    assert analyse.listed_words_heard("zh", parts, hits) == [("仔细", False), ("仔细", True)]
    assert analyse.listed_words_heard("en", ["people", "twenty two", "water"], [True, False, True, False]) == \
        [("people", True), ("water", False)]


def test_by_exposure_bins_the_words_by_the_times_training_says_them():
    """Mandarin counts the characters anywhere in a sentence (看起来 says 起来); English counts
    words. 起来 said 41 times lands in 40–79; 认同, never said, in 0–39; "water" 400 times in the
    open bin above 400, "people" 80 times in 80–159."""
    zh = analyse.by_exposure("zh", [("起来", False), ("认同", True), ("起来", True)], ["看起来"] * 40 + ["起来了"])
    assert [(b["from"], b["to"], b["words"], b["wrong"]) for b in zh] == \
        [(0, 40, 1, 0), (40, 80, 2, 1), (80, 160, 0, 0), (160, 400, 0, 0), (400, None, 0, 0)]
    en = analyse.by_exposure("en", [("water", False), ("people", True), ("peoples", False)],
                             ["Water, water."] * 200 + ["People people."] * 40 + ["Peoples."] * 3)
    assert [(b["words"], b["wrong"]) for b in en] == [(1, 1), (0, 0), (1, 0), (0, 0), (1, 1)]


def test_training_recipe_reads_the_models_log(tmp_path):
    """A log with every field of the recipe gives that recipe; one written before the recipe had
    its own word exponent drew at the held-out sets' 0.6; the committed model's older log, and a
    directory without a log, give None."""
    import json
    from dataclasses import asdict

    from training import corpus, data

    rec = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(data.Recipe(train_per_lang=7)).items()}
    (tmp_path / "training_log.json").write_text(json.dumps({"settings": {"recipe": rec}}), encoding="utf-8")
    assert analyse.training_recipe(tmp_path) == data.Recipe(train_per_lang=7)
    del rec["word_exponent"]
    (tmp_path / "training_log.json").write_text(json.dumps({"settings": {"recipe": rec}}), encoding="utf-8")
    assert analyse.training_recipe(tmp_path) == data.Recipe(train_per_lang=7, word_exponent=corpus.WORD_EXPONENT)
    assert analyse.training_recipe(DEMO) is None
    assert analyse.training_recipe(tmp_path / "none") is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tone_classifiers_of_the_real_features_add_the_bands_and_the_masked_training():
    """On the real features (560 columns: 7 stacked frames of 80 mel bins) the tone is also read
    from the low 20 bins, from the other 60, and with the recipe's frequency masks in training:
    the syllable, which a band of bins cannot hide, is read by training speakers as before."""
    from training import tones

    d = tones.clips(6, 2, 0)
    result = tones.classify(d, epochs=10)
    assert {"tone from mel bins 0-19 of the features", "tone from mel bins 20-79 of the features",
            "tone from the features, trained under the recipe's frequency masks"} <= set(result)
    assert result["syllable from the features"][0] > 0.9
    assert all(0.0 <= a <= 1.0 for pair in result.values() for a in pair)
