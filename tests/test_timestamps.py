"""Timestamps: CTC frame positions, speech regions, the alignment of a transcript onto
them, and segments on audio whose boundaries are known (committed clips joined with
silences of known length), the same from both backends."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funasr_qwen4b import audio, ctc
from funasr_qwen4b.audio import load_audio
from tests.conftest import DATASETS

EN = DATASETS / "en_heldout"
SR = 16000


def test_runs_and_text_frames_hand_derived():
    frames = np.array([24, 25, 26, 27, 0, 9, 9, 0, 9, 4, 4, 4, 0])
    assert ctc.runs(frames[4:], 0) == [(9, 1, 2), (9, 4, 4), (4, 5, 7)]
    r = ctc.decode(frames, blank_id=0, n_query=4)
    assert r.text_ids == [9, 9, 4] and r.text_frames == [(1, 2), (4, 4), (5, 7)]
    assert ctc.decode(frames[4:], blank_id=0, n_query=0).text_frames == [(1, 2), (4, 4), (5, 7)]


def tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float, level: float = 0.0) -> np.ndarray:
    return (level * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("floor", [0.0, 1e-3])  # digital silence; a noise floor 40 dB under the tone
def test_speech_regions_bound_loud_stretches(floor):
    x = np.concatenate([silence(0.5, floor), tone(1.0), silence(0.1, floor), tone(0.4), silence(1.0, floor),
                        tone(0.6), silence(0.4, floor)])
    regions = audio.speech_regions(x)
    # a 100 ms dip is inside a region (< PAUSE_SECONDS); a 1 s pause separates two
    want = [(0.5, 2.0), (3.0, 3.6)]
    assert len(regions) == 2
    for (s, e), (ws, we) in zip(regions, want):
        assert abs(s - (ws - audio.PAD_SECONDS)) <= 0.03 and abs(e - (we + audio.PAD_SECONDS)) <= 0.03
    assert audio.speech_regions(np.zeros(0, np.float32)) == []


class Pieces:
    """A CTC vocabulary by id: what CtcTokenizer.piece returns."""

    def __init__(self, pieces):
        self.pieces = pieces

    def piece(self, i):
        return self.pieces[i]


def test_transcript_aligned_onto_ctc_spikes_and_regions():
    tok = Pieces({1: "▁open", 2: "▁from", 3: "▁nine", 4: "▁to", 5: "▁five", 6: "<|en|>"})
    # spikes: open 0.6 s, from 1.2 s, nine 1.8 s | pause | to 4.2 s, five 4.8 s (frame k starts at 0.06 k)
    frames = [(10, 10), (20, 20), (30, 30), (70, 70), (80, 80)]
    result = ctc.CtcResult([], [], [1, 2, 3, 4, 5], "open from nine to five", [], frames)
    regions = [(0.4, 2.2), (4.0, 5.2)]
    # the LLM's casing and punctuation, a word the CTC head missed ("am"), one it heard differently
    segs = ctc.timed_segments("Open from nine am. Tu five.", result, tok, regions, 6.0)
    assert [s["text"] for s in segs] == ["Open from nine am.", "Tu five."]
    assert [(s["start"], s["end"]) for s in segs] == [(0.4, 2.2), (4.0, 5.2)]
    words = [(w["word"], round(w["start"], 3), round(w["end"], 3)) for s in segs for w in s["words"]]
    # spike centres 0.63, 1.23, 1.83; "am" interpolated between nine and Tu (clamped to its region)
    assert words[:2] == [("Open", 0.4, 0.93), ("from", 0.93, 1.53)]
    assert words[2][0] == "nine" and words[3][0] == "am." and words[3][2] == 2.2
    assert words[-1] == ("five.", 4.53, 5.2)
    # a sentence end inside one region also starts a segment, at the midpoint between spikes
    segs = ctc.timed_segments("Open. From nine", result, tok, [(0.4, 2.2)], 6.0)
    assert [(s["text"], s["start"], s["end"]) for s in segs] == [("Open.", 0.4, pytest.approx(0.93)),
                                                                ("From nine", pytest.approx(0.93), 2.2)]
    # no CTC transcript to place words by: the speech is one segment
    empty = ctc.CtcResult([], [], [], "", [], [])
    untimed = ctc.timed_segments("你好。世界", empty, tok, regions, 6.0)
    assert [(s["start"], s["end"], s["words"]) for s in untimed] == [(0.4, 5.2, [])]
    assert ctc.timed_segments("", result, tok, regions, 6.0) == []


def test_cjk_characters_are_words_with_their_punctuation():
    tok = Pieces({1: "▁开放", 2: "时间", 3: "九点"})
    result = ctc.CtcResult([], [], [1, 2, 3], "开放时间九点", [], [(5, 5), (10, 10), (20, 21)])
    segs = ctc.timed_segments("开放时间：九点。", result, tok, [(0.0, 2.0)], 2.0)
    assert [w["word"] for w in segs[0]["words"]] == ["开", "放", "时", "间：", "九", "点。"]
    starts = [w["start"] for w in segs[0]["words"]]
    assert starts == sorted(starts) and segs[0]["end"] == 2.0


# --- on real audio: the demonstration model, both backends -------------------

def speech_span(x: np.ndarray) -> tuple[float, float]:
    """First and last sample louder than -60 dBFS: where the clip's speech is."""
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    return loud[0] / SR, (loud[-1] + 1) / SR


