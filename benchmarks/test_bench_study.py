"""The study grid's wall time: cells in parallel workers as `plan_workers` picks them by
default, against the same cells run one after another in one process with torch's default
threads, in the same run (fresh directories each), and the time of each phase.

    python3 -m pytest benchmarks/test_bench_study.py -q -s

STUDY_BENCH_SCALE (default "tiny") and STUDY_BENCH_SETTINGS / STUDY_BENCH_SEEDS size it.
"""
import os
import time

import pytest
import torch

from mothello_fast.cell import SCALES
from mothello_fast.parallel import cpu_count
from mothello_fast.study import plan_workers, run_study, study_cells

SCALE = os.environ.get("STUDY_BENCH_SCALE", "tiny")
SETTINGS = os.environ.get("STUDY_BENCH_SETTINGS", "naive,unified").split(",")
SEEDS = [int(s) for s in os.environ.get("STUDY_BENCH_SEEDS", "0,1").split(",")]
SECTION = f"study grid, {SCALE}, {len(SETTINGS)} settings x {len(SEEDS)} seeds"


def _run(out, **kwargs) -> tuple[float, dict]:
    start = time.perf_counter()
    summary = run_study(settings=SETTINGS, seeds=SEEDS, scale=SCALE, out_dir=out,
                        device="cpu", transfer=False, progress=False, **kwargs)
    return time.perf_counter() - start, summary


@pytest.mark.skipif(SCALE not in SCALES, reason=f"unknown scale {SCALE!r}")
def test_grid_in_parallel_workers_against_cells_one_after_another(tmp_path, report):
    n_cells = len(study_cells(SETTINGS, SEEDS))
    workers, threads = plan_workers(n_cells)
    default_threads = torch.get_num_threads()
    sequential, _ = _run(tmp_path / "sequential", workers=1, threads=default_threads)
    parallel, summary = _run(tmp_path / "parallel")
    report(SECTION, f"one after another, 1 process x {default_threads} threads s", sequential,
           "s")
    report(SECTION, f"default: {workers} workers x {threads} threads s", parallel, "s")
    report(SECTION, "speed-up (cores: %d)" % cpu_count(), sequential / parallel, "x")
    for phase, seconds in summary["seconds"].items():
        report(SECTION, f"phase {phase}, summed over cells s", seconds, "s")
    assert [c["status"] for c in summary["cells"]] == ["done"] * n_cells
