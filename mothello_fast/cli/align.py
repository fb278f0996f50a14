r"""Cross-lingual alignment matrix of a checkpoint: probes trained in one language, tested
in every other, at each layer.

Example:
    mothello align runs/x/checkpoints/step-020000 --games 1000 --test-games 100 \
        --layers 6 --out alignment.json
"""
from __future__ import annotations

import argparse

from .games import non_negative_int
from .lists import add_list_argument
from .probe import add_model_arguments, model_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_list_argument(parser, "--languages", help="languages to compare (default: every input "
                                                  "language)")
    parser.add_argument("--test-games", type=non_negative_int, default=100,
                        help="test the probes on this many fresh games drawn with the seed "
                             "derived from --seed for the role 'test-games' (see "
                             "mothello_fast.seeds; default: mOthello's 100); 0: on a "
                             "--test-fraction split of the games instead")
    parser.add_argument("--out", required=True, help="JSON file for the matrices and curves")


def run(args: argparse.Namespace) -> int:
    from ..alignment import model_alignment
    from ..othello import generate_games
    from ..seeds import derive_seed
    from ..storage import atomic_write_json

    model, language_set, games, layers, params = model_inputs(args)
    test_games = generate_games(args.test_games, seed=derive_seed(args.seed, "test-games")) \
        if args.test_games else None
    result = model_alignment(model, language_set, games, languages=args.languages,
                             layers=layers, labels=args.labels, probe=args.kind,
                             probe_params=params, test_games=test_games,
                             test_fraction=args.test_fraction, seed=args.seed,
                             progress=not args.quiet)
    atomic_write_json(args.out, {"labels": args.labels, "probe": args.kind, **result.to_dict()})
    for layer, matrix in zip(result.layers, result.matrices):
        print(f"layer {layer}: in-distribution {matrix.in_distribution.mean():.4f}, "
              f"cross-lingual {matrix.cross_lingual:.4f}")
    return 0
