"""Greedy CTC decoding, shared by both paths (each path only supplies the
per-frame argmax ids)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import QUERY_ROWS


def collapse(frame_ids: np.ndarray, blank_id: int) -> list[int]:
    """Collapse repeats, then drop blanks (torch.unique_consecutive + mask)."""
    ids = np.asarray(frame_ids).reshape(-1)
    if ids.size == 0:
        return []
    keep = np.ones(ids.size, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    ids = ids[keep]
    return [int(i) for i in ids[ids != blank_id]]


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

    def to_dict(self) -> dict:
        return {"text": self.text, "tags": self.tags, "tag_ids": self.tag_ids,
                "text_ids": self.text_ids, "ids": self.ids}


def decode(frame_ids: np.ndarray, blank_id: int, n_query: int = QUERY_ROWS,
           tokenizer: CtcTokenizer | None = None) -> CtcResult:
    """Greedy CTC on one utterance's per-frame argmax ids."""
    frame_ids = np.asarray(frame_ids).reshape(-1)
    tag_ids = [int(i) for i in frame_ids[:n_query]]
    text_ids = collapse(frame_ids[n_query:], blank_id)
    if tokenizer is not None:
        text = tokenizer.decode(text_ids)
        tags = [tokenizer.piece(i) for i in tag_ids]
    else:  # no sentencepiece model in the source: ids are all we can show
        text = " ".join(str(i) for i in text_ids)
        tags = [str(i) for i in tag_ids]
    return CtcResult(collapse(frame_ids, blank_id), tag_ids, text_ids, text, tags)
