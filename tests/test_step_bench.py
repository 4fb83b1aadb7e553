"""training/step_bench.py: its made-up batches keep what the trainer's batches keep
(tests/test_training.py::test_batches_gather_what_padding_built), and its table's columns follow
from its timings."""

from __future__ import annotations

import json

import pytest
import torch

from funasr_qwen4b.config import LANGUAGE_IDS
from training import step_bench


def test_made_up_batches_are_shaped_as_the_trainers():
    gen, dev_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    b = step_bench.batch(6, 40, 4000, 8064, 1149, torch.device("cpu"), gen, dev_gen)
    assert b.feats.dtype == torch.float32 and b.feats.shape == (6, 40, 560)
    assert b.lengths.tolist() == b.host_lengths.tolist() and all(37 <= n <= 40 for n in b.lengths.tolist())
    assert torch.equal(b.host_llm_lengths, b.llm_lengths) and torch.equal(b.ctc_lengths, b.llm_lengths)
    for j, (frames, tokens) in enumerate(zip(b.lengths.tolist(), b.llm_lengths.tolist())):
        assert (b.feats[j, frames:] == 0).all() and (b.feats[j, :frames] != 0).all()
        assert abs(tokens - frames // step_bench.FRAMES_PER_TOKEN) <= 2 and tokens >= 2
        assert (b.ctc_targets[j, :tokens] >= 1).all() and (b.ctc_targets[j, tokens:] == -1).all()
        assert (b.llm_ids[j, :tokens] < 8064).all() and (b.llm_ids[j, tokens:] == 0).all()
    assert b.ctc_targets.shape[1] == b.llm_ids.shape[1] == max(b.llm_lengths.tolist())
    assert b.query[:, 0].tolist() == [LANGUAGE_IDS["auto"]] * 6 and b.zh.dtype == torch.bool
    assert b.tags.shape == (6, 4) and b.query.shape == (6, 4)
    # the tone head's targets: a Mandarin clip's, one a token; none for the others
    assert b.tone_lengths.tolist() == [n if zh else 0 for n, zh in zip(b.llm_lengths.tolist(), b.zh.tolist())]
    for j, n in enumerate(b.tone_lengths.tolist()):
        assert ((b.tone_targets[j, :n] >= 1) & (b.tone_targets[j, :n] <= 1149)).all()
        assert (b.tone_targets[j, n:] == -1).all()


def test_the_table_follows_from_the_timings(tmp_path, capsys):
    out = tmp_path / "steps.json"
    assert step_bench.main(["--kept", "2", "3", "--recomputed", "2", "--steps", "1", "--blocks", "1",
                            "--bf16", "no", "yes", "--device", "cpu", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["llm_recomputed"], r["bf16"]) for r in rows] == [
        (2, False, False), (3, False, False), (2, False, True), (3, False, True), (2, True, False), (2, True, True)]
    for r in rows:
        # examples a second to 0.1, the step's seconds to 0.0001 (and its error carried through)
        assert abs(r["examples_per_s"] - r["batch"] / r["step_s"]) <= 0.05 + 6e-5 * r["batch"] / r["step_s"] ** 2
        assert r["peak_gib"] is None  # no device memory to measure on a CPU
    assert rows[0]["step_ratio"] == 1.0
    with pytest.raises(SystemExit, match="give --kept or --recomputed"):
        step_bench.main(["--recomputed", "--device", "cpu"])
    table = capsys.readouterr().out.splitlines()
    assert table[1].startswith("| batch |") and len(table) == 3 + len(rows)
    assert [line.split(" | ")[2] for line in table[3:]] == ["float32", "float32", "bfloat16", "bfloat16",
                                                              "float32", "bfloat16"]
