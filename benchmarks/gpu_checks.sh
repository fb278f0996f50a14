#!/usr/bin/env bash
# What a CUDA machine is needed for, in one command, the parts in the order given:
#
#   bash benchmarks/gpu_checks.sh [PART ...]      (default: build tests mfu, about 9 minutes)
#
#   build    pip install --no-deps --no-build-isolation -e .  (the engine extension, built there)
#   tests    python -m pytest tests/gpu -v -s --durations=15  (the GPU tests: kernels, training, ...)
#   mfu      benchmarks/test_bench_train.py --sweep --profile 'ours,corpus batches': ms, tokens/s
#            and MFU of the training step per variant (eager fp32, ours, ours fed by Corpus as
#            train() feeds it, Triton attention, no dropout, max-autotune, ...; a time limit
#            cuts the tail), where the device time of a step goes, and how long it waits
#   step     benchmarks/test_bench_kernels.py --only step  (the step per SDPA backend, eager)
#   loop     the whole train() loop against eager fp32 (benchmarks/test_bench_train.py, pytest)
#   kernels  benchmarks/test_bench_kernels.py --only attention --only probe
#
# Each part runs under its own time limit, LIMIT_<PART> seconds (defaults below), so one slow
# part cannot use up the others' time. Its whole log goes to $LOG_DIR/<part>.log ($OUT when
# set, else gpu-logs/), and a line per part (passed / failed / timed out, seconds) prints
# last and goes to summary.txt.
set -u
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-${OUT:-gpu-logs}}
mkdir -p "$LOG_DIR"
export PYTHONUNBUFFERED=1

declare -A LIMIT=([build]=${LIMIT_BUILD:-90} [tests]=${LIMIT_TESTS:-240}
                  [mfu]=${LIMIT_MFU:-240} [step]=${LIMIT_STEP:-240} [loop]=${LIMIT_LOOP:-240}
                  [kernels]=${LIMIT_KERNELS:-300})
declare -A COMMAND=(
    [build]="python3 -m pip install -q --no-deps --no-build-isolation -e ."
    [tests]="python3 -m pytest tests/gpu -v -s -p no:cacheprovider --durations=15"
    [step]="python3 benchmarks/test_bench_kernels.py --only step"
    [mfu]="python3 benchmarks/test_bench_train.py --sweep --profile 'ours,corpus batches' --json $LOG_DIR/mfu.json"
    [loop]="python3 -m pytest benchmarks/test_bench_train.py -k loop --benchmark-enable -q -s -p no:cacheprovider"
    [kernels]="python3 benchmarks/test_bench_kernels.py --only attention --only probe"
)

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(build tests mfu)
for part in "${parts[@]}"; do
    if [ -z "${COMMAND[$part]+set}" ]; then
        echo "gpu_checks.sh: unknown part '$part'; expected some of: ${!COMMAND[*]}" >&2
        exit 2
    fi
done

source benchmarks/gpu_parts.sh
run_parts "$LOG_DIR" "${parts[@]}"
