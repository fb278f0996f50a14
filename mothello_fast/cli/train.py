"""Train mOthelloGPT on a games dataset (config file plus --set overrides).

Example:
    mothello train --data games/ --out runs/atomic2 --config train.yaml --set max_steps=2000
    mothello train --out runs/atomic2 --resume     # continue after a stop, as the run was set up

--resume reads the run's own config, dataset and split (flags given override them; one that
changes the training curve is refused, naming it).

Multi-GPU (DistributedDataParallel, one process per GPU):
    torchrun --nproc_per_node 8 --no-python mothello train --data games/ --out runs/x
"""
from __future__ import annotations

import argparse

from .games import non_negative_int

VAL_FRACTION = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="games dataset directory (mothello gen); with --resume, "
                                       "the run's own by default")
    parser.add_argument("--out", required=True, help="run directory (metrics, checkpoints)")
    parser.add_argument("--config", default=None,
                        help="TrainConfig as a YAML or JSON file, or a run directory (its "
                             "config); with --resume, the run's own by default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable), e.g. --set lr=1e-3")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help=f"fraction of the games held out for evaluation (default: "
                             f"{VAL_FRACTION}, or the run's own with --resume)")
    parser.add_argument("--split-seed", type=non_negative_int, default=None,
                        help="seed of the train/val split (default: 0, or the run's own with "
                             "--resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in --out")
    parser.add_argument("--init-from", default=None,
                        help="checkpoint to start the weights from (its language set must be "
                             "this run's)")
    parser.add_argument("--init-languages", action="store_true",
                        help="take --init-from's language set (recorded in the run's config)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (TrainConfig.threads; default: torch's, one "
                             "per core)")
    parser.add_argument("--wandb", action="store_true", help="also log to Weights & Biases")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..runs import RUN_CONFIG, run_source
    from ..train import load_train_config, train_on_dataset

    overrides = list(args.set) + (["wandb=true"] if args.wandb else []) \
        + ([f"threads={args.threads}"] if args.threads is not None else [])
    own = args.resume and (Path(args.out) / RUN_CONFIG).exists()   # the run to continue
    source = run_source(args.out) if own else {}
    config = load_train_config(args.config if args.config or not own else args.out, overrides)
    data = args.data or source.get("data")
    if data is None:
        raise ConfigError("--data is missing: expected the games dataset directory"
                          + (f" (the run in {args.out!r} records none)" if own else ""))
    result = train_on_dataset(config, data, out_dir=args.out,
                              val_fraction=_given(args.val_fraction, source, "val_fraction",
                                                  VAL_FRACTION),
                              split_seed=_given(args.split_seed, source, "split_seed", 0),
                              resume=args.resume, init_from=args.init_from,
                              init_languages=args.init_languages, progress=not args.quiet)
    if result.rank != 0:  # under torchrun, one summary (rank 0's)
        return 0
    last = {k: v for r in result.metrics for k, v in r.items()}
    summary = ", ".join(f"{k} {v:.4f}" for k, v in last.items()
                        if k == "loss" or k.startswith("legal_acc"))
    print(f"trained to step {last.get('step')}: {summary}; checkpoint {result.checkpoint}")
    return 0


def _given(value, source: dict, key: str, default):
    """A flag's value if given, else the resumed run's own, else the default."""
    if value is not None:
        return value
    return source.get(key, default)
