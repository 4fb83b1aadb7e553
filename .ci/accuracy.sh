#!/usr/bin/env bash
# CI accuracy run, no download.
# 1. Random weights (`selfcheck`): a tiny SenseVoiceSmall (FunASR's class), adaptor and Qwen3 with
#    Qwen's real vocabulary, converted into one bundle; `parity` on a committed clip, then
#    `cer --backend both` on the committed synthetic sets: MLX must equal the reference
#    transcript for transcript (random weights decode to the token cap: long, strict sequences).
# 2. The trained demonstration model (models/demo): float32 parity, then CER of the reference and
#    of MLX at float32, with a bfloat16 LLM, an 8-bit and a 4-bit LLM, and adaptor + LLM at 8 bits,
#    on the held-out sets (template sentences: zh_heldout, en_heldout; open sentences whose word
#    pairs training never saw: zh_open, en_open), and both paths at float32 on the open
#    sets' non-speech clips (silence, noise, hum, beeps, clicks), which must give empty text;
#    `python -m funasr_qwen4b.parity.accuracy` prints the tables and checks the bars.
# 3. The tests marked `accuracy` (pyproject.toml), which the default `pytest -q` leaves out: whole
#    held-out sets through the demonstration model, parity at real SenseVoiceSmall dimensions, and
#    quantized LLM decoding on the CPU.
# Reports go to reports/ (gitignored) and the Markdown is printed here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
export MLX_ENABLE_TF32=0  # the strict float32 tier

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p reports
rm -f reports/*.partial.jsonl  # fresh bundles every run: nothing to resume
status=0
quiet() {  # run a command; show its stderr only when it fails
    "$@" > /dev/null 2> "$work/stderr" || { cat "$work/stderr"; return 1; }
}

echo "===== 1. random weights"
quiet "$BIN/funasr-qwen4b" selfcheck --keep "$work" --audio datasets/zh_synth/zh_open_hours.wav \
    --report reports/parity.json || status=1
cat reports/parity.md
for set in zh_synth en_synth; do
    quiet "$BIN/funasr-qwen4b" cer -m "$work/bundle" --manifest "datasets/$set/test.jsonl" --backend both --no-progress \
        --report "reports/cer_random_$set.json" || status=1
done
"$PY" - reports/cer_random_*.json <<'PYEOF' || status=1
import json, sys
for path in sys.argv[1:]:
    mvr = json.load(open(path, encoding="utf-8"))["mlx_vs_reference"]
    print(f"{path}: {mvr['identical']}/{mvr['utterances']} MLX transcripts identical to the reference")
    if mvr["cer"] != 0.0:
        sys.exit(f"FAIL: MLX vs reference CER is {100 * mvr['cer']:.2f}%, not 0.00, at float32")
PYEOF

echo "===== 2. the demonstration model (models/demo)"
demo=(--sensevoice models/demo/sensevoice --adaptor models/demo/adaptor.pt --llm models/demo/qwen3)
quiet "$BIN/funasr-qwen4b" convert bundle "${demo[@]}" -o "$work/demo_fp32" --dtype float32
quiet "$BIN/funasr-qwen4b" convert bundle "${demo[@]}" -o "$work/demo_bf16"  # the default: bf16 LLM
quiet "$BIN/funasr-qwen4b" convert bundle "${demo[@]}" -o "$work/demo_q8" --dtype float32 -q 8
quiet "$BIN/funasr-qwen4b" convert bundle "${demo[@]}" -o "$work/demo_q4" --dtype float32 -q 4
quiet "$BIN/funasr-qwen4b" convert bundle "${demo[@]}" -o "$work/demo_aq8" --dtype float32 -q 8 --adaptor-q-bits 8
quiet "$BIN/funasr-qwen4b" parity -m "$work/demo_fp32" --audio datasets/zh_heldout/zh_heldout_000.flac \
    --report reports/parity_demo.json || status=1
echo "----- reports/parity_demo.md"
cat reports/parity_demo.md
for set in zh_heldout en_heldout zh_open en_open; do
    quiet "$BIN/funasr-qwen4b" cer -m "$work/demo_fp32" --manifest "datasets/$set/test.jsonl" --backend both --no-progress \
        --report "reports/cer_demo_${set}_fp32.json" || status=1
    for v in bf16 q8 q4 aq8; do
        quiet "$BIN/funasr-qwen4b" cer -m "$work/demo_$v" --manifest "datasets/$set/test.jsonl" \
            --report "reports/cer_demo_${set}_$v.json" --no-progress || status=1
    done
done
for set in zh_open en_open; do
    for backend in reference mlx; do  # one JSON line per clip: reports/nospeech_demo_SET_BACKEND.jsonl
        "$BIN/funasr-qwen4b" transcribe datasets/$set/${set}_nospeech_*.flac -m "$work/demo_fp32" --backend $backend \
            --json > "reports/nospeech_demo_${set}_$backend.jsonl" 2> "$work/stderr" || { cat "$work/stderr"; status=1; }
    done
done
echo "----- reports/accuracy_demo.md"
"$PY" -m funasr_qwen4b.parity.accuracy reports/cer_demo_*.json --nospeech reports/nospeech_demo_*.jsonl \
    --markdown reports/accuracy_demo.md || status=1

echo "===== 3. the suite's accuracy tests (pytest -m accuracy: too slow for the default run)"
"$PY" -m pytest -q -p no:cacheprovider -m accuracy || status=1
exit $status
