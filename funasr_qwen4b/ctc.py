"""Greedy CTC decoding, shared by both paths (each path only supplies the
per-frame argmax ids), with where each token was emitted; and timestamps: that
alignment mapped onto a transcript (timed_segments)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import QUERY_ROWS


# One encoder frame: LFR stacks 7 fbank frames every 6, and fbank hops 10 ms.
FRAME_SECONDS = 0.06


def runs(frame_ids: np.ndarray, blank_id: int) -> list[tuple[int, int, int]]:
    """(id, first frame, last frame) of each run of one non-blank id: what
    collapsing keeps, and where in the frames it was emitted."""
    ids = np.asarray(frame_ids).reshape(-1)
    if ids.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size] - 1
    return [(int(ids[a]), int(a), int(b)) for a, b in zip(starts, ends) if ids[a] != blank_id]


def collapse(frame_ids: np.ndarray, blank_id: int) -> list[int]:
    """Collapse repeats, then drop blanks (torch.unique_consecutive + mask)."""
    return [i for i, _, _ in runs(frame_ids, blank_id)]


class CtcTokenizer:
    """SenseVoice's sentencepiece model (chn_jpn_yue_eng_ko_spectok.bpe.model)."""

    def __init__(self, path: str | Path):
        import sentencepiece as spm

        self.path = Path(path)
        self.sp = spm.SentencePieceProcessor()
        if not self.sp.load(str(self.path)):
            raise ValueError(f"cannot load sentencepiece model {self.path}")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))


@dataclass
class CtcResult:
    ids: list[int]  # over all frames, tags included: FunASR's `token_int`
    tag_ids: list[int]  # argmax of the query frames: language, emotion, event, itn
    text_ids: list[int]  # collapsed over the frames after the query rows
    text: str
    tags: list[str] = field(default_factory=list)
    # first and last frame of each text id's run, counted from the first frame after the
    # query rows (frame k starts at k * FRAME_SECONDS into the audio)
    text_frames: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"text": self.text, "tags": self.tags, "tag_ids": self.tag_ids,
                "text_ids": self.text_ids, "ids": self.ids, "text_frames": self.text_frames}


def decode(frame_ids: np.ndarray, blank_id: int, n_query: int = QUERY_ROWS,
           tokenizer: CtcTokenizer | None = None) -> CtcResult:
    """Greedy CTC on one utterance's per-frame argmax ids."""
    frame_ids = np.asarray(frame_ids).reshape(-1)
    tag_ids = [int(i) for i in frame_ids[:n_query]]
    text_runs = runs(frame_ids[n_query:], blank_id)
    text_ids = [i for i, _, _ in text_runs]
    if tokenizer is not None:
        text = tokenizer.decode(text_ids)
        tags = [tokenizer.piece(i) for i in tag_ids]
    else:  # no sentencepiece model in the source: ids are all we can show
        text = " ".join(str(i) for i in text_ids)
        tags = [str(i) for i in tag_ids]
    return CtcResult(collapse(frame_ids, blank_id), tag_ids, text_ids, text, tags,
                     [(a, b) for _, a, b in text_runs])


# --- timestamps: the CTC alignment mapped onto a transcript ------------------
# Greedy CTC emits each token at one or two frames somewhere inside its sound, so
# the spikes order the words in time but do not bound them; the audio's loudness
# does. A word's time is where its text matches the CTC transcript; its speech
# region (loud audio between pauses) bounds it; words in one region share the
# time between their spikes at the midpoints.

_SENTENCE_END = "。！？!?…"
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}][^\w\s]*|[^\s{_CJK}]+")


def letters(text: str) -> tuple[str, list[int]]:
    """Letters and digits of `text`, lowercased, with each one's offset in `text`."""
    keep = [(c.lower(), i) for i, c in enumerate(text) if c.isalnum()]
    return "".join(c for c, _ in keep), [i for _, i in keep]


