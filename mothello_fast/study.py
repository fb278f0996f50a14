"""The mOthello study: a grid of cells (training setting x seed), run in parallel and
summarised with controls, intervals, differences between settings, verdicts, and one
report.

``run_study(settings=["naive", "anchors:4", "anchors:16", "unified"], seeds=[0, 1, 2],
languages="atomic,atomic", scale="cpu", out_dir=DIR)`` writes

    DIR/study.json                     the parameters every cell shares (languages,
                                       scale and sizes, probe): another study's cells
                                       are refused, naming the fields that differ
    DIR/cells/<setting>-seed<seed>/    one cell each (`cell.run_cell`): resumable, and
                                       reused once finished
    DIR/summary.json                   every number of the report (`summary.summarize`)
    DIR/report.md, DIR/report.html     the report (`report`), and its figures (*.png)

Cells run in `workers` processes of `threads` torch threads each; by default as many
workers as the machine has cores (one per cell at most) with one thread each on the
CPU, and one worker using every core on a GPU, so ``workers x threads`` never exceeds
the cores. The summary and the report are rewritten whenever a cell finishes, so a
partial grid already reports.

Each cell is also a command of its own (``run_study_cell``, ``mothello study ...
--cell I``): a cluster runs a grid as a job array, one cell a job, into one shared
directory, and ``aggregate_study`` (``mothello study ... --aggregate-only``) builds the
summary and the report from the cells there.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .cell import (CELL, StudyScale, cell_name, check_params, parse_setting, probe_kind,
                   resolve_probe, resolve_scale, run_cell)
from .errors import ConfigError, check_int
from .seeds import MAX_SEED
from .storage import atomic_write_json

__all__ = ["run_study", "run_study_cell", "aggregate_study", "study_cells", "plan_workers",
           "STUDY", "CELLS"]

STUDY = "study.json"
CELLS = "cells"
_FORMAT = "mothello-study/2"


def _list(value, name: str) -> list:
    if isinstance(value, (str, int)):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"{name}={value!r}: expected a list") from None
    if not items:
        raise ConfigError(f"{name} is empty: expected at least one")
    repeated = sorted({str(v) for v in items if items.count(v) > 1})
    if repeated:
        raise ConfigError(f"{name}={items} lists {repeated} more than once")
    return items


def study_cells(settings: Sequence[str] | str, seeds: Sequence[int] | int) -> list[tuple[str, int]]:
    """The cells of a grid, seed by seed (every setting of seed 0 first, so that a partial
    grid compares settings early): ``[(setting, seed), ...]``."""
    settings = _list(settings, "settings")
    for setting in settings:
        parse_setting(setting)
    seeds = [check_int("seed", s, least=0, most=MAX_SEED, error=ConfigError)
             for s in _list(seeds, "seeds")]
    return [(setting, seed) for seed in seeds for setting in settings]


def plan_workers(n_cells: int, *, workers: int | None = None, threads: int | None = None,
                 device: str = "cpu", cores: int | None = None) -> tuple[int, int]:
    """(workers, torch threads per worker) for `n_cells` cells on `cores` cores (default:
    this process's). Defaults: on the CPU, one worker per core (at most one per cell)
    with the cores shared among them; on a GPU, one worker with every core. What is given
    is kept; a product over the cores is allowed with a warning."""
    from .parallel import cpu_count

    cores = cpu_count() if cores is None else cores
    n_cells = check_int("n_cells", n_cells, least=1, error=ConfigError)
    if workers is not None:
        workers = check_int("workers", workers, least=1, error=ConfigError)
    if threads is not None:
        threads = check_int("threads", threads, least=1, error=ConfigError)
    if workers is None:
        if device != "cpu":
            workers = 1
        else:
            workers = max(1, min(n_cells, cores // (threads or 1)))
    workers = min(workers, n_cells)
    if threads is None:
        threads = max(1, cores // workers)
    if workers * threads > cores:
        warnings.warn(f"{workers} workers x {threads} threads = {workers * threads} threads on "
                      f"{cores} cores: each will run slower than it could", stacklevel=3)
    return workers, threads


def _study_params(languages: str, scale, probe) -> tuple[dict, StudyScale, object]:
    """The parameters every cell of a study shares, checked, and the sizes and probe."""
    from sklearn.base import clone

    sizes, scale_name = resolve_scale(scale)
    probe = clone(resolve_probe(probe, sizes))
    params = {k: v for k, v in probe.get_params().items()
              if k not in ("device", "progress", "seed")}
    return ({"format": _FORMAT, "languages": languages, "scale": scale_name,
             "sizes": dataclasses.asdict(sizes), "probe": {"kind": probe_kind(probe), **params}},
            sizes, probe)


def _prepare(out_dir, languages, scale, probe) -> tuple[Path, dict, StudyScale, object]:
    params, sizes, probe = _study_params(languages, scale, probe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_params(out / STUDY, params, "study")
    (out / CELLS).mkdir(exist_ok=True)
    return out, params, sizes, probe


def _cell_kwargs(out: Path, setting: str, seed: int, languages: str, params: dict,
                 sizes: StudyScale, probe, device: str, threads: int | None, transfer: bool,
                 progress: bool) -> dict:
    scale = sizes if params["scale"] == "custom" else params["scale"]
    return {"setting": setting, "seed": seed, "languages": languages, "scale": scale,
            "out_dir": out / CELLS / cell_name(setting, seed), "probe": probe,
            "device": device, "threads": threads, "transfer": transfer, "progress": progress}


def _run_in_worker(kwargs: dict) -> tuple[str, int]:
    """A cell in a worker process (module level: spawned workers import it)."""
    import torch

    torch.set_num_threads(kwargs["threads"])
    run_cell(**kwargs)
    return kwargs["setting"], kwargs["seed"]


def _read_cells(out: Path, params: dict) -> tuple[list[dict], list[dict]]:
    """(results of the cells that finished their alignment step, the cells begun but not
    that far), from ``out/cells``."""
    done, pending = [], []
    for directory in sorted((out / CELLS).iterdir()) if (out / CELLS).is_dir() else []:
        if not (directory / CELL).exists():
            continue
        cell = json.loads((directory / CELL).read_text())
        shared = {k: cell.get(k) for k in ("languages", "scale", "sizes", "probe")}
        if shared != {k: params[k] for k in shared}:
            raise ConfigError(f"cell {str(directory)!r} was run with other study parameters "
                              f"than {str(out / STUDY)!r}; expected cells of this study only")
        results = directory / "results.json"
        if results.exists():
            done.append(json.loads(results.read_text()))
        else:
            pending.append({"setting": cell["setting"], "seed": cell["seed"],
                            "status": "running or interrupted", "seconds": {}})
    return done, pending


def aggregate_study(out_dir, *, write: bool = True) -> dict:
    """The summary of the study in `out_dir` from the cells there (finished ones; those
    begun are listed as pending), written with the report unless `write` is False."""
    from .report import write_study_report
    from .summary import summarize

    out = Path(out_dir)
    if not (out / STUDY).exists():
        raise ConfigError(f"{str(out)!r} holds no {STUDY}: not a study directory")
    params = json.loads((out / STUDY).read_text())
    done, pending = _read_cells(out, params)
    summary = summarize(done, study=params, pending=pending)
    if write:
        atomic_write_json(out / "summary.json", summary)
        write_study_report(summary, out)
    return summary


def run_study(*, settings: Sequence[str] | str = ("naive",), seeds: Sequence[int] | int = (0,),
              languages: str = "atomic,atomic", scale: str | StudyScale = "tiny", out_dir,
              probe=None, device: str = "auto", workers: int | None = None,
              threads: int | None = None, transfer: bool = True,
              progress: bool = True) -> dict:
    """Run (or resume) every cell of the grid `settings` x `seeds` and return the summary
    (``out_dir/summary.json``).

    probe: "mlp" (default, the scale's sizes), "linear" or a probe estimator, cloned for
    every fit; workers, threads: see `plan_workers`; transfer: run the transfer protocol
    in every cell (after its alignment results). A cell that fails does not stop the
    others; the first failure is raised once the rest are done and summarised.
    """
    from .devices import resolve_device

    cells = study_cells(settings, seeds)
    resolved = resolve_device(device)
    out, params, sizes, probe = _prepare(out_dir, languages, scale, probe)
    from .languages import LanguageSet

    for setting, _ in cells:   # a bad language spec or anchor count fails before any work
        n_anchors, objective = parse_setting(setting)
        LanguageSet.from_spec(languages, n_anchors=n_anchors, unified=objective == "unified")
    workers, threads = plan_workers(len(cells), workers=workers, threads=threads,
                                    device=resolved.type)
    jobs = [_cell_kwargs(out, setting, seed, languages, params, sizes, probe, device, threads,
                         transfer, progress and workers == 1) for setting, seed in cells]
    failures = []
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(True, total=len(jobs), unit="cell",
                           desc=f"study ({workers} workers x {threads} threads)")
    try:
        if workers == 1:
            for job in jobs:
                try:
                    run_cell(**job)
                except Exception as exc:   # noqa: BLE001 - reported after the other cells
                    failures.append((job, exc))
                aggregate_study(out)
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")   # no fork of torch's threads
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                running = {pool.submit(_run_in_worker, job): job for job in jobs}
                try:
                    while running:
                        finished, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in finished:
                            job = running.pop(future)
                            if future.exception() is not None:
                                failures.append((job, future.exception()))
                            if bar is not None:
                                bar.update(1)
                        aggregate_study(out)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        if bar is not None:
            bar.close()
    summary = aggregate_study(out)
    if failures:
        job, exc = failures[0]
        names = ", ".join(cell_name(j["setting"], j["seed"]) for j, _ in failures)
        exc.add_note(f"{len(failures)} study cell(s) failed ({names}); this is "
                     f"{cell_name(job['setting'], job['seed'])}'s error. The other cells are "
                     "summarised; rerun the study to retry the failed ones.")
        raise exc
    return summary


def run_study_cell(*, cell: int, settings: Sequence[str] | str, seeds: Sequence[int] | int,
                   languages: str = "atomic,atomic", scale: str | StudyScale = "tiny",
                   out_dir, probe=None, device: str = "auto", threads: int | None = None,
                   transfer: bool = True, progress: bool = True) -> dict | None:
    """Run cell number `cell` (0-based, in `study_cells` order: a job array's task id)
    of the grid in this process, without aggregating; returns the cell's results (None
    on torchrun ranks other than 0)."""
    cells = study_cells(settings, seeds)
    index = check_int("cell", cell, least=0, most=len(cells) - 1, error=ConfigError)
    out, params, sizes, probe = _prepare(out_dir, languages, scale, probe)
    setting, seed = cells[index]
    return run_cell(**_cell_kwargs(out, setting, seed, languages, params, sizes, probe, device,
                                   threads, transfer, progress))

