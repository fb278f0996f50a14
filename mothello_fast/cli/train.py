"""Train mOthelloGPT on a games dataset (config file plus --set overrides).

Example:
    mothello train --data games/ --out runs/atomic2 --config train.yaml --set max_steps=2000
    mothello train --data games/ --out runs/atomic2 --resume     # continue after a stop

Multi-GPU (DistributedDataParallel, one process per GPU):
    torchrun --nproc_per_node 8 --no-python mothello train --data games/ --out runs/x
"""
from __future__ import annotations

import argparse

from .games import non_negative_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="games dataset directory (mothello gen)")
    parser.add_argument("--out", required=True, help="run directory (metrics, checkpoints)")
    parser.add_argument("--config", default=None, help="TrainConfig as a YAML or JSON file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable), e.g. --set lr=1e-3")
    parser.add_argument("--val-fraction", type=float, default=0.01,
                        help="fraction of the games held out for evaluation")
    parser.add_argument("--split-seed", type=non_negative_int, default=0,
                        help="seed of the train/val split")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in --out")
    parser.add_argument("--init-from", default=None, help="checkpoint to start the weights from")
    parser.add_argument("--wandb", action="store_true", help="also log to Weights & Biases")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..train import load_train_config, train_on_dataset

    overrides = list(args.set) + (["wandb=true"] if args.wandb else [])
    result = train_on_dataset(load_train_config(args.config, overrides), args.data,
                              out_dir=args.out, val_fraction=args.val_fraction,
                              split_seed=args.split_seed, resume=args.resume,
                              init_from=args.init_from, progress=not args.quiet)
    if result.rank != 0:  # under torchrun, one summary (rank 0's)
        return 0
    last = {k: v for r in result.metrics for k, v in r.items()}
    summary = ", ".join(f"{k} {v:.4f}" for k, v in last.items()
                        if k == "loss" or k.startswith("legal_acc"))
    print(f"trained to step {last.get('step')}: {summary}; checkpoint {result.checkpoint}")
    return 0
