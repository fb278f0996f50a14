# The part runner of the GPU scripts (gpu_checks.sh, gpu_study.sh), sourced by them:
#
#   run_parts LOG_DIR PART ...
#
# runs each PART's command, ${COMMAND[PART]}, under its time limit, ${LIMIT[PART]} seconds
# (both associative arrays of the caller), its whole log teed to LOG_DIR/PART.log; then
# prints a line per part (passed / failed / timed out, seconds), after the GPU's name, and
# writes them to LOG_DIR/summary.txt. Returns 1 when a part did not pass.
run_parts() {
    local log_dir=$1 part start rc seconds state failed=0
    shift
    local summary=("$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
                      --format=csv,noheader 2>&1 || echo 'nvidia-smi failed')")
    echo "${summary[0]}"
    for part in "$@"; do
        echo "=== $part (limit ${LIMIT[$part]} s): ${COMMAND[$part]}"
        start=$(date +%s)
        timeout --kill-after=10 "${LIMIT[$part]}" bash -c "${COMMAND[$part]}" 2>&1 \
            | tee "$log_dir/$part.log"
        rc=${PIPESTATUS[0]}
        seconds=$(( $(date +%s) - start ))
        case $rc in
            0) state=passed ;;
            124|137) state="TIMED OUT" ; failed=1 ;;
            *) state="failed (exit $rc)" ; failed=1 ;;
        esac
        summary+=("$(printf '%-10s %-18s %5d s' "$part" "$state" "$seconds")")
    done
    echo
    echo "=== summary"
    printf '%s\n' "${summary[@]}" | tee "$log_dir/summary.txt"
    return $failed
}