def spike_times(result: CtcResult, tokenizer: CtcTokenizer) -> tuple[str, list[float]]:
    """The CTC transcript's letters and digits, each with the time (s) of its token's frames' centre."""
    chars, times = [], []
    for i, (first, last) in zip(result.text_ids, result.text_frames):
        piece = tokenizer.piece(i)
        if piece.startswith("<"):  # tags and byte pieces carry no letters
            continue
        for c in letters(piece)[0]:
            chars.append(c)
            times.append((first + last + 1) / 2 * FRAME_SECONDS)
    return "".join(chars), times


def _word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text`: each CJK character, or a run of other non-space
    characters; punctuation alone joins the word before it (the one after, at the start)."""
    spans: list[list[int]] = []
    for m in _WORD.finditer(text):
        if spans and not any(c.isalnum() for c in m.group()):
            spans[-1][1] = m.end()
        elif spans and not any(c.isalnum() for c in text[spans[-1][0]:spans[-1][1]]):
            spans[-1][1] = m.end()
        else:
            spans.append([m.start(), m.end()])
    return [(a, b) for a, b in spans]


def _word_times(text: str, spans: list[tuple[int, int]], result: CtcResult,
                tokenizer: CtcTokenizer | None) -> list[float | None]:
    """Each word's time: the mean spike time of its characters that match the CTC transcript
    (difflib's longest matching blocks), unmatched words interpolated between their neighbours."""
    if tokenizer is None or not result.text_ids:
        return [None] * len(spans)
    ctc_chars, ctc_times = spike_times(result, tokenizer)
    chars, offsets = letters(text)
    at = {}
    for block in difflib.SequenceMatcher(None, chars, ctc_chars, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            at[offsets[block.a + k]] = ctc_times[block.b + k]
    times: list[float | None] = []
    for a, b in spans:
        hits = [at[i] for i in range(a, b) if i in at]
        times.append(float(np.mean(hits)) if hits else None)
    known = [i for i, t in enumerate(times) if t is not None]
    if known:
        filled = np.interp(range(len(times)), known, [times[i] for i in known])
        times = [float(t) for t in filled]
    return times


def timed_segments(text: str, result: CtcResult, tokenizer: CtcTokenizer | None,
                   regions: list[tuple[float, float]], duration: float) -> list[dict]:
    """`text` (the transcript of one piece of audio) as segments {start, end, text, words,
    span}, seconds from the piece's start; `span` is the segment's characters in `text`.
    A new segment begins at a pause (another speech region) and after a sentence's end."""
    spans = _word_spans(text)
    if not spans:
        return []
    regions = regions or [(0.0, duration)]
    times = _word_times(text, spans, result, tokenizer)
    if times[0] is None:  # nothing to place the words by: the piece's speech is one segment, untimed within
        start, end = regions[0][0], regions[-1][1]
        a, b = spans[0][0], spans[-1][1]
        return [{"start": start, "end": end, "text": text[a:b], "span": (a, b), "words": []}]
    region = [min(range(len(regions)), key=lambda r: max(regions[r][0] - t, t - regions[r][1], 0.0))
              for t in times]
    words = []
    for k, ((a, b), t, r) in enumerate(zip(spans, times, region)):
        lo, hi = regions[r]
        # spikes may lie outside their region (before its onset, in the pause): clamp into it
        start = min(max((times[k - 1] + t) / 2, lo), hi) if k > 0 and region[k - 1] == r else lo
        end = min(max((t + times[k + 1]) / 2, lo), hi) if k + 1 < len(spans) and region[k + 1] == r else hi
        words.append({"word": text[a:b], "start": float(start), "end": float(end), "span": (a, b), "region": r})
    segments = [[words[0]]]
    for prev, w in zip(words, words[1:]):
        sentence_end = prev["word"][-1] in _SENTENCE_END or (prev["word"][-1] == "." and len(prev["word"]) > 1)
        if w["region"] != prev["region"] or sentence_end:
            segments.append([w])
        else:
            segments[-1].append(w)
    return [{"start": ws[0]["start"], "end": ws[-1]["end"], "text": text[ws[0]["span"][0]:ws[-1]["span"][1]],
             "span": (ws[0]["span"][0], ws[-1]["span"][1]),
             "words": [{"word": w["word"], "start": w["start"], "end": w["end"]} for w in ws]}
            for ws in segments]
