"""training/gpu_calls.sh, the device calls of a training run: what each call asks of the trainer
(its time limits, derived here by hand from the script's documented allowances) and what it
leaves in $OUT, with a stand-in for Python that records its arguments instead of training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HANG_S

ROOT = Path(__file__).resolve().parent.parent

# Records `python -m MODULE ARGS` and does what the calls rely on: the trainer pauses (a
# checkpoint in the work directory) or writes the model; the scorer writes its --json.
_FAKE = """#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
value = lambda flag: args[args.index(flag) + 1]
if args[:2] == ["-m", "training.train"]:
    out = Path(value("--out"))
    work = Path(str(out) + ".work")
    (work / "data").mkdir(parents=True, exist_ok=True)
    if "--pause-after-minutes" in args:
        (work / "checkpoint.pt").write_bytes(b"paused")
    else:
        out.mkdir()
        (out / "training_log.json").write_text("{{}}")
        (work / "checkpoint.pt").unlink(missing_ok=True)
elif args[:2] == ["-m", "training.evaluate"]:
    Path(value("--json")).write_text("{{}}")
"""


@pytest.fixture
def calls(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(_FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"

    def call(n: int, **env: str) -> tuple[subprocess.CompletedProcess, dict, float]:
        out = tmp_path / f"o{n}"
        out.mkdir()
        log.unlink(missing_ok=True)
        t = time.monotonic()
        r = subprocess.run(["bash", "training/gpu_calls.sh", str(n)], cwd=ROOT, capture_output=True, text=True,
                           timeout=HANG_S, env={**os.environ, "STAGE": "", "PYTHON": str(fake), "FAKE_LOG": str(log),
                                                "OUT": str(out), "RUN_DIR": str(tmp_path / "demo"), **env})
        elapsed = time.monotonic() - t
        runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return r, {a[1]: a[2:] for a in runs}, elapsed
    return call


def minutes(args: list[str], flag: str) -> float:
    return float(args[args.index(flag) + 1])


def close(got: float, seconds: float, elapsed: float) -> bool:
    """`got` is minutes_left(seconds): seconds less what the script had run by then, which is at
    most the whole call's `elapsed` (rounded to a hundredth of a minute)."""
    return (seconds - elapsed - 1) / 60 - 0.005 <= got <= seconds / 60 + 0.005


def test_three_calls_fit_the_steps_to_all_and_only_the_last_packs(calls, tmp_path):
    r, run, t = calls(1, CALL_SECONDS="535", LATER_SECONDS="535 535")
    assert r.returncode == 0, r.stderr
    train = run["training.train"]
    # this call less its stop (30), each later call less its loading (75) and stop (30, the last
    # 15), less the last call's packing and scoring (60) and the epochs' loading (45)
    assert close(minutes(train, "--fit-minutes"), 535 - 30 + (535 - 75 - 30) + (535 - 75 - 15) - 60 - 45, t)
    assert close(minutes(train, "--pause-after-minutes"), 535 - 30, t)
    assert "--resume" not in train and (tmp_path / "o1" / "train1.log").exists()

    r, run, t = calls(2, CALL_SECONDS="530", LATER_SECONDS="530")
    assert r.returncode == 0, r.stderr
    train = run["training.train"]
    assert train[train.index("--resume") + 1] == str(tmp_path / "demo.work" / "checkpoint.pt")
    assert close(minutes(train, "--fit-minutes"), 530 - 30 + (530 - 75 - 15) - 60 - 45, t)
    assert close(minutes(train, "--pause-after-minutes"), 530 - 30, t)
    assert "--max-minutes" not in train and "training.evaluate" not in run
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["train2.log"]  # nothing packed

    r, run, t = calls(3, CALL_SECONDS="540")
    assert r.returncode == 0, r.stderr
    train = run["training.train"]
    assert "--resume" in train and "--pause-after-minutes" not in train
    assert close(minutes(train, "--fit-minutes"), 540 - 60 - 15 - 10, t)
    assert close(minutes(train, "--max-minutes"), 540 - 60 - 15, t)
    assert run["training.evaluate"][0] == str(tmp_path / "demo")
    assert {p.name for p in (tmp_path / "o3").iterdir()} >= {"demo.tgz.aa", "training_log.json", "evaluation.json",
                                                            "train3.log"}


def test_two_calls_by_default(calls, tmp_path):
    r, run, t = calls(1, CALL_SECONDS="575")
    assert r.returncode == 0, r.stderr
    assert close(minutes(run["training.train"], "--fit-minutes"), 575 - 30 + (575 - 75 - 15) - 60 - 45, t)
    r, run, _ = calls(2, CALL_SECONDS="585")
    assert r.returncode == 0, r.stderr
    assert "--max-minutes" in run["training.train"] and "training.evaluate" in run
    assert (tmp_path / "o2" / "demo.tgz.aa").exists()


def test_a_middle_call_after_the_schedule_ended_leaves_the_packing_to_the_last(calls, tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "training_log.json").write_text("{}")
    r, run, _ = calls(2, LATER_SECONDS="530")
    assert r.returncode == 0 and run == {} and "nothing to do until the last call" in r.stdout
    r, run, _ = calls(3)
    assert r.returncode == 0 and list(run) == ["training.evaluate"]
    assert (tmp_path / "o3" / "demo.tgz.aa").exists()


def test_a_later_call_on_another_machine_says_so(calls):
    r, run, _ = calls(2)
    assert r.returncode == 3 and run == {}
    assert "neither a checkpoint" in r.stderr and "Run call 1 again" in r.stderr


def test_call_1_alone_takes_the_first_arguments(calls):
    """FIRST_ARGS (a run from a trained model) reach call 1's trainer; a resumed call has them in
    its checkpoint, and the trainer refuses them with --resume."""
    first = {"FIRST_ARGS": "--init build/init --lr 1e-3 --seed 1"}
    r, run, _ = calls(1, CALL_SECONDS="535", **first)
    assert r.returncode == 0, r.stderr
    train = run["training.train"]
    assert train[train.index("--init") + 1] == "build/init" and train[train.index("--lr") + 1] == "1e-3"
    r, run, _ = calls(2, CALL_SECONDS="585", **first)
    assert r.returncode == 0, r.stderr
    assert "--resume" in run["training.train"] and not {"--init", "--lr", "--seed"} & set(run["training.train"])
