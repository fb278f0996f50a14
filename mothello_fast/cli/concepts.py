"""Concept metrics of a checkpoint: CALIGN, COLAP, unification and embedding geometry.

Per layer, CALIGN, COLAP and unification on parallel games; once, the geometry of
the input embeddings. Writes concepts.json and plots (curves by layer, similarity
matrices) to --out.

Example:
    mothello concepts runs/atomic2/checkpoints/step-020000 --layers 1,4,6,8 --out concepts/
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoints import add_checkpoint_argument, checkpoint_from
from .games import add_games_arguments, games_from_args
from .lists import add_layers_argument, add_list_argument, layers_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_argument(parser)
    parser.add_argument("--out", required=True, help="directory for concepts.json and plots")
    add_layers_argument(parser, help="layers (default: every block)", spaces=False)
    add_list_argument(parser, "--languages", help="input languages (default: all)", spaces=False)
    add_games_arguments(parser, default_games=500, seed_help="seed of the fresh games and k-means")
    parser.add_argument("--clusters", type=int, default=100, help="K of k-means")
    parser.add_argument("--n-init", type=int, default=3,
                        help="k-means++ runs per clustering, the best kept")
    parser.add_argument("--max-iter", type=int, default=100, help="k-means iterations per run")
    parser.add_argument("--theta-a", type=float, default=0.9, help="CALIGN match threshold (>)")
    parser.add_argument("--top-n", type=int, default=1, help="CALIGN translations per type")
    parser.add_argument("--size-ratio", type=float, default=0.6,
                        help="CALIGN least min/max ratio of cluster sizes (>=)")
    parser.add_argument("--min-types", type=int, default=1,
                        help="CALIGN: a source cluster needs more types than this")
    parser.add_argument("--theta-o", type=float, default=0.3,
                        help="COLAP least share of every language (>=)")
    parser.add_argument("--neighbors", type=int, default=50,
                        help="k of the cross-lingual neighbours of embeddings (the paper's 50)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="games per forward pass when collecting activations")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..concepts import check_report_params, concept_report
    from ..devices import resolve_device

    check_report_params(n_clusters=args.clusters, n_init=args.n_init, max_iter=args.max_iter,
                         theta_a=args.theta_a, top_n=args.top_n, size_ratio=args.size_ratio,
                         min_types=args.min_types, theta_o=args.theta_o,
                         k_neighbors=args.neighbors, seed=args.seed)   # before loading anything
    device = resolve_device(args.device)
    model, language_set = load_model(checkpoint_from(args), device=device)
    games = games_from_args(args)
    results = concept_report(
        model, language_set, games, layers=layers_from(args.layers), languages=args.languages,
        n_clusters=args.clusters, n_init=args.n_init, max_iter=args.max_iter,
        theta_a=args.theta_a, top_n=args.top_n, size_ratio=args.size_ratio,
        min_types=args.min_types, theta_o=args.theta_o, k_neighbors=args.neighbors,
        seed=args.seed, device=device, batch_size=args.batch_size, progress=not args.quiet,
        out_dir=args.out)
    for row in results["per_layer"]:
        print(f"layer {row['layer']}: CALIGN {row['calign_mean']:.3f}  COLAP {row['colap']:.3f}"
              f"  unification {row['unification']['score']:+.3f}")
    print(f"wrote {Path(args.out) / 'concepts.json'}")
    return 0
