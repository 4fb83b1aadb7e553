"""Score a trained model directory (sensevoice/, adaptor.pt, qwen3/) with the
reference pipeline on the held-out sets: the LLM transcript and the CTC head on
each set's speech (test.jsonl), and how many of its non-speech clips
(nospeech.jsonl, open sets only) come out empty.

Run:  python -m training.evaluate models/demo [--json FILE] [--log]

It also says which of the bars for replacing models/demo (BARS, and every non-speech clip
empty) the model misses.

This reads the original files directly (no bundle), so it also runs on a
training machine without MLX; `funasr-qwen4b cer` is the user-facing scorer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from funasr_qwen4b.manifest import load_manifest
from funasr_qwen4b.text import Counts, cer_text, char_counts, word_counts

from .cli import add_modules_only_option, apply_modules_only_option
from .data import HELDOUT_DIRS, OPEN_DIRS

SETS = {d.name: d for d in (*HELDOUT_DIRS.values(), *OPEN_DIRS.values())}


def nospeech_clips(manifest: Path) -> list[tuple[str, Path]]:
    """(id, audio) of a nospeech.jsonl: empty transcripts, which test-set manifests refuse."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["id"], manifest.parent / r["audio"]) for r in rows]


def evaluate(model_dir: str | Path, sets: dict[str, Path] | None = None, language: str = "zh",
             limit: int | None = None) -> dict:
    """Per set: CER/WER of the LLM and the CTC head, the misrecognised utterances, and for a set
    with non-speech clips how many gave empty text. `limit`: the first N of each manifest only."""
    from funasr_qwen4b.audio import load_audio
    from funasr_qwen4b.config import QueryConfig
    from funasr_qwen4b.reference.pipeline import Pipeline

    d = Path(model_dir)
    pipe = Pipeline.from_originals(d / "sensevoice", QueryConfig(language=language), adaptor=d / "adaptor.pt",
                                   llm=d / "qwen3")
    result = {}
    for name, set_dir in (sets or SETS).items():
        llm_c, llm_w, ctc_c, ctc_w, errors = Counts(), Counts(), Counts(), Counts(), []
        entries = load_manifest(set_dir / "test.jsonl")[:limit]
        for e in entries:
            out = pipe.run(load_audio(e.audio))
            c = char_counts(e.text, out.text)
            llm_c, ctc_c = llm_c + c, ctc_c + char_counts(e.text, out.ctc.text)
            llm_w, ctc_w = llm_w + word_counts(e.text, out.text), ctc_w + word_counts(e.text, out.ctc.text)
            if c.errors:
                errors.append({"id": e.id, "ref": e.text, "llm": out.text, "ctc": out.ctc.text})
        result[name] = {"utterances": len(entries), "llm_cer": llm_c.rate, "llm_wer": llm_w.rate,
                        "ctc_cer": ctc_c.rate, "ctc_wer": ctc_w.rate, "errors": errors}
        if (set_dir / "nospeech.jsonl").is_file():
            clips, said = nospeech_clips(set_dir / "nospeech.jsonl")[:limit], []
            for uid, audio in clips:
                out = pipe.run(load_audio(audio))
                if cer_text(out.text) or cer_text(out.ctc.text):
                    said.append({"id": uid, "llm": out.text, "ctc": out.ctc.text})
            result[name]["nospeech"] = {"clips": len(clips), "empty": len(clips) - len(said), "said": said}
    return result


def summary_line(result: dict) -> str:
    parts = []
    for name, r in result.items():
        line = (f"{name}: LLM CER {100 * r['llm_cer']:.2f}% WER {100 * r['llm_wer']:.2f}%, "
                f"CTC CER {100 * r['ctc_cer']:.2f}%")
        if "nospeech" in r:
            line += f", non-speech empty {r['nospeech']['empty']}/{r['nospeech']['clips']}"
        parts.append(line)
    return "; ".join(parts)


# Issue 26's bars for replacing models/demo: (set, score, at most).
BARS = (("zh_open", "llm_cer", 0.10), ("en_open", "llm_wer", 0.12), ("zh_heldout", "llm_cer", 0.01),
        ("en_heldout", "llm_wer", 0.01))


def misses(result: dict) -> list[str]:
    """The bars a result misses (every set must be in it): the scores above BARS, and any
    non-speech clip that said something."""
    out = [f"{name} {score.split('_')[1].upper()} {100 * result[name][score]:.2f}% > {100 * top:g}%"
           for name, score, top in BARS if result[name][score] > top]
    for name, r in result.items():
        if "nospeech" in r and r["nospeech"]["empty"] < r["nospeech"]["clips"]:
            out.append(f"{name} non-speech {r['nospeech']['empty']}/{r['nospeech']['clips']} empty")
    return out


def record(model_dir: Path, result: dict) -> None:
    """Add the scores to the model's training_log.json under "heldout"."""
    path = model_dir / "training_log.json"
    log = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**log, "heldout": result}, indent=1, ensure_ascii=False), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--language", default="zh", help="the encoder's language query (default zh)")
    ap.add_argument("--json", help="write the full result (with every misrecognised utterance) here")
    ap.add_argument("--log", action="store_true", help="also record it in MODEL_DIR/training_log.json")
    add_modules_only_option(ap)
    args = ap.parse_args(argv)
    apply_modules_only_option(args)
    result = evaluate(args.model_dir, language=args.language)
    print(summary_line(result))
    missed = misses(result) if set(result) == set(SETS) else ["(the bars need every set)"]
    print("bars (models/demo is replaced only when all are met): " + ("all met" if not missed else
                                                                     "missed: " + "; ".join(missed)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    if args.log:
        record(Path(args.model_dir), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
