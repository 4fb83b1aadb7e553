"""`cer` and `transcribe` split across the ranks of `mlx.launch` (its ring backend over loopback,
two ranks on this machine) give what one process gives: the same report utterance for utterance,
the same output files, the same lines on stdout; a rank that dies ends the launch non-zero with one
line naming it, and no report. The oracle is the single-process run of the same command."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funasr_qwen4b.app.cli import main
from funasr_qwen4b.app.distributed import balance

from .conftest import DATASETS, HANG_S

CLIPS = [DATASETS / "zh_heldout" / f"zh_heldout_00{i}.flac" for i in range(3)] + \
        [DATASETS / "en_heldout" / "en_heldout_000.flac"]
TIMES = ("timings", "tokens_per_s")  # what a second run measures again


def free_port() -> int:
    """A port with the next one free too: the ring's two ranks listen on PORT and PORT + 1."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def launch(*command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m funasr_qwen4b.app.launch -n 2 --backend ring` (mlx.launch, with an exit status) of the CLI."""
    argv = [sys.executable, "-m", "funasr_qwen4b.app.launch", "-n", "2", "--backend", "ring", "-p", str(free_port()),
            "--python", sys.executable, "-m", "funasr_qwen4b.app.cli", *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S, env={**os.environ, **(env or {})},
                          check=False)


def not_time(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if not line.startswith("Time: ")]


def untimed(result_json: Path) -> dict:
    return {k: v for k, v in json.loads(result_json.read_text(encoding="utf-8")).items() if k not in TIMES}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    rows = {json.loads(line)["audio"]: json.loads(line) for name in ("zh_heldout", "en_heldout")
            for line in (DATASETS / name / "test.jsonl").read_text(encoding="utf-8").splitlines()}
    path = tmp_path_factory.mktemp("manifest") / "test.jsonl"
    path.write_text("".join(json.dumps({**rows[c.name], "audio": str(c)}, ensure_ascii=False) + "\n" for c in CLIPS),
                    encoding="utf-8")
    return path


def test_without_a_launcher_or_with_one_rank_nothing_changes(monkeypatch, tmp_path):
    from funasr_qwen4b.app.distributed import LAUNCHER_ENV, launched

    for var, _ in LAUNCHER_ENV:
        monkeypatch.delenv(var, raising=False)
    assert launched() is None
    hostfile = tmp_path / "hosts"
    hostfile.write_text("")  # what mlx.launch -n 1 --backend ring gives its one rank
    monkeypatch.setenv("MLX_HOSTFILE", str(hostfile))
    assert launched() is None
    hostfile.write_text('[["127.0.0.1:5000"]]')  # a ring of one, written by hand
    assert launched() is None
    monkeypatch.delenv("MLX_HOSTFILE")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")  # mpirun -np 1
    assert launched() is None


def test_balance_longest_first_onto_the_least_loaded_rank():
    # by hand: 5 → rank 0 (5); 3 → rank 1 (3); 3 → rank 1 (6); 2 → rank 0 (7); 1 → rank 1 (7)
    assert balance([1.0, 5.0, 3.0, 3.0, 2.0], 2) == [[1, 4], [0, 2, 3]]
    # equal loads go to the lower rank: 2 → rank 0, 2 → rank 1, 1 → rank 0 (tie at 2)
    assert balance([2.0, 2.0, 1.0], 2) == [[0, 2], [1]]
    assert balance([2.0], 3) == [[0], [], []]


def test_cer_over_two_ranks_reports_what_one_process_does(demo_bundle, manifest, tmp_path, capsys):
    one = tmp_path / "one" / "cer.json"
    assert main(["cer", "-m", str(demo_bundle), "--manifest", str(manifest), "--report", str(one),
                 "--no-progress"]) == 0
    single_md = capsys.readouterr().out
    two = tmp_path / "two" / "cer.json"
    run = launch("cer", "-m", str(demo_bundle), "--manifest", str(manifest), "--report", str(two), "--batch-size", "2")
    assert run.returncode == 0, run.stderr
    a, b = json.loads(one.read_text(encoding="utf-8")), json.loads(two.read_text(encoding="utf-8"))
    assert b["utterances"] == a["utterances"]
    assert (b["summary"], b["worst"], b["resume"]) == (a["summary"], a["worst"], a["resume"])
    assert {k: v for k, v in b["meta"].items() if k != "ranks"} == a["meta"]
    ranks = b["meta"]["ranks"]
    assert (ranks["count"], ranks["backend"]) == (2, "ring")
    assert sorted(r["utterances"] for r in ranks["per_rank"]) == [2, 2]  # balanced by duration, all scored once
    assert b["timing"]["mlx"]["audio_s"] == a["timing"]["mlx"]["audio_s"]
    # stdout: rank 0's report alone (rank 1 prints nothing), the time line apart
    assert not_time(run.stdout) == not_time(single_md)
    assert re.search(r"^Time: .*; over 2 ranks \(ring\)$", run.stdout, re.MULTILINE)
    for rank in (0, 1):  # each rank's own resumable file
        assert (two.parent / f"cer.rank{rank}-of-2.partial.jsonl").is_file()
    # progress: rank 1's lines beside rank 0's bar; rank 0 names every rank when gathered
    assert "rank 1 of 2: 2/2 utterances" in run.stderr
    assert all(re.search(rf"^cer: rank {r} on \S+: 2 utterances", run.stderr, re.MULTILINE) for r in (0, 1))


