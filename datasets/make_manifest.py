"""Build a JSONL manifest for `funasr-qwen4b cer` from a corpus you hold locally.

Nothing is downloaded: this only reads files already on your disk.

  python datasets/make_manifest.py --aishell /data/aishell1 -o aishell_test.jsonl        # test split
  python datasets/make_manifest.py --aishell /data/aishell1 --split dev -o aishell_dev.jsonl
  python datasets/make_manifest.py --kaldi data/test -o test.jsonl                      # DIR/wav.scp + DIR/text
  python datasets/make_manifest.py --wav-scp wav.scp --text text --lang en -o test.jsonl

AISHELL-1 (openslr 33) as unpacked: DIR/transcript/aishell_transcript_v0.8.txt
("BAC009S0002W0122 而 对 楼市 成交 ...", words space-separated; the spaces are dropped) and
DIR/wav/<split>/<speaker>/<id>.wav; DIR may also be the folder that holds data_aishell/.
The per-speaker .tar.gz archives under wav/ must be extracted first.

Kaldi: `wav.scp` lines "<utt-id> <path>" (relative paths resolve against --wav-root, default
the current directory, as in a Kaldi recipe); pipe commands and ark: entries are refused.
`text` lines "<utt-id> <transcript>".

Each output line: {"id", "audio" (relative to the manifest), "text", "lang"}, sorted by id.
Utterances present on only one side (transcript without audio, audio without transcript)
are left out and counted on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

AISHELL_TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"
SPLITS = ("train", "dev", "test")


class ManifestBuildError(ValueError):
    """Bad input; the message is one line naming the file (and line)."""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _read_table(path: Path, what: str, *, allow_empty_value: bool = False) -> dict[str, tuple[int, str]]:
    """'<key> <value>' lines → {key: (line number, value)}; duplicates and missing values refused."""
    if not path.is_file():
        raise ManifestBuildError(f"{what} not found: {path}")
    table: dict[str, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise ManifestBuildError(f"{path} line {no}: '{key}' has no {what.split()[0]} value")
            if key in table:
                raise ManifestBuildError(f"{path} line {no}: duplicate id {key!r} (first on line {table[key][0]})")
            table[key] = (no, value)
    return table


def _find_aishell(root: Path) -> Path:
    for base in (root, root / "data_aishell"):
        if (base / AISHELL_TRANSCRIPT).is_file():
            return base
    raise ManifestBuildError(f"no {AISHELL_TRANSCRIPT} under {root} or {root / 'data_aishell'}; "
                             f"pass the unpacked AISHELL-1 directory (the one holding transcript/ and wav/)")


def aishell(root: str | Path, split: str = "test", lang: str = "zh") -> list[dict]:
    base = _find_aishell(Path(root))
    wav_dir = base / "wav" / split
    if not wav_dir.is_dir():
        raise ManifestBuildError(f"no {wav_dir}: AISHELL-1 audio of the {split} split is missing "
                                 f"(extract data_aishell/wav/*.tar.gz first)")
    wavs = {p.stem: p for p in sorted(wav_dir.rglob("*.wav"))}
    if not wavs:
        archives = sorted(wav_dir.glob("*.tar.gz")) + sorted((base / "wav").glob("*.tar.gz"))
        hint = (f"; {len(archives)} .tar.gz archives are there: extract them (tar xzf) first" if archives else "")
        raise ManifestBuildError(f"no .wav files under {wav_dir}{hint}")
    transcript = _read_table(base / AISHELL_TRANSCRIPT, "transcript file")
    entries, no_text = [], 0
    for uid, path in wavs.items():
        if uid not in transcript:
            no_text += 1
            continue
        entries.append({"id": uid, "audio": path, "text": "".join(transcript[uid][1].split()), "lang": lang})
    _log(f"aishell {split}: {len(entries)} utterances; {no_text} wav files without a transcript left out")
    if not entries:
        raise ManifestBuildError(f"none of the {len(wavs)} wav files under {wav_dir} has a line in "
                                 f"{base / AISHELL_TRANSCRIPT}")
    return entries


def kaldi(wav_scp: str | Path, text: str | Path, lang: str | None = None,
          wav_root: str | Path | None = None) -> list[dict]:
    wav_scp, text = Path(wav_scp), Path(text)
    root = Path(wav_root) if wav_root is not None else Path.cwd()
    scp = _read_table(wav_scp, "wav.scp file")
    texts = _read_table(text, "text file", allow_empty_value=True)
    entries, no_text, empty = [], 0, 0
    for uid in sorted(scp):
        no, value = scp[uid]
        if value.endswith("|") or value.startswith(("ark:", "scp:")) or ".ark:" in value:
            raise ManifestBuildError(f"{wav_scp} line {no}: {value!r} is a pipe or ark entry; only plain audio "
                                     f"file paths are supported (write the audio out as WAV/FLAC first)")
        path = Path(value) if Path(value).is_absolute() else root / value
        if not path.is_file():
            raise ManifestBuildError(f"{wav_scp} line {no}: audio file not found: {path}"
                                     + ("" if wav_root else " (relative paths resolve against the current "
                                        "directory; pass --wav-root)"))
        if uid not in texts:
            no_text += 1
            continue
        if not texts[uid][1]:
            empty += 1
            continue
        e = {"id": uid, "audio": path, "text": texts[uid][1]}
        if lang:
            e["lang"] = lang
        entries.append(e)
    no_audio = sum(1 for uid in texts if uid not in scp)
    _log(f"kaldi: {len(entries)} utterances; left out: {no_text} without text, {empty} with empty text, "
         f"{no_audio} transcripts without audio")
    if not entries:
        raise ManifestBuildError(f"no utterance id is in both {wav_scp} and {text} with a non-empty transcript")
    return entries


def write_manifest(entries: list[dict], out: str | Path, absolute: bool = False) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for e in sorted(entries, key=lambda e: e["id"]):
        audio = Path(e["audio"]).resolve()
        rel = str(audio) if absolute else os.path.relpath(audio, out.parent.resolve())
        lines.append(json.dumps({**e, "audio": rel}, ensure_ascii=False) + "\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make_manifest.py", description=__doc__.split("\n\n")[0] + " Nothing is "
                                 "downloaded.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--aishell", metavar="DIR", help="unpacked AISHELL-1 (data_aishell or its parent)")
    src.add_argument("--kaldi", metavar="DIR", help="a Kaldi data directory holding wav.scp and text")
    src.add_argument("--wav-scp", metavar="FILE", help="a Kaldi wav.scp (with --text)")
    ap.add_argument("--text", metavar="FILE", help="the Kaldi text file that goes with --wav-scp")
    ap.add_argument("--split", choices=SPLITS, default="test", help="AISHELL-1 split (default test)")
    ap.add_argument("--lang", help="language written into every line (default zh for AISHELL-1, none for Kaldi)")
    ap.add_argument("--wav-root", metavar="DIR", help="resolve relative wav.scp paths against DIR "
                    "(default: the current directory)")
    ap.add_argument("--absolute", action="store_true", help="write absolute audio paths")
    ap.add_argument("-o", "--output", required=True, help="output manifest (.jsonl)")
    args = ap.parse_args(argv)
    try:
        if args.aishell:
            entries = aishell(args.aishell, args.split, args.lang or "zh")
        else:
            if args.kaldi:
                scp, text = Path(args.kaldi) / "wav.scp", Path(args.kaldi) / "text"
            elif not args.text:
                raise ManifestBuildError("--wav-scp needs --text (the transcripts)")
            else:
                scp, text = Path(args.wav_scp), Path(args.text)
            entries = kaldi(scp, text, args.lang, args.wav_root)
        out = write_manifest(entries, args.output, args.absolute)
    except (ManifestBuildError, OSError, UnicodeDecodeError) as e:
        print(f"make_manifest.py: error: {e}", file=sys.stderr)
        return 2
    _log(f"wrote {out} ({len(entries)} utterances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
