"""Shared benchmark plumbing: a `report` fixture that collects figures and ratios,
printed as one table at the end of the run (and saved to .benchmarks/summary.json).

Benchmarks compare against a baseline measured in the same run; absolute times on
these machines are noisy and not comparable across runs.
"""
import json
import os
import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the pure-Python oracle

_FIGURES: list[tuple[str, str, float, str]] = []


@pytest.fixture(scope="session")
def report():
    def record(section: str, metric: str, value: float, unit: str = "") -> float:
        _FIGURES.append((section, metric, float(value), unit))
        return value
    return record


def median_seconds(benchmark) -> float:
    return benchmark.stats.stats.median


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    tr = terminalreporter
    tr.section("benchmark figures")
    tr.write_line(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    for section, metric, value, unit in _FIGURES:
        tr.write_line(f"{section:<28} {metric:<44} {value:>14,.3f} {unit}")
    out = Path(".benchmarks")
    out.mkdir(exist_ok=True)
    (out / "summary.json").write_text(json.dumps(
        [dict(section=s, metric=m, value=v, unit=u) for s, m, v, u in _FIGURES], indent=1))
