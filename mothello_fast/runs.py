"""A training run's directory: its layout, its lock, its metrics log, its checkpoints, and
the checks that let a run resume only as itself.

    RUN/config.json               the TrainConfig, model config, language set and where
                                  the games came from ("source")
    RUN/metrics.jsonl             one JSON record per logging / evaluation step
    RUN/checkpoints/step-NNNNNN/  checkpoints (`checkpoint`), the newest `keep` kept
    RUN/train.lock                held while a run trains into it

`train.train` drives a `Run`; everything that reads or writes these files lives here.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .checkpoint import find_latest_checkpoint, prune_checkpoints
from .errors import CheckpointError, ConfigError
from .storage import atomic_write_bytes, atomic_write_json, writer_lock

__all__ = ["Run", "MetricsLog", "data_digests", "check_resume", "run_source", "read_metrics",
           "METRICS", "RUN_CONFIG", "RUN_LOCK", "CHECKPOINTS"]

METRICS = "metrics.jsonl"
RUN_CONFIG = "config.json"
RUN_LOCK = "train.lock"
CHECKPOINTS = "checkpoints"


def read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """The records of a metrics.jsonl up to step `up_to_step` (the step resumed from).

    A line that is not a record is skipped when no record up to that step follows it
    (an append cut short by the interruption); anywhere else it is a `CheckpointError`."""
    if not path.exists():
        return []
    lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1)
             if line.strip()]
    records, bad = [], None
    for number, line in lines:
        try:
            record = json.loads(line)
            step = record["step"]
            if isinstance(step, bool) or not isinstance(step, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            bad = bad or number
            continue
        if step > up_to_step:
            continue
        if bad is not None:
            raise CheckpointError(f"cannot resume: line {bad} of {str(path)!r} is not a metrics "
                                  f"record (a JSON object with an integer 'step'), and records "
                                  f"up to the resumed step {up_to_step} follow it")
        records.append(record)
    return records


class Run:
    """The directory of one training run (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def config_file(self) -> Path:
        return self.path / RUN_CONFIG

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        return find_latest_checkpoint(self.checkpoints)

    def start(self, resume: bool) -> Path | None:
        """The checkpoint to resume from (None: a fresh run). A fresh run into a directory
        that already holds one is refused, so that two runs are never mixed."""
        latest = self.latest_checkpoint()
        if resume:
            return latest
        if latest is not None or self.metrics_file.exists():
            raise CheckpointError(f"{str(self.path)!r} already holds a training run; pass "
                                  "resume=True (--resume) to continue it, or choose another "
                                  "out_dir (--out)")
        return None

    def lock(self, main: bool = True):
        """On the main process, `storage.writer_lock` on ``RUN/train.lock`` while the run
        trains: a second run into it at the same time is refused (under torchrun, the
        failing process stops the others). The lock is inside the run's directory, which
        the run writes anyway (beside it, it would need the parent to be writable)."""
        if not main:
            return nullcontext()
        self.path.mkdir(parents=True, exist_ok=True)
        return writer_lock(self.path, lock=self.path / RUN_LOCK, error=CheckpointError,
                           what="training run")

    def read_metrics(self, up_to_step: int) -> list[dict]:
        return read_metrics(self.metrics_file, up_to_step)

    def record(self, *, train_config: dict, model_config: dict, language_set: dict,
               world_size: int, source: dict | None, metrics: list[dict]) -> None:
        """Write config.json, and metrics.jsonl holding `metrics` (the records up to the
        step resumed from; none for a fresh run), each atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_file, {"train_config": train_config,
                                             "model_config": model_config,
                                             "language_set": language_set,
                                             "world_size": world_size,
                                             **({"source": source} if source else {})})
        atomic_write_bytes(self.metrics_file,
                           "".join(json.dumps(r) + "\n" for r in metrics).encode())

    def prune(self, keep: int | None) -> None:
        """Delete all but the newest `keep` checkpoints (None keeps all)."""
        prune_checkpoints(self.checkpoints, keep)

    def source(self) -> dict:
        return run_source(self.path)


def run_source(out_dir) -> dict:
    """What a training run in `out_dir` records of its games (``config.json``'s "source":
    the dataset and split of `train.train_on_dataset`); {} when it records nothing or
    there is no run there."""
    path = Path(out_dir) / RUN_CONFIG
    if not path.exists():
        return {}
    try:
        source = json.loads(path.read_text()).get("source") or {}
    except (ValueError, AttributeError):
        raise ConfigError(f"{str(path)!r} is not a run's config (a JSON object)") from None
    return source if isinstance(source, dict) else {}


class MetricsLog:
    """Appends metric records to the run's metrics.jsonl (and to wandb, with `wandb_project`),
    on the main process only; `records` holds every record of the run so far."""

    def __init__(self, run: Run, records: list[dict], *, enabled: bool,
                 wandb_project: str | None = None, wandb_config: dict | None = None):
        self.path = run.metrics_file
        self.enabled = enabled
        self.records = records if enabled else []
        self.wandb = None
        if enabled and wandb_project is not None:
            try:
                import wandb
            except ImportError:
                raise ConfigError("wandb=True needs the wandb package (pip install "
                                  "'mothello-fast[wandb]')") from None
            self.wandb = wandb.init(project=wandb_project, config=wandb_config,
                                    dir=str(run.path), name=run.path.name)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(record, step=record["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def data_digests(train_games, val_games, language_games, language_set) -> dict[str, str]:
    """sha256 of what a run reads: its training games with the `language_games` subsets
    that draw from them (they decide the batches), and its held-out games. The subsets
    count as `corpus.Corpus` reads them (`corpus.language_subsets`), so that a mask and
    its indices, any integer dtype or order, a name and its index agree."""
    from .corpus import language_subsets

    train = hashlib.sha256(np.ascontiguousarray(train_games))   # the buffer itself, no copy
    subsets = language_subsets(language_set, language_games, len(train_games))
    for j, subset in enumerate(subsets):
        if subset is not None:
            train.update(f"{j}:{subset.dtype}:".encode() + subset.tobytes())
    return {"train_data_sha256": train.hexdigest(),
            "val_games_sha256": hashlib.sha256(np.ascontiguousarray(val_games)).hexdigest()}


def check_resume(ckpt, current: dict, *, ignored, device: torch.device, world: int,
                 main: bool, digests: dict[str, str]) -> None:
    """Refuse to resume from checkpoint `ckpt` with another training config (`current`,
    a `TrainConfig.to_dict()`; the `ignored` fields may change) or other training games
    (`CheckpointError` naming what differs); warn when other held-out games, another
    device type or number of processes mean the rest of the run cannot repeat the
    uninterrupted one."""
    saved = dict(ckpt.train_config or {})
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {current[k]!r}" for k in current
             if k not in ignored and saved.get(k) != current[k]]
    if diffs:
        raise CheckpointError(f"cannot resume from {str(ckpt.path)!r}: its training config "
                              f"differs ({'; '.join(diffs)})")
    run = ckpt.extra.get("run") or {}
    if run.get("train_data_sha256", digests["train_data_sha256"]) != digests["train_data_sha256"]:
        raise CheckpointError(f"cannot resume from {str(ckpt.path)!r}: it was trained on other "
                              "games (train_games, or language_games, differ from its run's); "
                              "pass the same games, or start a new run (init_from= starts one "
                              "from its weights)")
    # allowed, but the rest of the run then differs from the uninterrupted one
    if main and run.get("val_games_sha256", digests["val_games_sha256"]) \
            != digests["val_games_sha256"]:
        warnings.warn(f"resuming {str(ckpt.path)!r} with other val_games than its run's: the "
                      "evaluations from here on are of other games", stacklevel=4)
    for what, old, new, why in (
            ("device type", run.get("device_type"), device.type, "the batches differ"),
            ("number of processes", run.get("world_size"), world,
             "dropout is seeded per rank")):
        if main and old is not None and old != new:
            warnings.warn(f"resuming {str(ckpt.path)!r}: it was trained with {what} {old!r}, "
                          f"this run uses {new!r}; {why}, so the rest of the run will not "
                          "repeat the uninterrupted one", stacklevel=4)
