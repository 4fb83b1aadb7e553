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
# Steps 1 and 2 run their commands side by side, one a core (ACCURACY_JOBS); reports go to reports/
# (gitignored) and the Markdown is printed here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
export MLX_ENABLE_TF32=0  # the strict float32 tier

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p reports
rm -f reports/*.partial.jsonl  # fresh bundles every run: nothing to resume
# MLX on a CPU computes on one core: one command a core.
jobs=${ACCURACY_JOBS:-$(nproc)}
n=0
later() {  # later OUT CMD...: CMD in the background, stdout to OUT, at most $jobs at once; its stderr shown if it fails
    local out=$1
    shift
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    n=$((n + 1))
    local err="$work/stderr.$n"
    { "$@" > "$out" 2> "$err" || { cat "$err"; echo "FAIL: $*"; touch "$work/failed"; }; } &
}
settle() {  # wait for every command started by `later`
    wait
    if [ -e "$work/failed" ]; then status=1; fi
}
status=0
fp="$BIN/funasr-qwen4b"
demo=(--sensevoice models/demo/sensevoice --adaptor models/demo/adaptor.pt --llm models/demo/qwen3)

echo "===== 1. random weights"
later /dev/null "$fp" selfcheck --keep "$work" --audio datasets/zh_synth/zh_open_hours.wav --report reports/parity.json
# 2. the demonstration model's bundles, converted meanwhile
later /dev/null "$fp" convert bundle "${demo[@]}" -o "$work/demo_fp32" --dtype float32
later /dev/null "$fp" convert bundle "${demo[@]}" -o "$work/demo_bf16"  # the default: bf16 LLM
later /dev/null "$fp" convert bundle "${demo[@]}" -o "$work/demo_q8" --dtype float32 -q 8
later /dev/null "$fp" convert bundle "${demo[@]}" -o "$work/demo_q4" --dtype float32 -q 4
later /dev/null "$fp" convert bundle "${demo[@]}" -o "$work/demo_aq8" --dtype float32 -q 8 --adaptor-q-bits 8
settle
for set in zh_synth en_synth; do
    later /dev/null "$fp" cer -m "$work/bundle" --manifest "datasets/$set/test.jsonl" --backend both --no-progress \
        --report "reports/cer_random_$set.json"
done
later /dev/null "$fp" parity -m "$work/demo_fp32" --audio datasets/zh_heldout/zh_heldout_000.flac \
    --report reports/parity_demo.json
for set in zh_heldout en_heldout zh_open en_open; do
    later /dev/null "$fp" cer -m "$work/demo_fp32" --manifest "datasets/$set/test.jsonl" --backend both --no-progress \
        --report "reports/cer_demo_${set}_fp32.json"
    for v in bf16 q8 q4 aq8; do
        later /dev/null "$fp" cer -m "$work/demo_$v" --manifest "datasets/$set/test.jsonl" \
            --report "reports/cer_demo_${set}_$v.json" --no-progress
    done
done
for set in zh_open en_open; do
    for backend in reference mlx; do  # one JSON line per clip: reports/nospeech_demo_SET_BACKEND.jsonl
        later "reports/nospeech_demo_${set}_$backend.jsonl" "$fp" transcribe datasets/$set/${set}_nospeech_*.flac \
            -m "$work/demo_fp32" --backend $backend --json
    done
done
settle

cat reports/parity.md
"$PY" - reports/cer_random_*.json <<'PYEOF' || status=1
import json, sys
for path in sys.argv[1:]:
    mvr = json.load(open(path, encoding="utf-8"))["mlx_vs_reference"]
    print(f"{path}: {mvr['identical']}/{mvr['utterances']} MLX transcripts identical to the reference")
    if mvr["cer"] != 0.0:
        sys.exit(f"FAIL: MLX vs reference CER is {100 * mvr['cer']:.2f}%, not 0.00, at float32")
PYEOF

echo "===== 2. the demonstration model (models/demo)"
echo "----- reports/parity_demo.md"
cat reports/parity_demo.md
echo "----- reports/accuracy_demo.md"
"$PY" -m funasr_qwen4b.parity.accuracy reports/cer_demo_*.json --nospeech reports/nospeech_demo_*.jsonl \
    --markdown reports/accuracy_demo.md || status=1

echo "===== 3. the suite's accuracy tests (pytest -m accuracy: too slow for the default run)"
"$PY" -m pytest -q -p no:cacheprovider -m accuracy || status=1
exit $status
