#!/usr/bin/env bash
# The `small` study grid on one CUDA GPU, in one command with a time limit per part:
#
#   bash benchmarks/gpu_study.sh            (about 10 minutes on one H200: BENCHMARKS.md)
#
#   build      pip install --no-deps --no-build-isolation -e .  (the engine, built there)
#   study      mothello study --settings naive,anchors:8,unified --seeds 0,1,2 --scale small
#              with transfer, WORKERS cells at once on the one GPU (default 3, THREADS torch
#              threads each, default 5): the summary and the report are rewritten whenever
#              a cell finishes, so a part cut by its limit still leaves a partial report
#   aggregate  mothello study ... --aggregate-only: the summary of the cells that finished
#
# SCALE=tiny DEVICE=cpu (and WORKERS=2 THREADS=1) try the script on a CPU at a tiny size.
# Everything goes to $STUDY_DIR ($OUT/study when OUT is set, else gpu-study/); the logs,
# summary.json, report.md, report.html and the figures are copied to $OUT (when set), and a
# line per part (passed / failed / timed out, seconds) prints last (benchmarks/gpu_parts.sh).
# Rerunning the script resumes the grid: finished cells are reused.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-gpu-study}
STUDY_DIR=${STUDY_DIR:-$OUT_DIR/study}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
GRID="--settings naive,anchors:8,unified --seeds 0,1,2 --languages atomic,atomic --scale ${SCALE:-small} --out $STUDY_DIR --device ${DEVICE:-cuda}"

declare -A LIMIT=([build]=${LIMIT_BUILD:-90} [study]=${LIMIT_STUDY:-480}
                  [aggregate]=${LIMIT_AGGREGATE:-60})
declare -A COMMAND=(
    [build]="python3 -m pip install -q --no-deps --no-build-isolation -e ."
    [study]="python3 -m mothello_fast.cli study $GRID --workers ${WORKERS:-3} --threads ${THREADS:-5} --quiet"
    [aggregate]="python3 -m mothello_fast.cli study $GRID --aggregate-only"
)

source benchmarks/gpu_parts.sh
run_parts "$OUT_DIR" build study aggregate
failed=$?
if [ "$OUT_DIR" != "$STUDY_DIR" ]; then   # the report beside the logs
    cp "$STUDY_DIR"/summary.json "$STUDY_DIR"/report.* "$STUDY_DIR"/*.png "$OUT_DIR"/ 2>/dev/null
fi
exit $failed
