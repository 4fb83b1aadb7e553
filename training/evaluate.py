"""Score a trained model directory (sensevoice/, adaptor.pt, qwen3/) with the
reference pipeline on the held-out sets: the LLM transcript and the CTC head.

Run:  python -m training.evaluate models/demo [--json FILE]

This reads the original files directly (no bundle), so it also runs on a
training machine without MLX; `funasr-qwen4b cer` is the user-facing scorer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from funasr_qwen4b.manifest import load_manifest
from funasr_qwen4b.text import Counts, char_counts, word_counts

from .data import HELDOUT_DIRS


def evaluate(model_dir: str | Path, manifests: dict[str, Path] | None = None, language: str = "zh") -> dict:
    from funasr_qwen4b.audio import load_audio
    from funasr_qwen4b.config import QueryConfig
    from reference.pipeline import Pipeline

    d = Path(model_dir)
    pipe = Pipeline.from_originals(d / "sensevoice", QueryConfig(language=language), adaptor=d / "adaptor.pt",
                                   llm=d / "qwen3")
    result = {}
    for lang, manifest in (manifests or {k: v / "test.jsonl" for k, v in HELDOUT_DIRS.items()}).items():
        llm_c, llm_w, ctc_c, ctc_w, errors = Counts(), Counts(), Counts(), Counts(), []
        entries = load_manifest(manifest)
        for e in entries:
            out = pipe.run(load_audio(e.audio))
            c = char_counts(e.text, out.text)
            llm_c, ctc_c = llm_c + c, ctc_c + char_counts(e.text, out.ctc.text)
            llm_w, ctc_w = llm_w + word_counts(e.text, out.text), ctc_w + word_counts(e.text, out.ctc.text)
            if c.errors:
                errors.append({"id": e.id, "ref": e.text, "llm": out.text, "ctc": out.ctc.text})
        result[lang] = {"utterances": len(entries), "llm_cer": llm_c.rate, "llm_wer": llm_w.rate,
                        "ctc_cer": ctc_c.rate, "ctc_wer": ctc_w.rate, "errors": errors}
    return result


def summary_line(result: dict) -> str:
    return "; ".join(f"{lang}: LLM CER {100 * r['llm_cer']:.2f}% WER {100 * r['llm_wer']:.2f}%, "
                     f"CTC CER {100 * r['ctc_cer']:.2f}%" for lang, r in result.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--language", default="zh", help="the encoder's language query (default zh)")
    ap.add_argument("--json", help="write the full result (with every misrecognised utterance) here")
    args = ap.parse_args(argv)
    result = evaluate(args.model_dir, language=args.language)
    print(summary_line(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
