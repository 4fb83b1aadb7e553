"""Hub ids wherever a path is taken, resolved offline from each hub's own cache
layout: the committed demonstration model laid out as Hugging Face and ModelScope
would have downloaded it, in a temporary directory, with no network."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from funasr_qwen4b import hub
from tests.conftest import CLIPS, DEMO, HANG_S
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def hf_layout(cache: Path, repo_id: str, src: Path, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """HF_HOME/hub/models--owner--name: blobs named by hash, snapshots/<commit>/ of relative
    symlinks into them, refs/<ref> holding the commit (as huggingface_hub writes it)."""
    repo = cache / "hub" / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    files = [p for p in src.rglob("*") if p.is_file()] if src.is_dir() else [src]
    for f in files:
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, blob)
        link = snap / (f.relative_to(src) if src.is_dir() else f.name)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap


def modelscope_layout(cache: Path, repo_id: str, src: Path, new: bool) -> Path:
    """MODELSCOPE_CACHE/models/owner/name (the layout FunASR's AutoModel downloads have used), or
    models/owner--name/snapshots/master (modelscope-hub's)."""
    owner, name = repo_id.split("/")
    dest = cache / "models" / (f"{owner}--{name}/snapshots/master" if new else f"{owner}/{name}")
    shutil.copytree(src, dest)
    return dest


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty hub caches the hub clients read, as HF_HOME / MODELSCOPE_CACHE set them."""
    import huggingface_hub.constants

    hf, ms = tmp_path / "hf", tmp_path / "ms"
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(ms))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a lookup that missed the cache must not reach the network
    # huggingface_hub reads HF_HOME once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf / "hub"))
    return hf, ms


def test_id_syntax():
    assert hub.parse_id("Qwen/Qwen3-4B") == ("Qwen/Qwen3-4B", "")
    assert hub.parse_id("owner/repo/sub/adaptor.pt") == ("owner/repo", "sub/adaptor.pt")
    for not_id in ("bundle", "/abs/path", "./rel/x", "../x/y", "~/x", "a/../b", "C:\\x\\y", "-x/y"):
        assert hub.parse_id(not_id) is None, not_id
    assert hub.default_hub("iic/SenseVoiceSmall") == hub.default_hub("damo/x") == hub.MODELSCOPE
    assert hub.default_hub("FunAudioLLM/SenseVoiceSmall") == hub.default_hub("Qwen/Qwen3-4B") == hub.HUGGINGFACE


@pytest.mark.parametrize("new_layout", [False, True])
def test_resolves_offline_from_each_hubs_cache(caches, new_layout):
    hf, ms = caches
    sv = modelscope_layout(ms, "iic/SenseVoiceSmall", DEMO / "sensevoice", new_layout)
    llm = hf_layout(hf, "Qwen/Qwen3-4B", DEMO / "qwen3")
    assert hub.resolve("iic/SenseVoiceSmall") == sv  # FunASR's id: ModelScope
    assert hub.resolve("Qwen/Qwen3-4B") == llm
    assert hub.resolve("Qwen/Qwen3-4B", revision=COMMIT) == llm
    assert (hub.resolve("Qwen/Qwen3-4B/config.json")).read_bytes() == (DEMO / "qwen3/config.json").read_bytes()
    assert hub.repo_of(llm / "model.safetensors") == {"hub": "huggingface", "id": "Qwen/Qwen3-4B", "revision": COMMIT}
    assert hub.repo_of(sv / "model.pt")["id"] == "iic/SenseVoiceSmall"
    # --hub: the same id from the other hub, whose cache does not hold it
    with pytest.raises(FileNotFoundError, match="iic/SenseVoiceSmall.*huggingface cache.*HF_HUB_OFFLINE is set"):
        hub.resolve("iic/SenseVoiceSmall", hub="huggingface")


def test_local_paths_win_and_misses_are_one_clear_line(caches, tmp_path, monkeypatch):
    hf, _ = caches
    local = tmp_path / "Qwen" / "Qwen3-4B"
    local.mkdir(parents=True)
    hf_layout(hf, "Qwen/Qwen3-4B", DEMO / "qwen3")
    monkeypatch.chdir(tmp_path)
    assert hub.resolve("Qwen/Qwen3-4B") == Path("Qwen/Qwen3-4B")  # an existing directory is never an id
    assert hub.resolve("no-such-dir") == Path("no-such-dir")  # not an id: the caller says "not found"
    with pytest.raises(FileNotFoundError) as e:
        hub.resolve("Qwen/Qwen3-8B", what="LLM")
    assert "LLM Qwen/Qwen3-8B is neither a local path nor in the huggingface cache" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match=f"at revision {OTHER_COMMIT}"):
        hub.resolve("Other/Qwen3", revision=OTHER_COMMIT)
    with pytest.raises(ValueError, match="unknown hub 'github'"):
        hub.resolve("Other/Qwen3", hub="github")


def test_modelscope_revision_and_hub_choice(caches):
    hf, ms = caches
    snap = hf_layout(hf, "owner/only-on-hf", DEMO / "qwen3", ref=None)  # copied by hand: no refs/main
    assert hub.resolve("owner/only-on-hf") == snap  # its only snapshot
    hf_layout(hf, "owner/only-on-hf", DEMO / "qwen3", commit=OTHER_COMMIT, ref=None)
    with pytest.raises(FileNotFoundError, match="owner/only-on-hf.*huggingface cache"):
        hub.resolve("owner/only-on-hf")  # two snapshots and no ref: which one is unknown
    repo = hf / "hub" / "models--owner--only-on-hf"
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(OTHER_COMMIT)
    snap = repo / "snapshots" / OTHER_COMMIT
    ms_only = modelscope_layout(ms, "owner/only-on-ms", DEMO / "sensevoice", new=True)
    assert hub.resolve("owner/only-on-hf") == snap
    assert hub.resolve("owner/only-on-ms", hub="modelscope") == ms_only
    with pytest.raises(FileNotFoundError, match="owner/only-on-ms.*huggingface cache"):
        hub.resolve("owner/only-on-ms")


def test_convert_and_transcribe_take_hub_ids_offline(caches, tmp_path, capsys):
    """What a user types: FunASR's and Qwen's ids, an adaptor repo, a bundle repo; no network."""
    from funasr_qwen4b import Transcriber
    from funasr_qwen4b.app.cli import main

    hf, ms = caches
    modelscope_layout(ms, "iic/SenseVoiceSmall", DEMO / "sensevoice", new=False)
    hf_layout(hf, "Qwen/Qwen3-4B", DEMO / "qwen3")
    hf_layout(hf, "demo/adaptor", DEMO / "adaptor.pt")
    out = tmp_path / "bundle"
    assert main(["convert", "bundle", "--sensevoice", "iic/SenseVoiceSmall", "--adaptor", "demo/adaptor",
                 "--llm", "Qwen/Qwen3-4B", "-o", str(out), "--dtype", "float32"]) == 0
    card = (out / "README.md").read_text()
    assert "`iic/SenseVoiceSmall` / `model.pt`" in card and f"`Qwen/Qwen3-4B@{COMMIT[:12]}`" in card
    assert "- Qwen/Qwen3-4B" in card  # base_model, linked on the Hub
    from funasr_qwen4b.files import sha256_file

    assert sha256_file(DEMO / "adaptor.pt") in card

    # the bundle, uploaded and downloaded again, by its repo id
    hf_layout(hf, "you/demo-bundle", out)
    clip = str(CLIPS / "zh_open_hours.wav")
    assert main(["transcribe", clip, "-m", "you/demo-bundle", "--ctc"]) == 0
    by_id = capsys.readouterr().out
    assert main(["transcribe", clip, "-m", str(out), "--ctc"]) == 0
    assert capsys.readouterr().out == by_id
    t = Transcriber.load("you/demo-bundle", language="en", revision=COMMIT)
    assert t.pipeline.query.language == "en"
    assert t.transcribe(clip, language="zh")["text"] == Transcriber.load(out).transcribe(clip)["text"]


def test_not_cached_offline_is_one_line_from_the_environment(tmp_path):
    """HF_HUB_OFFLINE and HF_HOME as a user sets them, in a fresh process."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "MODELSCOPE_CACHE": str(tmp_path / "ms"),
           "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "funasr_qwen4b.app.cli", "convert", "sensevoice", "iic/SenseVoiceSmall",
                        "-o", str(tmp_path / "b")], capture_output=True, text=True, env=env, timeout=HANG_S)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "iic/SenseVoiceSmall" in lines[0] and "modelscope cache" in lines[0], r.stderr
    assert not (tmp_path / "b").exists()


def test_torch_needing_commands_name_their_extra_in_an_mlx_only_install(bundle, tmp_path):
    """torch absent (as in `pip install funasr-qwen4b-mlx[mlx]`): one line naming the extra, exit 2."""
    script = ("import sys; sys.modules['torch'] = None\n"  # `import torch` now fails as if not installed
              "from funasr_qwen4b.app.cli import main\n"
              "for argv in sys.argv[1:]: print(main(argv.split('|')))")
    commands = [("convert", ["convert", "bundle", "--sensevoice", str(DEMO / "sensevoice"), "-o", str(tmp_path / "b")]),
                ("reference", ["selfcheck"]),
                ("reference", ["transcribe", "--ctc", str(CLIPS / "zh_open_hours.wav"), "-m", str(bundle),
                               "--backend", "reference"])]
    r = subprocess.run([sys.executable, "-c", script, *("|".join(c) for _, c in commands)],
                       capture_output=True, text=True, timeout=HANG_S)
    assert r.stdout.split() == ["2", "2", "2"], r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in r.stderr
    for line, (extra, _) in zip(lines, commands):
        assert "torch" in line and f"pip install 'funasr-qwen4b-mlx[{extra}]'" in line, line
    assert not (tmp_path / "b").exists()
