#!/usr/bin/env bash
# The device calls of one training run (training/RUN.md), run from the repository root of the
# device machine's copy of the working tree; what is written to $OUT comes back.
#
#   bash training/gpu_calls.sh 1   # stage (once a machine), features, tokenizers, train until the pause
#   bash training/gpu_calls.sh 2   # resume, refit the rest of the schedule to this call's rate and the
#                                  # time left, then: with LATER_SECONDS, train until the pause; without,
#                                  # finish it, pack the model into $OUT and score it
#   bash training/gpu_calls.sh 3   # (a run of three calls) as 2
#
# A call after the first needs the machine call 1 ran on: the checkpoint and the feature cache
# are in its /tmp. Without them it stops at once and says so (exit 3); if an earlier call
# finished the whole schedule, the last call only packs.
#
# Environment (the defaults are those of a run of two calls):
#   RUN_DIR        the model directory (/tmp/demo); the trainer's work directory is RUN_DIR.work
#   CALL_SECONDS   when this call's trainer must have ended, in seconds from this script's start (570)
#   LATER_SECONDS  the CALL_SECONDS of each call still to come, in order ("560 560": two more); call
#                  1's default: one more like itself; a later call's: none, so that it is the last
#   FIT_MINUTES    call 1: the training of all calls, in minutes from the trainer's start, that the
#                  steps are fitted to (default: what is left of this call and LATER_SECONDS when it
#                  starts, less the last call's 60 s of packing and scoring, each later call's 75 s
#                  of loading, 45 s for loading clips at the epochs' starts and each call's stop);
#                  empty: the recipe's epochs
#   STAGE          training/stage_gpu.sh's directory (build/gpu-stage); empty: use PYTHON as it is
#   PYTHON         python3
#   TRAIN_ARGS     more arguments for training.train (a CPU rehearsal: call 1 "--quick --workers 2",
#                  later calls "--workers 2")
#   FIRST_ARGS     call 1's more arguments, which a resumed call takes from the checkpoint (a run
#                  from a trained model: "--init build/init --lr 1e-3 --seed 1")
set -euo pipefail
call=${1:?usage: gpu_calls.sh CALL (1, 2, ...)}
: "${OUT:?set OUT to the directory whose files come back}"
run=${RUN_DIR:-/tmp/demo}
work=$run.work
py=${PYTHON:-python3}
stage=${STAGE-build/gpu-stage}
budget=${CALL_SECONDS:-570}
[ "$call" = 1 ] && later=${LATER_SECONDS-$budget} || later=${LATER_SECONDS-}
reserve=60  # the last call: packing and the held-out scores (their times: training/RUN.md)
load=75     # a later call's start: loading the features made so far
# The trainer stops after the last step that ends before its limit, then writes: a call that
# pauses waits for the feature chunks being made and saves the checkpoint; the last call writes
# the model and the checkpoint (their times: training/RUN.md).
stop1=30 stop2=15
# the seconds of the later calls that train
after=0
for s in $later; do after=$((after + s - load - stop1)); done
[ -n "${later// }" ] && after=$((after + stop1 - stop2 - reserve - 45))
args=(--out "$run" --no-eval)
export PYTHONUNBUFFERED=1
# the feature buffer and the steps' tensors share the device without fragmenting it
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
minutes_left() { awk -v s="$(($1 - SECONDS))" 'BEGIN { printf "%.2f", s / 60 }'; }
use_stage() {  # the staged wheels and espeak-ng (installed into /tmp/fq-stage once a machine)
    if [ -n "$stage" ]; then
        [ -x /tmp/fq-stage/bin/espeak-ng ] || bash "$stage/setup.sh"
        export PATH=/tmp/fq-stage/bin:$PATH PYTHONPATH=/tmp/fq-stage/site:$PWD
        # the package as pyproject lays it out (funasr_qwen4b.reference is ./reference), uninstalled;
        # PYTHONSAFEPATH: `python -m` would put ./funasr_qwen4b (without those) before it
        repo=$PWD PYTHONSAFEPATH=1
        export PYTHONSAFEPATH
        . benchmarks/gpu_shim.sh
        args+=(--funasr-modules-only)
    fi
    # shellcheck disable=SC2206  # TRAIN_ARGS is a list of words
    args+=(${TRAIN_ARGS:-})
}

