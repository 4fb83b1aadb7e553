"""`bench --synthetic nano --peer`'s comparison on a tiny Fun-ASR-Nano: the peer funasr-mlx
converts and runs the original directory ours was converted from, both decode the same number of
tokens, and the report holds every stage's ratio over the blocks and each side's peak memory (a
smoke of the real path: nothing timed is asserted)."""

import importlib.util
import sys

import pytest

from funasr_qwen4b.testing import QWEN3_TINY, TINY
from funasr_qwen4b.testing_nano import NANO_ADAPTOR_TINY


def test_missing_peer_is_one_line_before_anything_is_built(monkeypatch, capsys):
    from funasr_qwen4b.app import bench
    from funasr_qwen4b.app.cli import main

    def built(*args, **kwargs):
        raise AssertionError("the model was built before the peer was asked for")

    monkeypatch.setitem(sys.modules, "funasr_mlx", None)  # an import of it fails as when not installed
    monkeypatch.setattr(bench, "nano_synthetic", built)
    assert main(["bench", "--synthetic", "nano", "--peer"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--peer needs the funasr-mlx package" in err and "pip install funasr-mlx" in err


@pytest.mark.skipif(importlib.util.find_spec("funasr_mlx") is None,
                    reason="the peer funasr-mlx is not installed (pip install funasr-mlx)")
def test_nano_beside_the_peer_on_the_same_weights(clip):
    from funasr_qwen4b.app.bench_nano import nano_synthetic
    from funasr_qwen4b.app.bench_nano_peer import SPEEDS, nano_vs_peer, to_markdown

    with nano_synthetic("bfloat16", 4, dims=(TINY, NANO_ADAPTOR_TINY, QWEN3_TINY)) as bundle:
        r = nano_vs_peer(bundle, clip, tokens=3, blocks=2, warmup=0, dtype="bfloat16", q_bits=4)
    assert r["tokens"] == {"ours": [3], "peer": [3]}  # every run of each side
    assert r["blocks"]["n"] == 2 and r["blocks"]["order"] == ["ours", "peer"]
    assert set(r["stages"]) == set(SPEEDS)
    for s in r["stages"].values():
        q = s["ours_over_peer"]
        assert q["min"] <= q["median"] <= q["max"]
        assert q["blocks"] == pytest.approx([a / b for a, b in zip(s["ours"]["blocks"], s["peer"]["blocks"],
                                                                    strict=True)])
    # both splice the same number of audio rows into their prompts (each computes it its own way)
    assert r["audio_rows"]["ours"] == r["audio_rows"]["peer"] > 0
    for side in ("ours", "peer"):
        m = r["memory"][side]
        assert m["weights_bytes"] > 0 and m["peak_bytes"] == m["weights_bytes"] + m["run_working_bytes"]
    assert "4-bit by its apply_quantization" in r["peer"]["loaded"] and "cast to bfloat16" in r["peer"]["loaded"]
    text = "\n".join(to_markdown(r))
    assert "Fun-ASR-Nano, ours vs the peer (funasr-mlx 0.2.3" in text and "| llm_decode | tok/s |" in text
