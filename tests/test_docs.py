"""The docs say what is true now and point at what exists.

- README.md's fenced commands run: every command of this project in a shell block (not a
  ```python block) that needs no real weights is run with this environment's executables, in
  a scratch working copy (models/ and datasets/ linked in, outputs such as build/demo written
  there), and must exit 0. The rest is skipped by one explicit rule (`skip_reason`), never
  silently, and the README's main job (convert the demonstration model, transcribe the two
  committed clips) must be among those run.
- README.md is at most 300 lines.
- No file of the repository cites a file outside it (the design notes the project was started
  from are not in it).
- Every relative link of README.md, benchmarks/README.md and docs/*.md leads to a file that
  exists (and, with an anchor, to a heading of that file); every docs page is linked from the
  README; every benchmarks/*.json is listed in benchmarks/README.md.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import HANG_S

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCH_README = ROOT / "benchmarks" / "README.md"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent  # the environment running the tests: funasr-qwen4b is beside python
# A command of this project starts with one of these.
CLI = ("funasr-qwen4b", ".venv/bin/funasr-qwen4b")
PYTHONS = ("python", "python3", ".venv/bin/python")
# Paths of the repository a README command may read (linked into the scratch copy), and the
# outputs it may write there.
DATA = ("models/demo", "datasets/")
OUTPUTS = ("build/",)
# What a command names as a model or weights.
MODEL_FLAGS = ("-m", "--model", "--sensevoice", "--adaptor", "--llm")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced code block."""
    return re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.M | re.S)


def shell_commands(text: str) -> list[list[str]]:
    """Each command of the shell blocks (info string empty, sh, bash or console), as words:
    lines split at `&&`, comments dropped."""
    out = []
    for info, body in fenced_blocks(text):
        if info.strip() not in ("", "sh", "bash", "shell", "console"):
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            cmd: list[str] = []
            for w in words + ["&&"]:
                if w == "&&":
                    if cmd:
                        out.append(cmd)
                    cmd = []
                else:
                    cmd.append(w)
    return out


def _values(cmd: list[str], flags: tuple[str, ...]) -> list[str]:
    return [cmd[i + 1] for i, w in enumerate(cmd[:-1]) if w in flags]


def _ours(path: str) -> bool:
    return path.startswith(DATA + OUTPUTS)


def skip_reason(cmd: list[str]) -> str | None:
    """Why a README command is not run here, or None when it is. The rule, in order:
    1. not a command of this project (curl, ffmpeg, hf, pip): another tool's;
    2. `python -m venv` and `pip install`: setting up needs a package registry and minutes;
    3. `python -m pytest`: the suite this test is part of;
    4. `--help`: always run;
    5. `serve`: a server that runs until stopped;
    6. `bench --synthetic`: real-size weights, minutes of CPU (a GPU's work);
    7. a pipe or a redirection: the README shows them with the user's own files;
    8. a model or weights (-m, --sensevoice, --adaptor, --llm, or convert's source) outside
       models/demo and build/: the user's real weights or a hub download;
    9. a file argument that neither exists in the repository's models/ or datasets/ nor is
       written under build/: the user's own audio or manifest."""
    head = cmd[0]
    if head in PYTHONS and cmd[1:2] == ["-m"]:
        module = cmd[2]
        if module in ("venv", "pip"):
            return "set-up: installing needs a package registry and minutes"
        if module == "pytest":
            return "the test suite itself"
        args = cmd[3:]
    elif head in CLI:
        args = cmd[1:]
    elif head.endswith("pip") or head.endswith("/pip"):
        return "set-up: installing needs a package registry and minutes"
    else:
        return f"not a command of this project ({head})"
    if "--help" in args or "-h" in args:
        return None
    if args[:1] == ["serve"]:
        return "a server"
    if args[:1] == ["bench"] and "--synthetic" in args:
        return "real-size random weights: minutes of CPU"
    if any(w in ("|", ">", "<", "2>") for w in args):
        return "a pipe or redirection of the user's own files"
    models = _values(args, MODEL_FLAGS)
    if args[:1] == ["convert"] and len(args) > 2 and args[1] in ("sensevoice", "adaptor", "llm"):
        models.append(args[2])
    if any(not _ours(m) for m in models):
        return "needs the user's real weights or a hub download"
    paths = [w for w in args if "/" in w or re.search(r"\.(wav|flac|jsonl|json|pt)$", w)]
    if any(not (_ours(p) and (p.startswith(OUTPUTS) or (ROOT / p).exists())) for p in paths):
        return "needs the user's own files"
    return None


