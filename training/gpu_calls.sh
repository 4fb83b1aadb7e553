#!/usr/bin/env bash
# The two device calls of one training run (training/RUN.md), run from the repository root of
# the device machine's copy of the working tree; what is written to $OUT comes back.
#
#   bash training/gpu_calls.sh 1   # stage (once a machine), features, tokenizers, train until the pause
#   bash training/gpu_calls.sh 2   # resume, refit the rest of the schedule to this call's rate and time,
#                                  # finish it, pack the model into $OUT, score it and the last
#                                  # step's weights
#
# Call 2 needs the machine call 1 ran on: the checkpoint and the feature cache are in its /tmp.
# Without them it stops at once and says so (exit 3); if call 1 finished the whole schedule,
# call 2 only packs.
#
# Environment (the defaults are the device run's):
#   RUN_DIR       the model directory (/tmp/demo); the trainer's work directory is RUN_DIR.work
#   CALL_SECONDS  when this call's trainer must have ended, in seconds from this script's start (570)
#   FIT_MINUTES   call 1: the training of both calls, in minutes from the trainer's start, that the
#                 steps are fitted to (default: what is left of two calls of CALL_SECONDS when it
#                 starts, less call 2's 100 s of packing and scoring, its 75 s of loading, 45 s for
#                 loading clips at the epochs' starts and the two calls' stops); empty: the recipe's
#                 epochs
#   STAGE         training/stage_gpu.sh's directory (build/gpu-stage); empty: use PYTHON as it is
#   PYTHON        python3
#   TRAIN_ARGS    more arguments for training.train (a CPU rehearsal: call 1 "--quick --workers 2",
#                 call 2 "--workers 2")
set -euo pipefail
call=${1:?usage: gpu_calls.sh 1|2}
: "${OUT:?set OUT to the directory whose files come back}"
run=${RUN_DIR:-/tmp/demo}
work=$run.work
py=${PYTHON:-python3}
stage=${STAGE-build/gpu-stage}
budget=${CALL_SECONDS:-570}
reserve=100  # call 2: packing and the held-out scores of the model and of the last step (training/RUN.md)
# The trainer stops after the last step that ends before its limit, then writes: call 1 waits for
# the feature chunks being made and the checkpoint; call 2 writes the model and the checkpoint
# (their times: training/RUN.md).
stop1=30 stop2=15
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

case $call in
1)
    use_stage
    rm -rf "$run"
    fit=${FIT_MINUTES-$(minutes_left $((2 * budget - reserve - 120 - stop1 - stop2)))}
    [ -n "$fit" ] && args+=(--fit-minutes "$fit")
    "$py" -m training.train "${args[@]}" --pause-after-minutes "$(minutes_left $((budget - stop1)))" 2>&1 \
        | tee "$OUT/train1.log"
    { echo "----- after call 1 ($SECONDS s)"; ls -la "$work"; du -sh "$work/data"; df -h /tmp; } >> "$OUT/train1.log" 2>&1
    ;;
2)
    if [ -f "$work/checkpoint.pt" ]; then
        use_stage
        rm -rf "$run"
        # the rest of the cosine refitted to this call's rate (10 s short of the limit, which stays
        # as the last word)
        "$py" -m training.train "${args[@]}" --resume "$work/checkpoint.pt" \
            --fit-minutes "$(minutes_left $((budget - reserve - stop2 - 10)))" \
            --max-minutes "$(minutes_left $((budget - reserve - stop2)))" 2>&1 | tee "$OUT/train2.log"
    elif [ -d "$run" ]; then
        use_stage
        echo "call 1 finished the schedule: packing $run" | tee "$OUT/train2.log"
    else
        echo "call 2: neither a checkpoint ($work/checkpoint.pt) nor a model ($run) is here: this is not the machine" \
             "call 1 ran on (it was given back), or call 1 failed. Run call 1 again." | tee "$OUT/train2.log" >&2
        exit 3
    fi
    tar czf - -C "$(dirname "$run")" "$(basename "$run")" | split -b 15m - "$OUT/demo.tgz."
    cp "$run/training_log.json" "$OUT/"
    echo "----- packed ($SECONDS s): $(ls "$OUT" | tr "\n" " ")" >> "$OUT/train2.log"
    # The reference pipeline's scores on the held-out sets, in what is left of the call (the
    # model is already packed: a failure here loses only these, which training.evaluate gives
    # again on any CPU).
    [ -n "$stage" ] && eval_args=(--funasr-modules-only) || eval_args=()
    timeout "$((budget - SECONDS > 5 ? budget - SECONDS : 5))" "$py" -m training.evaluate "$run" \
        --json "$OUT/evaluation.json" "${eval_args[@]}" >> "$OUT/train2.log" 2>&1 \
        || echo "----- evaluation failed or ran out of time (exit $?): run training.evaluate here" >> "$OUT/train2.log"
    # The last step's weights (the model is their moving average), in what is left: not packed,
    # so these scores are only had here.
    if [ -d "$work/last-step" ]; then
        echo "----- the last step's weights ($work/last-step)" >> "$OUT/train2.log"
        timeout "$((budget - SECONDS > 5 ? budget - SECONDS : 5))" "$py" -m training.evaluate "$work/last-step" \
            --json "$OUT/evaluation_last_step.json" "${eval_args[@]}" >> "$OUT/train2.log" 2>&1 \
            || echo "----- its evaluation failed or ran out of time (exit $?)" >> "$OUT/train2.log"
    fi
    echo "----- done ($SECONDS s)" >> "$OUT/train2.log"
    ;;
*)
    echo "usage: gpu_calls.sh 1|2" >&2
    exit 2
    ;;
esac
