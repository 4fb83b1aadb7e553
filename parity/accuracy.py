"""One accuracy table from several `cer` reports, and the demonstration
model's bars checked on it.

Run:  python -m funasr_qwen4b.parity.accuracy reports/cer_*.json [--nospeech reports/nospeech_*.jsonl] [--markdown FILE]

Each report scores one test set with one bundle; the bundle's precisions
(recorded in the report) name the variant: "float32", or what differs from it
("llm bfloat16", "llm 8bit", "adaptor 8bit + llm 8bit", ...). Exit status 1 when a bar is missed:
- reference: CER ≤ 10 % on a Mandarin set, WER ≤ 15 % on an English set (reported, not checked,
  on the open sets: OPEN_SETS);
- MLX at float32: the transcript identical to the reference's on every utterance;
- MLX with an 8-bit LLM: CER within 0.5 points of MLX at float32 on the same set;
- non-speech clips (`--nospeech`: `transcribe --json` output on them, one file per set and
  backend): every transcript empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from funasr_qwen4b.text import cer_text

REFERENCE_CER_MAX = 0.10  # Mandarin sets
REFERENCE_WER_MAX = 0.15  # English sets
Q8_CER_POINTS_MAX = 0.5  # CER points of the 8-bit LLM over float32 MLX
# Sentences that are no template instance: their CER/WER bars are the same, and the
# demonstration model misses them (its scores are in docs/demo-model.md), so they are
# reported here, not checked; every other bar holds on them.
OPEN_SETS = ("zh_open", "en_open")


def variant(precisions: dict[str, str]) -> str:
    """float32 when every component is; else what differs, e.g. "llm 8bit", "adaptor 8bit + llm 4bit"."""
    differ = [f"{c} {p}" for c, p in precisions.items() if p != "float32"]
    return " + ".join(differ) or "float32"


def rows(reports: list[dict]) -> list[dict]:
    out, seen = [], set()
    for r in reports:
        meta, summary = r["meta"], r["summary"]
        english = any((u.get("lang") or "").startswith("en") for u in r["utterances"])
        vs_ref = r.get("mlx_vs_reference") or {}  # only when both backends ran
        for path_name, s in summary.items():  # "mlx" or "reference"
            row_variant = "float32" if path_name == "reference" else variant(meta["precisions"])  # originals, fp32
            key = (Path(meta["manifest"]).parent.name, path_name, row_variant)
            if key in seen:  # the reference, scored again beside another bundle
                continue
            seen.add(key)
            out.append({"set": key[0], "english": english, "backend": path_name,
                        "variant": row_variant, "cer": s["cer"], "wer": s.get("wer"),
                        "utterances": s["utterances"], "exact": s["exact"],
                        "identical": vs_ref.get("identical") if path_name == "mlx" else None,
                        "vs_reference": vs_ref.get("cer") if path_name == "mlx" else None})
    return out


def check(table: list[dict]) -> list[str]:
    """The bars this table misses, one line each."""
    failures = []
    for row in table:
        name = f"{row['set']} {row['backend']} {row['variant']}"
        if row["backend"] == "reference" and row["set"] not in OPEN_SETS:
            if row["english"] and row["wer"] > REFERENCE_WER_MAX:
                failures.append(f"{name}: WER {100 * row['wer']:.2f}% > {100 * REFERENCE_WER_MAX:.0f}%")
            if not row["english"] and row["cer"] > REFERENCE_CER_MAX:
                failures.append(f"{name}: CER {100 * row['cer']:.2f}% > {100 * REFERENCE_CER_MAX:.0f}%")
        elif row["variant"] == "float32" and row["identical"] is not None and row["identical"] != row["utterances"]:
            failures.append(f"{name}: {row['utterances'] - row['identical']} transcripts differ from the reference")
    fp32 = {r["set"]: r["cer"] for r in table if r["backend"] == "mlx" and r["variant"] == "float32"}
    for row in table:
        if row["backend"] == "mlx" and row["variant"] == "llm 8bit":
            if row["set"] not in fp32:
                failures.append(f"{row['set']}: an 8-bit report but no float32 MLX report to compare with")
            elif 100 * (row["cer"] - fp32[row["set"]]) > Q8_CER_POINTS_MAX:
                failures.append(f"{row['set']} mlx 8bit: CER {100 * row['cer']:.2f}% is more than "
                                f"{Q8_CER_POINTS_MAX} points over float32's {100 * fp32[row['set']]:.2f}%")
    return failures


def nospeech_rows(paths: list[str]) -> list[dict]:
    """Per `transcribe --json` output (a JSON object a line) on non-speech clips: the clips that said something."""
    out = []
    for p in paths:
        results = [json.loads(line) for line in Path(p).read_text(encoding="utf-8").splitlines() if line.strip()]
        out.append({"name": Path(p).stem, "clips": len(results),
                    "said": {r["audio"]: r["text"] for r in results if cer_text(r["text"])}})
    return out


def check_nospeech(rows_: list[dict]) -> list[str]:
    return [f"{r['name']}: {len(r['said'])} of {r['clips']} non-speech clips gave text: "
            + "; ".join(f"{Path(a).name} {t!r}" for a, t in r["said"].items()) for r in rows_ if r["said"]]


def nospeech_markdown(rows_: list[dict]) -> str:
    lines = ["| non-speech clips | empty text |", "|---|---|"]
    lines += [f"| {r['name']} | {r['clips'] - len(r['said'])}/{r['clips']} |" for r in rows_]
    return "\n".join(lines) + "\n"


def markdown(table: list[dict]) -> str:
    pct = lambda v: "" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines = ["| set | backend | precision | CER | WER | exact | MLX vs reference (CER, identical) |",
             "|---|---|---|---|---|---|---|"]
    order = ["float32", "llm bfloat16", "llm float16", "llm 8bit", "llm 4bit"]
    for r in sorted(table, key=lambda r: (r["set"], r["backend"] != "reference",
                                          order.index(r["variant"]) if r["variant"] in order else len(order),
                                          r["variant"])):
        vs = "" if r["identical"] is None else f"{pct(r['vs_reference'])}, {r['identical']}/{r['utterances']}"
        lines.append(f"| {r['set']} | {r['backend']} | {r['variant']} | {pct(r['cer'])} | "
                     f"{pct(r['wer']) if r['english'] else ''} | {r['exact']}/{r['utterances']} | {vs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("reports", nargs="+", help="cer reports (JSON)")
    ap.add_argument("--nospeech", nargs="*", default=[], metavar="JSONL",
                    help="`transcribe --json` output on non-speech clips: each transcript must be empty")
    ap.add_argument("--markdown", help="also write the tables here")
    args = ap.parse_args(argv)
    try:
        table = rows([json.loads(Path(p).read_text(encoding="utf-8")) for p in args.reports])
        quiet = nospeech_rows(args.nospeech)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot read the reports ({e}); give JSON files written by `funasr-qwen4b cer` "
              "(and, after --nospeech, by `funasr-qwen4b transcribe --json`)", file=sys.stderr)
        return 2
    text = markdown(table) + ("\n" + nospeech_markdown(quiet) if quiet else "")
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    failures = check(table) + check_nospeech(quiet)
    for f in failures:
        print(f"FAIL: {f}")
    print("bars: " + ("all met" if not failures else f"{len(failures)} missed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