def test_transcribe_over_two_ranks_writes_what_one_process_does(demo_bundle, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for c in CLIPS:
        (clips / c.name).symlink_to(c)
    (clips / "broken.wav").write_bytes(b"RIFF but no audio")  # reported and skipped, on whichever rank reads it
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["transcribe", str(clips), "-m", str(demo_bundle), "--output-dir", str(one)]) == 1
    single_out = capsys.readouterr().out
    run = launch("transcribe", str(clips), "-m", str(demo_bundle), "--output-dir", str(two))
    assert run.returncode == 1, run.stderr  # as one process: an input failed
    assert run.stdout == single_out  # every text, in input order, once: rank 0's
    assert run.stderr.count("broken.wav: cannot read audio") == 1
    assert "launch:" not in run.stderr  # rank 0's status 1 is the command's outcome, said by its summary
    done = {int(r): int(n) for r, n in re.findall(r"^transcribe: rank (\d) on \S+: (\d) inputs", run.stderr,
                                                  re.MULTILINE)}
    assert sorted(done) == [0, 1] and sum(done.values()) == len(CLIPS) + 1
    for rank, n in done.items():  # each rank's progress, to the end of its share
        assert f"rank {rank} of 2: {n}/{n} inputs" in run.stderr
    names = sorted(p.name for p in one.iterdir())
    assert sorted(p.name for p in two.iterdir()) == names and len(names) == 5 * len(CLIPS)
    for name in names:
        x, y = (d / name for d in (one, two))
        if name.endswith(".json"):
            assert untimed(y) == untimed(x), name
        else:
            assert y.read_bytes() == x.read_bytes(), name


# Started in every process of the launch (a `sitecustomize` on PYTHONPATH): rank 1 kills itself
# after its first batch of utterances, a death at a known point with nothing timed.
DIE_AFTER_FIRST_BATCH = """
import os, signal
from funasr_qwen4b.app import distributed

_counted = distributed.counted


def counted(fn, progress):
    def run(batch):
        out = _counted(fn, progress)(batch)
        if os.environ.get("MLX_RANK") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return run


distributed.counted = counted
"""


def test_a_rank_killed_mid_run_ends_the_launch_with_one_line_and_no_report(demo_bundle, manifest, tmp_path):
    report, site = tmp_path / "cer.json", tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DIE_AFTER_FIRST_BATCH)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = launch("cer", "-m", str(demo_bundle), "--manifest", str(manifest), "--report", str(report),
                 "--no-progress", env={"PYTHONPATH": path})
    assert run.returncode == 128 + 9, run.stderr
    lines = run.stderr.strip().splitlines()
    assert re.fullmatch(r"funasr_qwen4b\.app\.launch: rank 1 on 127\.0\.0\.1 was killed by SIGKILL(; stopped rank 0)?",
                        lines[-1]), run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert not any(p.exists() for p in (report, report.with_suffix(".md"), report.with_suffix(".png")))


def test_rank_0_refuses_a_split_the_ranks_see_differently(monkeypatch, tmp_path):
    from funasr_qwen4b.app import distributed

    seen = []

    def all_gather(ranks, x):  # rank 1 saw other bytes than rank 0 (another manifest or other audio)
        seen.append(np.array(x))
        return np.stack([np.array(x), np.array(x)[::-1]])

    monkeypatch.setattr(distributed, "_all_gather", all_gather)
    ranks = distributed.Ranks(group=None, rank=0, size=2, backend="ring")
    with pytest.raises(ValueError, match=r"^rank 1 sees other inputs than rank 0 .*same paths$"):
        distributed.share(ranks, [str(c) for c in CLIPS])
    assert seen[0].dtype == np.uint8 and seen[0].size == 32  # a sha256 of what the rank saw
    monkeypatch.setattr(distributed, "_all_gather", lambda ranks, x: np.stack([np.array(x)] * 2))
    assert distributed.share(ranks, [str(c) for c in CLIPS]) == balance(
        [distributed.header_seconds(c) for c in CLIPS], 2)[0]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="mlx.launch reaches a host other than 127.0.0.1 by ssh")
def test_a_host_that_cannot_be_reached_is_one_line(demo_bundle, manifest):
    with socket.socket() as s:  # no ssh server on 127.0.0.2: ssh fails at once, as for a host that is down
        if s.connect_ex(("127.0.0.2", 22)) == 0:
            pytest.skip("an ssh server answers on 127.0.0.2")
    # rank 0 waits in mx.distributed.init for a peer that never comes, until the launcher stops it
    argv = [sys.executable, "-m", "funasr_qwen4b.app.launch", "--hosts", "127.0.0.1,127.0.0.2", "--backend", "ring",
            "-p", str(free_port()), "--python", sys.executable, "-m", "funasr_qwen4b.app.cli", "cer", "-m",
            str(demo_bundle), "--manifest", str(manifest)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S, check=False)
    assert run.returncode == 255
    assert re.fullmatch(r"funasr_qwen4b\.app\.launch: rank 1 on 127\.0\.0\.2 exited with status 255, ssh's own "
                        r"failure: check that `ssh 127\.0\.0\.2` logs in .*; stopped rank 0",
                        run.stderr.strip().splitlines()[-1])


def test_a_collective_that_loses_its_peer_is_one_line_of_error(monkeypatch):
    import mlx.core as mx

    from funasr_qwen4b.app import distributed

    def lost(x, group=None):  # what the ring backend raises when a peer's socket closes
        raise RuntimeError("[ring] connection to a peer was lost")

    monkeypatch.setattr(mx.distributed, "all_gather", lost)
    ranks = distributed.Ranks(group=None, rank=0, size=2, backend="ring")
    with pytest.raises(distributed.PeerLost, match=r"^rank 0 of 2 \(ring, .*\): lost a peer in a collective "
                       r"\(\[ring\] connection to a peer was lost\): another rank ended or its link broke; nothing "
                       r"was written$"):
        distributed.gather(ranks, {"rows": []})
    assert issubclass(distributed.PeerLost, OSError)  # the command's one-line error, not a bug's traceback
