"""Generate random legal games into a dataset directory (.npy shards + manifest.json).

Re-running an interrupted generation with the same arguments resumes it.
"""
from __future__ import annotations

import argparse

from .defaults import api_defaults
from .games import non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--games", type=positive_int, required=True, help="number of games")
    parser.add_argument("--seed", type=non_negative_int, required=True, help="random seed")
    parser.add_argument("--out", required=True, help="dataset directory to create")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads (default: all cores)")
    parser.add_argument("--shard-size", type=positive_int, default=api_defaults(
        "mothello_fast.datasets", "generate_dataset")["shard_size"],
                        help="games per shard")
    parser.add_argument("--prefix", default=None,
                        help="forced opening, e.g. c4,c3,c2 (every game starts with it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..datasets import generate_dataset

    dataset = generate_dataset(args.out, n_games=args.games, seed=args.seed, threads=args.threads,
                               shard_size=args.shard_size, prefix=args.prefix,
                               overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(dataset)} games in {len(dataset.shards)} shard(s) to {dataset.path}")
    return 0