@dataclass
class Run:
    cmd: list[str]
    skipped: str | None = None
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    argv: list[str] = field(default_factory=list)


def executable(cmd: list[str]) -> list[str]:
    """The command with this environment's executables."""
    if cmd[0] in CLI:
        return [str(BIN / "funasr-qwen4b"), *cmd[1:]]
    return [sys.executable, *cmd[1:]]


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory) -> list[Run]:
    """Every README command, run in order (the main job converts build/demo once; later
    commands reuse it) in a scratch working copy, or skipped with its reason."""
    work = tmp_path_factory.mktemp("readme")
    for name in ("models", "datasets"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    env = {**os.environ, "MLX_ENABLE_TF32": "0", "HF_HUB_OFFLINE": "1"}
    runs = []
    for cmd in shell_commands(README.read_text(encoding="utf-8")):
        run = Run(cmd, skip_reason(cmd))
        if run.skipped is None:
            run.argv = executable(cmd)
            p = subprocess.run(run.argv, cwd=work, env=env, capture_output=True, text=True, timeout=HANG_S)
            run.returncode, run.stdout, run.stderr = p.returncode, p.stdout, p.stderr
        runs.append(run)
    return runs


def test_readme_commands_that_need_no_real_weights_run(readme_runs):
    ran = [r for r in readme_runs if r.skipped is None]
    assert ran, "no README command was run"
    for r in ran:
        assert r.returncode == 0, f"{shlex.join(r.cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    for r in ran:
        if r.cmd[1:2] == ["transcribe"] or r.cmd[1:2] == ["cer"]:
            assert r.stdout.strip(), f"{shlex.join(r.cmd)} printed nothing on stdout"


def test_readme_main_job_is_run(readme_runs):
    """The first block's chain: convert the demonstration model into build/demo, then transcribe
    the two committed clips with it: one line each on stdout, with text."""
    convert = [r for r in readme_runs if r.skipped is None and r.cmd[1:3] == ["convert", "bundle"]
               and "models/demo/sensevoice" in r.cmd and r.cmd[r.cmd.index("-o") + 1] == "build/demo"]
    assert convert, "the README's main job (convert bundle ... -o build/demo) was not run"
    clips = ["datasets/clips/zh_open_hours.wav", "datasets/en_heldout/en_heldout_003.flac"]
    main = [r for r in readme_runs if r.skipped is None and r.cmd[1:2] == ["transcribe"]
            and all(c in r.cmd for c in clips) and "build/demo" in r.cmd]
    assert main, "the README's main job (transcribe the two clips with build/demo) was not run"
    lines = main[0].stdout.splitlines()
    assert len(lines) == 2 and all(line.split("\t")[1].strip() for line in lines), main[0].stdout
    assert [line.split("\t")[0] for line in lines] == clips


def test_readme_skips_follow_the_rule(readme_runs):
    """Each README command is run or skipped for a stated reason; the rule skips the set-up and
    the user's own weights, and runs nothing that names them."""
    for r in readme_runs:
        assert r.skipped is None or r.skipped in SKIP_REASONS or r.skipped.startswith("not a command"), r
    assert any(r.skipped == "needs the user's real weights or a hub download" for r in readme_runs)


SKIP_REASONS = {"set-up: installing needs a package registry and minutes", "the test suite itself", "a server",
                "real-size random weights: minutes of CPU", "a pipe or redirection of the user's own files",
                "needs the user's real weights or a hub download", "needs the user's own files"}


@pytest.mark.parametrize("cmd, reason", [
    ("funasr-qwen4b transcribe a.wav -m bundle/", "needs the user's real weights or a hub download"),
    ("funasr-qwen4b convert sensevoice iic/SenseVoiceSmall -o build/x", "needs the user's real weights or a hub download"),
    ("funasr-qwen4b transcribe mine.wav -m build/demo", "needs the user's own files"),
    ("funasr-qwen4b serve -m build/demo", "a server"),
    ("funasr-qwen4b bench --synthetic full", "real-size random weights: minutes of CPU"),
    (".venv/bin/python -m pytest -q", "the test suite itself"),
    ("python3 -m venv .venv", "set-up: installing needs a package registry and minutes"),
    ("curl -F file=@clip.wav http://127.0.0.1:8000", "not a command of this project (curl)"),
    ("funasr-qwen4b transcribe datasets/clips/zh_open_hours.wav -m build/demo", None),
    ("funasr-qwen4b serve --help", None),
    ("python -m funasr_qwen4b.parity.accuracy --help", None),
])
def test_skip_rule(cmd, reason):
    assert skip_reason(shlex.split(cmd)) == reason


def test_shell_commands_split_chains_and_drop_comments():
    text = "```\na x && b y  # why\n```\n```python\nc()\n```\n"
    assert shell_commands(text) == [["a", "x"], ["b", "y"]]


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines; the bar is 300 (move detail into docs/)"


# Files outside this repository that its code and docs once cited (spelled in pieces, so that
# this file does not cite them either).
OUTSIDE = tuple(s.encode() for s in ("REFERENCE" ".md", ".." "/shared", "DESIGN" ".md", "STYLE" ".md"))


# Outside a git checkout (an unpacked source tree), what is not the repository's own.
NOT_OURS = {"build", "reports", "__pycache__"}


def repository_files() -> list[Path]:
    """Tracked files and untracked ones git does not ignore; outside a git checkout, every file
    but those in hidden folders (.ci/ is ours), build outputs and installed metadata."""
    try:
        p = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True)
    except FileNotFoundError:  # no git installed
        p = None
    if p is not None and p.returncode == 0:
        return [ROOT / n for n in p.stdout.decode().split("\0") if n]
    return [f for f in ROOT.rglob("*") if f.is_file() and not any(
        (part.startswith(".") and part != ".ci") or part in NOT_OURS or part.endswith(".egg-info")
        for part in f.relative_to(ROOT).parts[:-1])]


