r"""Train board-state probes on a checkpoint's hidden states, one per layer.

Probes train on a seeded random split of the positions (--test-fraction held out). The
hidden states come from a checkpoint run over games, or from a collection already made
(--activations DIR: mothello collect, or any model's, see the README).

Example:
    mothello probe runs/x/checkpoints/step-020000 --games 1000 --seed 1 \
        --language L0 --layers 0 1 2 3 4 5 6 7 8 --kind mlp --out probes/
    mothello probe --activations acts/ --language L0 --out probes/
"""
from __future__ import annotations

import argparse
import json

from .checkpoints import checkpoint_from
from .defaults import api_defaults
from .games import add_games_arguments, games_from_args
from .lists import add_layers_argument, layers_from
from .sources import add_source_arguments, collection_from, uses_activations

PROTOCOL_LAYERS = [6]   # mOthello probes the output of block 6
API_NAMES = {"out_dir": "--out"}   # errors name the flag


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by the commands that probe a checkpoint or a collection."""
    add_source_arguments(parser)
    add_games_arguments(parser, default_games=1000,   # mOthello's probe games
                        seed_help="seed of the fresh games, the split and the probes")
    add_layers_argument(parser, help="layers to probe (default: 6, or with --activations "
                                     "every layer collected)")
    parser.add_argument("--kind", choices=["mlp", "linear"], default="mlp", help="probe kind")
    parser.add_argument("--labels", choices=["absolute", "relative"], default="absolute",
                        help="board labels: absolute (empty, black, white) or relative "
                             "(empty, mine, theirs)")
    probe = api_defaults("mothello_fast.probes", "MLPProbe.__init__")
    parser.add_argument("--hidden", type=int, default=probe["hidden"],
                        help="MLP probe hidden units")
    parser.add_argument("--epochs", type=int, default=probe["epochs"],
                        help="probe training epochs")
    parser.add_argument("--lr", type=float, default=probe["lr"],
                        help="probe learning rate (Adam)")
    parser.add_argument("--batch-size", type=int, default=probe["batch_size"],
                        help="probe batch size")
    parser.add_argument("--test-fraction", type=float, default=api_defaults(
        "mothello_fast.probes", "probe_activations")["test_fraction"],
                        help="positions held out to score the probes")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def probe_from(args: argparse.Namespace, device):
    """The board probe estimator the arguments describe, on `device` (a torch.device)."""
    from ..probes import LinearProbe, MLPProbe

    common = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
              "device": str(device), "seed": args.seed}
    return MLPProbe(hidden=args.hidden, **common) if args.kind == "mlp" else LinearProbe(**common)


def analysed(args: argparse.Namespace, device, languages=None):
    """The `ParallelActivations` the arguments name: ``--activations DIR`` read back, or
    the checkpoint's hidden states on the games in `languages` (default all)."""
    if uses_activations(args):
        return collection_from(args.activations, layers_from(args.layers))
    from ..activations import collect_parallel
    from ..checkpoint import load_model

    model, language_set = load_model(checkpoint_from(args), device=device)
    return collect_parallel(model, language_set, games_from_args(args), languages=languages,
                            layers=layers_from(args.layers) or PROTOCOL_LAYERS,
                            progress=not args.quiet)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--language", default=None,
                        help="language the games are written in (needed unless "
                             "--activations holds one language)")
    parser.add_argument("--out", default=None, help="directory for the probes and probes.json")


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..errors import ProbeError
    from ..probes import check_out_dir, check_test_fraction, fresh_probe, probe_activations

    if args.out is not None:
        check_out_dir(args.out)
    if args.language is None and not uses_activations(args):
        raise ProbeError("--language is missing: expected the language the games are "
                         "written in, such as --language L0")
    device = resolve_device(args.device)
    probe = probe_from(args, device)
    fresh_probe(probe)   # its hyperparameters, checked before anything is collected
    check_test_fraction(args.test_fraction)
    collection = analysed(args, device, None if args.language is None else [args.language])
    if args.language is None and len(collection.languages) > 1:
        raise ProbeError(f"--language is missing: --activations {args.activations!r} holds "
                         f"{list(collection.languages)}; expected one of them")
    result = probe_activations(collection, language=args.language, probe=probe,
                               labels=args.labels, test_fraction=args.test_fraction,
                               seed=args.seed, out_dir=args.out, progress=not args.quiet)
    print(json.dumps({str(layer): round(float(acc), 4)
                      for layer, acc in zip(result.layers, result.accuracy)}))
    return 0
