"""Hub ids wherever a local path is taken: `iic/SenseVoiceSmall`, `Qwen/Qwen3-4B`,
`user/my-bundle`, or `owner/name/file.pt` for one file of a repository.

ModelScope for FunASR's ids (its model zoo's owners, FunASR's default hub),
Hugging Face for any other id, or the hub named by `hub`. A repository already
in the local cache is used from there, with no network at all; otherwise it is
downloaded with the hub's own client, unless the hub is switched offline
(Hugging Face's HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE; ModelScope's client has
no switch of its own, so the same variables keep it offline too). The clients
are imported only when an id is actually resolved.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

HUGGINGFACE, MODELSCOPE = "huggingface", "modelscope"
HUBS = (HUGGINGFACE, MODELSCOPE)
# FunASR's models live under these owners on ModelScope (AutoModel's default hub).
MODELSCOPE_OWNERS = frozenset({"iic", "damo"})
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of "set"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_ID = re.compile(rf"({_NAME}/{_NAME})((?:/[^/\\]+)*)")
# a file's path in the Hugging Face cache: through its snapshot, or where that links to
_HF_CACHED = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/(?:snapshots/(?P<rev>[0-9a-f]{40})|blobs)(?:/|$)")


def parse_id(spec: str) -> tuple[str, str] | None:
    """(`owner/name`, path inside the repository or "") when `spec` reads as a hub id."""
    m = _ID.fullmatch(str(spec))
    if m is None or ".." in m.group(0):
        return None
    return m.group(1), m.group(2).lstrip("/")


def default_hub(repo_id: str) -> str:
    return MODELSCOPE if repo_id.split("/", 1)[0] in MODELSCOPE_OWNERS else HUGGINGFACE


def offline() -> str | None:
    """The offline switch that is set, if any."""
    return next((v for v in _OFFLINE_VARS if os.environ.get(v, "").upper() in _TRUE), None)


def resolve(spec: str | os.PathLike, *, hub: str | None = None, revision: str | None = None,
            what: str = "model") -> Path:
    """A local path as it is; a hub id → its snapshot directory (or the file inside it).

    A missing local path that does not read as `owner/name` comes back unchanged,
    so the caller's own not-found message names it."""
    path = Path(spec).expanduser()
    parsed = None if path.exists() else parse_id(str(spec))
    if parsed is None:
        return path
    repo_id, inner = parsed
    if hub is not None and hub not in HUBS:
        raise ValueError(f"unknown hub {hub!r}; use one of {', '.join(HUBS)}")
    hub = hub or default_hub(repo_id)
    root = _cached(hub, repo_id, revision)
    if root is None:
        at = f" at revision {revision}" if revision else ""
        switch = offline()
        if switch:
            raise FileNotFoundError(f"{what} {spec} is neither a local path nor in the {hub} cache{at}, and {switch} "
                                    "is set: download it while online, or pass a local directory")
        log.info("downloading %s from %s%s", repo_id, hub, at)
        root = _download(hub, repo_id, revision, what)
    else:
        log.info("%s %s: %s", what, spec, root)
    out = root / inner if inner else root
    if not out.exists():
        raise FileNotFoundError(f"{what} {spec}: {repo_id} on {hub} has no {inner}; files there: "
                                f"{', '.join(sorted(p.name for p in root.iterdir())[:20])}")
    return out


def _cached(hub: str, repo_id: str, revision: str | None) -> Path | None:
    if hub == HUGGINGFACE:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
        except LocalEntryNotFoundError:
            return None if revision else _only_hf_snapshot(repo_id)
    snapshot_download, errors = _modelscope()
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True, cache_dir=_ms_cache()))
    except errors.CacheNotFound:
        return None


def _only_hf_snapshot(repo_id: str) -> Path | None:
    """A cache copied by hand often lacks refs/main, which huggingface_hub needs to pick a
    snapshot; one snapshot alone is unambiguous (ModelScope's client takes it likewise)."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    found = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
    if len(found) != 1:
        return None
    log.warning("%s: the Hugging Face cache has no refs/main; using its only snapshot, %s", repo_id, found[0].name)
    return found[0]


def _endpoint_host(hub: str) -> str | None:
    if hub == HUGGINGFACE:
        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname
    try:
        from modelscope_hub import constants
    except ImportError:
        _modelscope()  # its one-line error: the client is not installed
    return urlparse(os.environ.get("MODELSCOPE_ENDPOINT") or constants.DEFAULT_ENDPOINT).hostname


def _check_reachable(hub: str, repo_id: str, what: str) -> None:
    """Fail at once, in one line, where the hub's host does not even resolve (no network): the
    clients would retry with back-off first, and ModelScope's logs each retry."""
    host = _endpoint_host(hub)
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError) as e:
        raise ValueError(f"{what} {repo_id} is not in the {hub} cache and {host} cannot be reached ({e}): download "
                         "it while online, or pass a local directory") from None


def _download(hub: str, repo_id: str, revision: str | None, what: str) -> Path:
    _check_reachable(hub, repo_id, what)  # before ModelScope's client, which takes seconds to import
    if hub == HUGGINGFACE:
        from huggingface_hub import snapshot_download

        kwargs = {}
    else:
        snapshot_download, _ = _modelscope()
        kwargs = {"cache_dir": _ms_cache()}
    try:
        return Path(snapshot_download(repo_id, revision=revision, **kwargs))
    except Exception as e:  # each client has its own error tree; the user needs its reason, once
        raise ValueError(f"cannot get {what} {repo_id} from {hub}: {' '.join(str(e).split())[:300]}; check the id "
                         "and the connection, or pass a local directory") from None


def _ms_cache() -> str | None:
    # modelscope reads MODELSCOPE_CACHE once per process; read it at every call instead
    return os.environ.get("MODELSCOPE_CACHE") or None


def _modelscope():
    try:  # the client itself: modelscope's own shim over it imports torch (seconds)
        from modelscope_hub import errors
        from modelscope_hub.compat.snapshot_download import snapshot_download
    except ImportError:
        raise ValueError("ModelScope ids need its client: pip install modelscope (or pass --hub huggingface, "
                         "or a local directory)") from None
    return snapshot_download, errors


def repo_of(path: str | os.PathLike) -> dict | None:
    """{hub, id, revision} when `path` lies in a hub cache (as `resolve` returns it)."""
    text = Path(os.path.abspath(path)).as_posix()  # not resolve(): a snapshot's files link into blobs/
    m = _HF_CACHED.search(text)
    if m:
        return {"hub": HUGGINGFACE, "id": f"{m['owner']}/{m['name']}", "revision": m["rev"]}
    for root in _modelscope_roots():
        try:
            rel = Path(text).relative_to(root).parts
        except ValueError:
            continue
        if len(rel) >= 2 and rel[0] == "models":  # models/owner/name, or models/owner--name/snapshots/rev
            rel = rel[1:]
        if len(rel) >= 3 and rel[1] == "snapshots" and "--" in rel[0]:
            return {"hub": MODELSCOPE, "id": rel[0].replace("--", "/", 1), "revision": rel[2]}
        if len(rel) >= 2:
            return {"hub": MODELSCOPE, "id": f"{rel[0]}/{rel[1].replace('___', '.')}", "revision": None}
    return None


def _modelscope_roots() -> list[Path]:
    env = os.environ.get("MODELSCOPE_CACHE")
    home = Path.home() / ".cache" / "modelscope"
    roots = [Path(env).expanduser()] if env else [home / "hub", home]
    return [Path(os.path.abspath(r)) for r in roots]