def test_no_file_cites_a_file_outside_the_repository():
    cites = []
    for path in repository_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        data = path.read_bytes()
        for name in OUTSIDE:
            if name in data:
                line = data[: data.index(name)].count(b"\n") + 1
                cites.append(f"{path.relative_to(ROOT)}:{line}: {name.decode()}")
    assert not cites, "files cite what is not in the repository:\n" + "\n".join(cites)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MENTION = re.compile(r"`((?:docs|benchmarks)/[\w.-]+\.(?:md|json))`")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def doc_pages() -> list[Path]:
    return [README, BENCH_README, *sorted(DOCS.glob("*.md"))]


def test_docs_pages_exist_and_are_linked_from_the_readme():
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    readme = README.read_text(encoding="utf-8")
    linked = {Path(t).as_posix() for t in LINK.findall(readme)}
    missing = [p.relative_to(ROOT).as_posix() for p in pages if p.relative_to(ROOT).as_posix() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_somewhere(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    for mention in MENTION.findall(text):
        if "*" not in mention and not (ROOT / mention).exists() and not (page.parent / mention).exists():
            broken.append(f"`{mention}`: no such file")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_every_benchmark_result_is_listed():
    listed = BENCH_README.read_text(encoding="utf-8")
    results = sorted(p.name for p in (ROOT / "benchmarks").glob("*.json"))
    assert results
    missing = [name for name in results if f"`{name}`" not in listed]
    assert not missing, f"benchmarks/README.md does not list {missing}"
    scripts = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))
    assert not [s for s in scripts if f"`{s}`" not in listed], "benchmarks/README.md does not list every script"
