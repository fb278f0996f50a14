r"""Train board-state probes on a checkpoint's hidden states, one per layer.

Example:
    mothello probe runs/x/checkpoints/step-020000 --games 1000 --seed 1 \
        --language L0 --layers 0 1 2 3 4 5 6 7 8 --kind mlp --out probes/
"""
from __future__ import annotations

import argparse
import json

from .checkpoints import add_checkpoint_argument, checkpoint_from
from .games import add_games_arguments, games_from_args
from .lists import add_layers_argument, layers_from


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by the commands that analyse a checkpoint over a set of games."""
    add_checkpoint_argument(parser)
    add_games_arguments(parser, default_games=1000,   # mOthello's probe games
                        seed_help="seed of the fresh games, the split and the probes")
    add_layers_argument(parser, default=["6"], help="layers to probe (default: 6)")
    parser.add_argument("--kind", choices=["mlp", "linear"], default="mlp", help="probe kind")
    parser.add_argument("--labels", choices=["absolute", "relative"], default="absolute",
                        help="board labels: absolute (empty, black, white) or relative "
                             "(empty, mine, theirs)")
    parser.add_argument("--hidden", type=int, default=512, help="MLP probe hidden units")
    parser.add_argument("--epochs", type=int, default=16, help="probe training epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="probe learning rate (Adam)")
    parser.add_argument("--batch-size", type=int, default=1024, help="probe batch size")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="positions held out to score the probes")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def model_inputs(args: argparse.Namespace):
    """(model, language set, games, layers, probe parameters) from the shared arguments."""
    from ..checkpoint import load_model
    from ..devices import resolve_device

    model, language_set = load_model(checkpoint_from(args), device=resolve_device(args.device))
    games = games_from_args(args)
    layers = layers_from(args.layers)
    params = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
              "device": args.device, **({"hidden": args.hidden} if args.kind == "mlp" else {})}
    return model, language_set, games, layers, params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--language", required=True, help="language the games are written in")
    parser.add_argument("--out", default=None, help="directory for the probes and probes.json")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ProbeError
    from ..probes import probe_model

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ProbeError(f"--out {args.out!r} is a file: expected a directory for the probes "
                         "and probes.json")
    model, language_set, games, layers, params = model_inputs(args)
    result = probe_model(model, language_set, games, language=args.language, layers=layers,
                         kind=args.kind, labels=args.labels, probe_params=params,
                         test_fraction=args.test_fraction, seed=args.seed, out_dir=args.out,
                         progress=not args.quiet)
    print(json.dumps({str(layer): round(acc, 4)
                      for layer, acc in zip(result["layers"], result["accuracy"])}))
    return 0
