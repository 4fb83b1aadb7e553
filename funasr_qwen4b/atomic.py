"""Writing files and directories whole or not at all: a temporary file or a hidden staging
directory beside the destination, renamed into place, with the modes the user's umask gives
(and what a killed run left behind removed by the next one).

Every staging directory and temporary file in use is known here, so that a process ending at
once on a signal (the command line's, while its work runs in another thread) removes them
first: `abandon`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

# The staging directories and temporary files in use, and the lock held while one is made, renamed
# into place or removed (abandon holds it until the process ends: nothing is made or renamed after).
_live: set[Path] = set()
_lock = threading.RLock()


def umask() -> int:
    # Read, not set-and-restore, where the OS lets us: os.umask would race other threads.
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(root: Path) -> None:
    """Give `root` and everything under it the modes a plain `open`/`mkdir` would
    (some writers, mkstemp among them, create files 0600 whatever the umask)."""
    mask = umask()
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temp_name(name: str, kind: str) -> str:
    return f".{name}.{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def clean_stale(parent: Path, name: str) -> None:
    """Remove what a killed run (SIGKILL, power loss) left beside `name`: hidden staging
    directories and temporary files of a process of this host that no longer runs."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(staging|tmp)-{_HOST}-(\d+)-[0-9a-f]{{8}}")
    with contextlib.suppress(OSError):
        for p in parent.iterdir():
            m = pattern.match(p.name)
            if m is None or _alive(int(m.group(2))):
                continue
            log.info("removing %s, left by an interrupted run (process %s)", p, m.group(2))
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def swap_in(new: Path, dest: Path, trash: Path) -> None:
    """Rename `new` to `dest`; a `dest` already there is moved to `trash` first, and put back
    if the rename fails, so what is being replaced stays where it was (both renames under the
    lock: a process stopped at once never stops between them)."""
    with _lock:
        try:
            if dest.exists():
                os.rename(dest, trash)
            os.rename(new, dest)
        except BaseException:
            if trash.exists() and not dest.exists():
                os.rename(trash, dest)
            raise


def abandon() -> None:
    """For a process about to end at once: remove every staging directory and temporary file in
    use, and keep the lock, so that no other thread makes or renames one in the moments left."""
    _lock.acquire()
    for p in sorted(_live):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    _live.clear()


@contextlib.contextmanager
def staging(parent: str | Path, name: str) -> Iterator[Path]:
    """A new hidden directory in `parent` to build `name` in, removed on the way out
    whatever happens (SIGTERM included, where the command line turns it into an exception);
    ones left by killed runs are removed first."""
    parent = Path(parent)
    clean_stale(parent, name)
    with _lock:
        while True:
            path = parent / _temp_name(name, "staging")
            try:
                path.mkdir()  # mode 0777 less the umask, unlike mkdtemp's 0700
                break
            except FileExistsError:
                continue
        _live.add(path)
    try:
        yield path
    finally:
        with _lock:
            shutil.rmtree(path, ignore_errors=True)
            _live.discard(path)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A new directory under the system's temporary directory, removed on the way out (and by
    `abandon`)."""
    with _lock:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        _live.add(path)
    try:
        yield path
    finally:
        with _lock:
            shutil.rmtree(path, ignore_errors=True)
            _live.discard(path)


def write_atomic(path: str | Path, write_fn, suffix: str | None = None) -> None:
    """`write_fn(tmp_path)` writes beside `path`, then the file is renamed into
    place: a reader never sees a half-written file, and a failure leaves none.
    The file gets the user's umask. (Only SIGKILL can leave the temporary file; the next
    conversion into the same place removes it, see `staging`.)"""
    path = Path(path)
    with _lock:
        while True:
            tmp = path.parent / (_temp_name(path.name, "tmp") + (suffix or path.suffix or ".tmp"))
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
        _live.add(tmp)
    try:
        write_fn(str(tmp))
        apply_umask(tmp)
        with _lock:
            os.replace(tmp, path)
            _live.discard(tmp)
    except BaseException:
        with _lock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            _live.discard(tmp)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
