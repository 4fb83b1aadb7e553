"""How the stages connect, the same in both paths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import QueryConfig
from .ctc import CtcResult


def adaptor_start(query: QueryConfig, keep_query_frames: bool) -> int:
    """First encoder frame the adaptor sees. The real adaptor was trained on
    FunASR's encoder output with the 4 query frames kept (REFERENCE.md §3);
    whether training dropped them is unknown, so it is a bundle setting."""
    return 0 if keep_query_frames else len(query.ids)


@dataclass
class Output:
    ctc: CtcResult
    audio_embeds: np.ndarray | None = None  # adaptor output [T, llm_dim], float32