log=$OUT/train$call.log
case $call in
1)
    use_stage
    rm -rf "$run"
    fit=${FIT_MINUTES-$(minutes_left $((budget - stop1 + after)))}
    [ -n "$fit" ] && args+=(--fit-minutes "$fit")
    # shellcheck disable=SC2206  # FIRST_ARGS is a list of words
    args+=(${FIRST_ARGS:-})
    "$py" -m training.train "${args[@]}" --pause-after-minutes "$(minutes_left $((budget - stop1)))" 2>&1 | tee "$log"
    { echo "----- after call 1 ($SECONDS s)"; ls -la "$work"; du -sh "$work/data"; df -h /tmp; } >> "$log" 2>&1
    ;;
[2-9])
    if [ -f "$work/checkpoint.pt" ] && [ -n "${later// }" ]; then
        use_stage
        rm -rf "$run"
        # the rest of the cosine refitted to this call's rate and the later calls' time
        "$py" -m training.train "${args[@]}" --resume "$work/checkpoint.pt" \
            --fit-minutes "$(minutes_left $((budget - stop1 + after)))" \
            --pause-after-minutes "$(minutes_left $((budget - stop1)))" 2>&1 | tee "$log"
        { echo "----- after call $call ($SECONDS s)"; ls -la "$work"; } >> "$log" 2>&1
        [ -f "$work/checkpoint.pt" ] || echo "----- the schedule is finished: the last call packs $run" >> "$log"
        exit 0
    elif [ -f "$work/checkpoint.pt" ]; then
        use_stage
        rm -rf "$run"
        # the rest of the cosine refitted to this call's rate (10 s short of the limit, which stays
        # as the last word)
        "$py" -m training.train "${args[@]}" --resume "$work/checkpoint.pt" \
            --fit-minutes "$(minutes_left $((budget - reserve - stop2 - 10)))" \
            --max-minutes "$(minutes_left $((budget - reserve - stop2)))" 2>&1 | tee "$log"
    elif [ -d "$run" ]; then
        use_stage
        echo "an earlier call finished the schedule: ${later:+nothing to do until the last call, which packs }$run" | tee "$log"
        [ -n "${later// }" ] && exit 0
    else
        echo "call $call: neither a checkpoint ($work/checkpoint.pt) nor a model ($run) is here: this is not the" \
             "machine call 1 ran on (it was given back), or call 1 failed. Run call 1 again." | tee "$log" >&2
        exit 3
    fi
    tar czf - -C "$(dirname "$run")" "$(basename "$run")" | split -b 15m - "$OUT/demo.tgz."
    cp "$run/training_log.json" "$OUT/"
    echo "----- packed ($SECONDS s): $(ls "$OUT" | tr "\n" " ")" >> "$log"
    # The reference pipeline's scores on the held-out sets, in what is left of the call (the
    # model is already packed: a failure here loses only these, which training.evaluate gives
    # again on any CPU).
    [ -n "$stage" ] && eval_args=(--funasr-modules-only) || eval_args=()
    timeout "$((budget - SECONDS > 5 ? budget - SECONDS : 5))" "$py" -m training.evaluate "$run" \
        --json "$OUT/evaluation.json" "${eval_args[@]}" >> "$log" 2>&1 \
        || echo "----- evaluation failed or ran out of time (exit $?): run training.evaluate here" >> "$log"
    echo "----- done ($SECONDS s)" >> "$log"
    ;;
*)
    echo "usage: gpu_calls.sh CALL (1, 2, ...)" >&2
    exit 2
    ;;
esac