@pytest.fixture(scope="module")
def joined():
    """Three held-out utterances (voices never trained on), 1 s of silence between them."""
    ids = ["en_heldout_001", "en_heldout_003", "en_heldout_004"]
    manifest = {e["id"]: e for e in map(json.loads, (EN / "test.jsonl").read_text().splitlines())}
    parts, spans, t = [silence(0.3)], [], 0.3
    for k, i in enumerate(ids):
        x = load_audio(EN / manifest[i]["audio"])
        s, e = speech_span(x)
        spans.append((t + s, t + e))
        parts += [x, silence(1.0 if k < len(ids) - 1 else 0.3)]
        t += x.size / SR + (1.0 if k < len(ids) - 1 else 0.3)
    return np.concatenate(parts), spans, [load_audio(EN / manifest[i]["audio"]) for i in ids]


TOLERANCE = 0.15  # s: the region padding plus a few 10 ms frames


def check_segments(segments, spans, duration):
    assert len(segments) == len(spans)
    for s, (ws, we) in zip(segments, spans):
        assert abs(s["start"] - ws) <= TOLERANCE and abs(s["end"] - we) <= TOLERANCE, (s, ws, we)
        assert s["words"] and s["start"] <= s["words"][0]["start"] and s["words"][-1]["end"] <= s["end"]
        times = [t for w in s["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert 0 <= segments[0]["start"] and segments[-1]["end"] <= duration


def test_ctc_segments_at_the_known_pauses(demo_bundle, joined):
    """One piece (no split): the pauses alone separate the segments."""
    from funasr_qwen4b import Transcriber

    x, spans, _ = joined
    r = Transcriber.load(demo_bundle, ctc_only=True, max_seconds=0).transcribe(x, SR)
    check_segments(r["segments"], spans, x.size / SR)
    assert " ".join(s["text"] for s in r["segments"]).split() == r["text"].split()


def test_llm_segments_in_both_backends(demo_bundle, joined):
    """Pieces split at the pauses (max_seconds below two utterances): each segment is one
    utterance, with the text the model gives that utterance alone, the same in both backends."""
    from funasr_qwen4b import Transcriber

    x, spans, clips = joined
    got = {}
    for backend in ("mlx", "reference"):
        t = Transcriber.load(demo_bundle, backend, max_seconds=5.5)
        r = got[backend] = t.transcribe(x, SR, language="en")
        check_segments(r["segments"], spans, x.size / SR)
        alone = [t.transcribe(c, SR, language="en")["text"] for c in clips]
        assert [s["text"] for s in r["segments"]] == alone
        assert sum(len(s["tokens"]) for s in r["segments"]) == r["tokens"]
    mlx, ref = got["mlx"]["segments"], got["reference"]["segments"]
    drop = lambda s: {k: v for k, v in s.items() if k != "logprobs"}  # noqa: E731
    assert [drop(s) for s in mlx] == [drop(s) for s in ref]
    for a, b in zip(mlx, ref):  # each token's log-probability, as the twins compute it at float32
        assert len(a["logprobs"]) == len(a["tokens"])
        np.testing.assert_allclose(a["logprobs"], b["logprobs"], rtol=0, atol=1e-4)
