"""Legal-move accuracy (and loss) of a checkpoint, per language, on held-out games.

Example:
    mothello eval runs/atomic2/checkpoints/step-020000 --games 1000 --seed 7
    mothello eval runs/atomic2/checkpoints/step-020000 --data val_games/ --out acc.json
"""
from __future__ import annotations

import argparse

from .checkpoints import add_checkpoint_argument, checkpoint_from
from .defaults import api_defaults
from .games import add_games_arguments, games_from_args, positive_int
from .lists import add_list_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_argument(parser)
    add_games_arguments(parser, default_games=1000)
    parser.add_argument("--objective", choices=["standard", "unified"], default=None,
                        help="default: the one the checkpoint was trained with")
    add_list_argument(parser, "--languages", help="input languages (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=api_defaults(
        "mothello_fast.evaluate", "evaluate_checkpoint")["batch_size"],
                        help="games per forward pass")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..checkpoint import resolve_checkpoint
    from ..devices import resolve_device
    from ..evaluate import evaluate_checkpoint
    from ..storage import atomic_write_json

    checkpoint = checkpoint_from(args)
    games = games_from_args(args)
    results = evaluate_checkpoint(checkpoint, games, objective=args.objective,
                                  languages=args.languages,
                                  device=resolve_device(args.device),
                                  batch_size=args.batch_size,
                                  progress=not args.quiet)
    results = {"checkpoint": str(resolve_checkpoint(checkpoint)), "n_games": int(len(games)),
               **results}
    if args.out is not None:
        atomic_write_json(Path(args.out), results)
    print(json.dumps(results, indent=2))
    return 0
