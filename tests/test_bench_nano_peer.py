"""`bench --synthetic nano --peer` on a tiny Fun-ASR-Nano: the peer funasr-mlx converts and runs
the same original directory as ours, both decode the same number of tokens, and the report holds
every stage's ratio over the blocks and each side's peak memory (a smoke of the real path: not
timed)."""

import functools
import json

import pytest

pytest.importorskip("funasr_mlx", reason="the peer funasr-mlx is not installed (pip install funasr-mlx)")

from funasr_qwen4b.testing import QWEN3_TINY, TINY
from funasr_qwen4b.testing_nano import NANO_ADAPTOR_TINY


def test_nano_beside_the_peer_on_the_same_weights(tmp_path, monkeypatch, capsys):
    from funasr_qwen4b.app import bench
    from funasr_qwen4b.app.bench_nano_peer import SPEEDS
    from funasr_qwen4b.app.cli import main

    monkeypatch.setattr(bench, "nano_synthetic", functools.partial(bench.nano_synthetic,
                                                                   dims=(TINY, NANO_ADAPTOR_TINY, QWEN3_TINY)))
    out = tmp_path / "bench.json"
    assert main(["bench", "--synthetic", "nano", "--dtype", "bfloat16", "-q", "4", "--peer", "--clips", "2",
                 "--reps", "2", "--warmup", "0", "--tokens", "9", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["nano_vs_peer"]
    assert r["tokens"] == {"ours": 9, "peer": 9}
    assert r["clip_s"] == 2.0 and r["blocks"]["n"] == 2 and r["blocks"]["order"] == ["ours", "peer"]
    assert set(r["stages"]) == set(SPEEDS)
    for s in r["stages"].values():
        q = s["ours_over_peer"]
        assert len(q["blocks"]) == 2 and q["min"] <= q["median"] <= q["max"]
        assert q["blocks"] == pytest.approx([a / b for a, b in zip(s["ours"]["blocks"], s["peer"]["blocks"])])
    # both splice the same number of audio rows into their prompts (each computes it its own way)
    assert r["audio_rows"]["ours"] == r["audio_rows"]["peer"] > 0
    for side in ("ours", "peer"):
        m = r["memory"][side]
        assert m["weights_bytes"] > 0 and m["peak_bytes"] == m["weights_bytes"] + m["run_working_bytes"]
    assert "4-bit by its apply_quantization" in r["peer"]["loaded"] and "cast to bfloat16" in r["peer"]["loaded"]
    text = capsys.readouterr().out
    assert "Fun-ASR-Nano, ours vs the peer (funasr-mlx" in text and "| llm_decode | tok/s |" in text

