"""Shards: one `cer` run split over machines (`Shard`), each a run of its own with its own
resumable partial file, merged back into the report the whole run gives (`merge_shards`),
after checking that the files are that run's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from funasr_qwen4b.files import sha256_file
from funasr_qwen4b.manifest import Entry, load_manifest

from .cer import differing, read_partial


@dataclass(frozen=True)
class Shard:
    """The `index`-th of `count` shards, counted from 1 as `--shard 2/4` reads: entry i of the
    manifest (from 0) is shard i % count + 1's. Dealt round-robin, a manifest sorted by length
    gives shards of about equal work."""
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        i, sep, n = text.partition("/")
        if not (sep and i.isdecimal() and n.isdecimal() and 1 <= int(i) <= int(n)):
            raise ValueError(f"--shard {text!r}: expected I/N, the I-th of N shards counted from 1 "
                             f"(for 4 shards: 1/4, 2/4, 3/4, 4/4)")
        return cls(int(i), int(n))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        return f".shard{self.index}-of-{self.count}"

    def take(self, entries: list[Entry]) -> list[Entry]:
        return entries[self.index - 1::self.count]

    def report(self, report_json: str | Path) -> Path:
        """FILE.json → FILE.shardI-of-N.json (its partial file: FILE.shardI-of-N.partial.jsonl)."""
        p = Path(report_json)
        return p.with_name(p.name.removesuffix(".json") + self.suffix + ".json")


def shard_header(header: dict, shard: Shard, *, backends: list[str], meta: dict) -> dict:
    """A shard's partial header: the whole run's `header` (its "manifest" resolved), which shard,
    and what the merge needs to give the whole run's report: the manifest's sha256, the backends
    and the report's `meta` (with the manifest as given and the --limit)."""
    return {**header, "shard": str(shard), "manifest_sha256": sha256_file(header["manifest"]),
            "backends": list(backends), "meta": meta}


MERGE_FIX = "give the FILE.shardI-of-N.partial.jsonl files that `cer --shard I/N --report FILE.json` wrote"


def _read_shards(paths: list[Path]) -> tuple[dict, int, dict[int, tuple[Path, dict]]]:
    """The shards' common header, their count, and each shard's (file, results); one run's, each once."""
    first: tuple[Path, dict, Shard] | None = None
    shards: dict[int, tuple[Path, dict]] = {}
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path} not found; {MERGE_FIX}")
        header, done = read_partial(path, MERGE_FIX)
        if not isinstance(header, dict) or "shard" not in header:
            raise ValueError(f"{path} is not a shard's partial file (its first line names no shard); {MERGE_FIX}")
        shard = Shard.parse(header["shard"])
        if first is None:
            first = (path, header, shard)
        diff = differing({**first[1], "shard": None}, {**header, "shard": None})
        if diff:
            raise ValueError(f"{path} is from another run than {first[0]} ({', '.join(diff)} differ); rerun its "
                             f"shard with the same command as the others apart from --shard")
        if shard.count != first[2].count:
            raise ValueError(f"{path} is shard {shard} but {first[0]} is shard {first[2]}: merge the shards of one "
                             f"split, all of the same N")
        if shard.index in shards:
            raise ValueError(f"{path} and {shards[shard.index][0]} are both shard {shard}; give each shard once")
        shards[shard.index] = (path, done)
    assert first is not None, "merge_shards needs at least one file"
    path, _, have = first
    for i in range(1, have.count + 1):
        if i not in shards:
            want = Shard(i, have.count)
            tail = have.suffix + ".partial.jsonl"
            name = (f" ({path.with_name(path.name.removesuffix(tail) + want.suffix + '.partial.jsonl')})"
                    if path.name.endswith(tail) else "")
            raise ValueError(f"shard {want} is missing{name}: run the same cer command with --shard {want}, "
                             f"then merge again with every shard's file")
    return first[1], have.count, shards


def merge_shards(paths: list[str | Path]) -> tuple[list[Entry], dict[str, dict[str, dict]], dict]:
    """The shards' partial files → (entries, results, meta) of the whole run, as `run_utterances`
    and the run would give them, after checking the files are that run's: one header apart from
    "shard", every shard 1..N once, each with every result of its own entries and no other, the
    manifest unchanged since."""
    header, count, shards = _read_shards([Path(p) for p in paths])
    manifest, meta = Path(header["manifest"]), header["meta"]
    if not manifest.is_file():
        raise ValueError(f"manifest {manifest} (the shards' own) not found: merge where it is, for its texts")
    if sha256_file(manifest) != header["manifest_sha256"]:
        raise ValueError(f"manifest {manifest} changed since the shards ran (its sha256 differs); restore it, or "
                         f"rerun every shard")
    given = Path(meta["manifest"])  # as the run named it, when it names the same file from here: the same rows
    entries = load_manifest(given if given.resolve() == manifest else manifest, check_audio=False)
    entries = entries[:meta["limit"]] if meta["limit"] else entries
    owner = {e.id: i % count + 1 for i, e in enumerate(entries)}
    results: dict[str, dict[str, dict]] = {b: {} for b in header["backends"]}
    for index, (path, done) in sorted(shards.items()):
        stray = [uid for uid, _ in done if owner.get(uid) != index]
        if stray:
            raise ValueError(f"{path} (shard {index}/{count}) holds id {stray[0]!r}, which is not this shard's; "
                             f"{MERGE_FIX}")
        mine = [(e.id, b) for e in Shard(index, count).take(entries) for b in results]
        missing = [key for key in mine if key not in done]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"{path} (shard {index}/{count}) has no {missing[0][1]} result for id "
                             f"{missing[0][0]!r}{more}: that shard has not finished; rerun its command (it resumes), "
                             f"then merge again")
        for uid, b in mine:
            results[b][uid] = done[(uid, b)]
    return entries, results, meta
