#!/usr/bin/env bash
# Fun-ASR-Nano's GPU figures in one call (issue 22): `bench --synthetic nano` at bf16 and with a
# 4-bit LLM on a CLIPS-second clip (default 10; `--peer` beside funasr-mlx's Fun-ASR-Nano where
# PEER=1, funasr-mlx installed, and beside mlx-audio's where installed or its wheel
# mlx_audio-*.whl was carried in WHEELS, default .mlxcuda-b/ beside the staged MLX wheels:
# installed here without its dependencies, as what bench imports of it needs only mlx, numpy,
# torch, transformers, huggingface_hub and tqdm), each into OUT/nano_*.json with its log.
# Needs MLX's CUDA build installed and sourced first, and FunASR's model modules
# (training/stage_gpu.sh's wheels in /tmp/fq-stage/site: FunASR's FunASRNano writes the random
# checkpoint in its original layout; its package __init__ is skipped as in training).
#   benchmarks/gpu_nano.sh [OUT]     QUICK=1: --clips 2 --reps 1 (a CPU check of the steps, not a measurement)
set -uo pipefail
out=${1:-${OUT:?give an output folder or set OUT}}
repo="$(cd "$(dirname "$0")/.." && pwd)"
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
. "$repo/benchmarks/gpu_shim.sh"
extra=()
[ -n "${PEER:-}" ] && extra+=(--peer)
if [ -n "${PEER:-}" ] && ! "$py" -c "import mlx_audio" 2>/dev/null; then
  wheel=$(ls "${WHEELS:-$repo/.mlxcuda-b}"/mlx_audio-*.whl 2>/dev/null | tail -n 1)
  if [ -n "$wheel" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/mlx-audio-site "$wheel" &&
      export PYTHONPATH=/tmp/mlx-audio-site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
if [ -n "${QUICK:-}" ]; then extra+=(--clips 2 --reps 1 --warmup 0 --tokens 4); else extra+=(--clips "${CLIPS:-10}"); fi
status=0
for variant in bf16 q4; do
  args=(bench --synthetic nano --dtype bfloat16 --json "$out/nano_$variant.json" "${extra[@]}")
  [ $variant = q4 ] && args+=(-q 4)
  echo "== $variant ($(date -u +%H:%M:%S)): ${args[*]}" | tee -a "$out/log_nano.txt"
  "$py" -P -c "
import sys
from funasr_qwen4b.reference.funasr_modules import import_modules_only
import_modules_only()
from funasr_qwen4b.app.cli import main
sys.exit(main(sys.argv[1:]))" "${args[@]}" 2>&1 | tee -a "$out/log_nano.txt" || status=1
done
exit $status
