#!/usr/bin/env bash
# CI accuracy run on the test checkpoints (no download): `selfcheck` builds a tiny
# SenseVoiceSmall (FunASR's class), adaptor and Qwen3 (transformers) in the original formats,
# converts them into one bundle and runs `parity` on a committed clip; then
# `cer --backend both` scores the LLM transcripts on the committed synthetic test sets. Reports go to reports/
# (gitignored) and the Markdown is printed here. Fails when parity fails or when the CER of
# the MLX transcript against the reference transcript is not 0.00 (float32 bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
export MLX_ENABLE_TF32=0  # the strict float32 tier

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p reports
status=0
"$BIN/funasr-qwen4b" selfcheck --keep "$work" --audio datasets/zh_synth/zh_open_hours.wav \
    --report reports/parity.json > /dev/null || status=1
echo "===== reports/parity.md"
cat reports/parity.md

for set in zh_synth en_synth; do
    report=reports/cer_$set.json
    rm -f "reports/cer_$set.partial.jsonl"  # a fresh bundle every run: nothing to resume
    "$BIN/funasr-qwen4b" cer -m "$work/bundle" --manifest "datasets/$set/test.jsonl" --backend both \
        --report "$report" > /dev/null || status=1
    echo "===== reports/cer_$set.md"
    cat "reports/cer_$set.md"
    "$PY" - "$report" <<'PYEOF' || status=1
import json, sys
rep = json.load(open(sys.argv[1], encoding="utf-8"))
mvr, dtype = rep["mlx_vs_reference"], rep["meta"]["dtype"]
print(f"{sys.argv[1]}: MLX vs reference CER {100 * mvr['cer']:.2f}% ({dtype}); "
      f"{mvr['identical']}/{mvr['utterances']} transcripts identical")
if dtype == "float32" and mvr["cer"] != 0.0:
    sys.exit(f"FAIL: MLX vs reference CER is {100 * mvr['cer']:.2f}%, not 0.00, at float32")
PYEOF
done
exit $status
