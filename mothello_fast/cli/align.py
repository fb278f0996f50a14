r"""Cross-lingual alignment matrix of a checkpoint: probes trained in one language, tested
in every other, at each layer.

With a checkpoint, probes train on the games and are tested on fresh test games; with
--activations DIR (mothello collect, or any model's), on --test-activations DIR or else a
--test-fraction split of the positions.

Example:
    mothello align runs/x/checkpoints/step-020000 --games 1000 --test-games 100 \
        --layers 6 --out alignment.json
    mothello align --activations acts/ --test-activations test-acts/ --out alignment.json
"""
from __future__ import annotations

import argparse

from .checkpoints import checkpoint_from
from .games import games_from_args, non_negative_int
from .lists import add_list_argument, layers_from
from .probe import PROTOCOL_LAYERS, add_model_arguments, probe_from
from .sources import collection_from, uses_activations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_list_argument(parser, "--languages", help="languages to compare (default: every input "
                                                  "language)")
    parser.add_argument("--test-games", type=non_negative_int, default=100,
                        help="test the probes on this many fresh games drawn with the seed "
                             "derived from --seed for the role 'test-games' (see "
                             "mothello_fast.seeds; default: mOthello's 100); 0: on a "
                             "--test-fraction split of the games instead")
    parser.add_argument("--test-activations", metavar="DIR", default=None,
                        help="with --activations: test the probes on this collection of "
                             "other games (default: a --test-fraction split)")
    parser.add_argument("--out", required=True, help="JSON file for the matrices and curves")


def run(args: argparse.Namespace) -> int:
    from ..activations import collect_parallel
    from ..alignment import align
    from ..checkpoint import load_model
    from ..devices import resolve_device
    from ..errors import ProbeError
    from ..othello import generate_games
    from ..probes import check_test_fraction, fresh_probe
    from ..seeds import derive_seed
    from ..storage import atomic_write_json

    device = resolve_device(args.device)
    probe = probe_from(args, device)
    fresh_probe(probe)   # its hyperparameters, checked before anything is collected
    from_store = uses_activations(args)
    if args.test_activations is not None and not from_store:
        raise ProbeError("--test-activations needs --activations: with a checkpoint the "
                         "probes are tested on --test-games fresh games")
    tested_apart = args.test_activations is not None if from_store else args.test_games > 0
    if not tested_apart:
        check_test_fraction(args.test_fraction)
    if from_store:
        train = collection_from(args.activations, layers_from(args.layers))
        test = None if args.test_activations is None else collection_from(
            args.test_activations, layers_from(args.layers), flag="--test-activations")
    else:
        model, language_set = load_model(checkpoint_from(args), device=device)

        def collect(games):
            return collect_parallel(model, language_set, games, languages=args.languages,
                                    layers=layers_from(args.layers) or PROTOCOL_LAYERS,
                                    progress=not args.quiet)
        train = collect(games_from_args(args))
        test = collect(generate_games(args.test_games, seed=derive_seed(args.seed, "test-games"))
                       ) if args.test_games else None
    result = align(train, test, labels=args.labels, languages=args.languages, probe=probe,
                   test_fraction=args.test_fraction, seed=args.seed, progress=not args.quiet)
    atomic_write_json(args.out, {"labels": args.labels, "probe": repr(probe), **result.to_dict()})
    for layer, matrix in zip(result.layers, result.matrices):
        print(f"layer {layer}: in-distribution {matrix.in_distribution.mean():.4f}, "
              f"cross-lingual {matrix.cross_lingual:.4f}")
    return 0
