"""Where an analysing subcommand's games come from: a dataset or fresh random games.

The same rule for `probe`, `align`, `concepts` and `eval`:

- ``--data DIR``: a games dataset (`mothello gen`); ``--games N`` takes its first N games
  (an error when it holds fewer), without ``--games`` all of them;
- no ``--data``: ``--games N`` fresh random games drawn with ``--seed`` (default: the
  command's own count).

The default seed of fresh games is `FRESH_SEED`, not 0: a model trained on
``mothello gen --seed 0`` data would otherwise be analysed on its own first training games.
"""
from __future__ import annotations

import argparse

FRESH_SEED = 2024


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def add_games_arguments(parser: argparse.ArgumentParser, *, default_games: int,
                        seed_help: str = "seed of the fresh games") -> None:
    """``--data``, ``--games`` and ``--seed`` with the rule of this module."""
    parser.add_argument("--data", default=None,
                        help="games dataset directory (mothello gen); default: fresh random games")
    parser.add_argument("--games", type=positive_int, default=None,
                        help="with --data: its first N games (default: all); without: N fresh "
                             f"random games (default: {default_games})")
    parser.add_argument("--seed", type=int, default=FRESH_SEED,
                        help=f"{seed_help} (default: {FRESH_SEED})")
    parser.set_defaults(default_games=default_games)


def games_from_args(args: argparse.Namespace):
    """int8 [n, 60] games chosen by ``args.data``, ``args.games`` and ``args.seed``."""
    import numpy as np

    from ..datasets import load_games
    from ..errors import DatasetError
    from ..othello import generate_games

    if args.data is None:
        return generate_games(args.games or args.default_games, seed=args.seed)
    dataset = load_games(args.data)
    if args.games is None:
        return np.asarray(dataset)
    if args.games > len(dataset):
        raise DatasetError(f"--games {args.games}: dataset {str(args.data)!r} holds only "
                           f"{len(dataset)} games")
    return dataset[:args.games]
