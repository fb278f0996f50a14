"""Concept metrics of a checkpoint: CALIGN, COLAP, unification and embedding geometry.

Per layer, CALIGN, COLAP and unification on parallel games; once, the geometry of
the input embeddings. Writes concepts.json and plots (curves by layer, similarity
matrices) to --out. With --activations DIR (mothello collect, or any model's), the
metrics of that collection (no embedding geometry: there is no model).

Example:
    mothello concepts runs/atomic2/checkpoints/step-020000 --layers 1,4,6,8 --out concepts/
    mothello concepts --activations acts/ --compare acts-finetuned/ --out concepts/
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoints import checkpoint_from
from .defaults import api_defaults
from .games import add_games_arguments, games_from_args
from .lists import add_layers_argument, add_list_argument, layers_from
from .sources import add_source_arguments, collection_from, uses_activations

API_NAMES = {"n_clusters": "--clusters", "k_neighbors": "--neighbors"}   # errors name the flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, help="directory for concepts.json and plots")
    add_layers_argument(parser, help="layers (default: every block, or with --activations "
                                     "every layer collected)")
    add_list_argument(parser, "--languages", help="input languages (default: all)")
    add_games_arguments(parser, default_games=500, seed_help="seed of the fresh games and k-means")
    api, kmeans = _api_defaults()
    parser.add_argument("--clusters", type=int, default=kmeans["n_clusters"],
                        help="K of k-means (about three squares a cluster)")
    parser.add_argument("--n-init", type=int, default=kmeans["n_init"],
                        help="k-means++ runs per clustering, the best kept (the authors' 10)")
    parser.add_argument("--max-iter", type=int, default=kmeans["max_iter"],
                        help="k-means iterations per run")
    parser.add_argument("--max-per-type", type=int, default=api["max_per_type"],
                        help="occurrences of a square clustered per language (the authors' "
                             "maxfreq)")
    parser.add_argument("--theta-a", type=float, default=api["theta_a"],
                        help="CALIGN match threshold (>)")
    parser.add_argument("--top-n", type=int, default=api["top_n"],
                        help="CALIGN translations per type")
    parser.add_argument("--size-ratio", type=float, default=api["size_ratio"],
                        help="CALIGN size rule's ratio")
    parser.add_argument("--size-rule", choices=["two-sided", "one-sided"],
                        default=api["size_rule"],
                        help="two-sided: sizes within the ratio (the paper's words); "
                             "one-sided: source over target above it (the authors' code)")
    parser.add_argument("--min-types", type=int, default=api["min_types"],
                        help="CALIGN: a source cluster needs more types than this")
    parser.add_argument("--theta-o", type=float, default=api["theta_o"],
                        help="COLAP least share of every language (>=), per language pair")
    parser.add_argument("--pooled-colap", action="store_true",
                        help="also COLAP of all languages clustered together (0 whenever "
                             "languages x theta-o > 1)")
    parser.add_argument("--neighbors", type=int, default=api["k_neighbors"],
                        help="k of the cross-lingual neighbours of embeddings (the paper's 50)")
    parser.add_argument("--include-self", action="store_true",
                        help="count a token among its own neighbours, as the authors' code does")
    parser.add_argument("--batch-size", type=int, default=api["batch_size"],
                        help="games per forward pass when collecting activations")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--compare", metavar="CHECKPOINT",
                        help="a second checkpoint of the run (fine-tuned, or later; with "
                             "--activations, a second collection): its report beside the "
                             "first's, on the same games (compare/, comparison.png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _api_defaults() -> tuple[dict, dict]:
    """`concept_report`'s defaults and its default k-means's: the command's, never
    written twice."""
    return (api_defaults("mothello_fast.concepts", "concept_report"),
            api_defaults("mothello_fast.concepts", "default_kmeans"))


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..concepts import check_report_params, concept_metrics, concept_report
    from ..devices import resolve_device
    from ..kmeans import KMeans

    device = resolve_device(args.device)
    kmeans = KMeans(args.clusters, n_init=args.n_init, max_iter=args.max_iter, seed=args.seed,
                    device=device)
    metrics = dict(kmeans=kmeans, max_per_type=args.max_per_type, theta_a=args.theta_a,
                   top_n=args.top_n, size_ratio=args.size_ratio, size_rule=args.size_rule,
                   min_types=args.min_types, theta_o=args.theta_o)
    check_report_params(k_neighbors=args.neighbors, **metrics)   # before loading anything
    metrics.update(pooled_colap=args.pooled_colap, seed=args.seed, progress=not args.quiet)
    from_store = uses_activations(args)
    games = None if from_store else games_from_args(args)

    def report(source, out_dir):
        if from_store:
            return concept_metrics(collection_from(source), layers=layers_from(args.layers),
                                   languages=args.languages, out_dir=out_dir, **metrics)
        model, language_set = load_model(source, device=device)
        return concept_report(model, language_set, games, layers=layers_from(args.layers),
                              languages=args.languages, k_neighbors=args.neighbors,
                              include_self=args.include_self, batch_size=args.batch_size,
                              out_dir=out_dir, **metrics)

    first = args.activations if from_store else checkpoint_from(args)
    results = report(first, args.out)
    for row in results.per_layer:
        print(f"layer {row.layer}: CALIGN {row.calign_mean:.3f}  COLAP {row.colap_mean:.3f}"
              f"  unification {row.unification.score:+.3f}")
    if args.compare is not None:
        from ..concepts import compare_reports
        from ..storage import atomic_write_json

        other = report(args.compare, Path(args.out) / "compare")
        comparison = compare_reports({first: results, args.compare: other},
                                     Path(args.out) / "comparison.png")
        atomic_write_json(Path(args.out) / "comparison.json", comparison)
        print(f"compared with {args.compare}: {Path(args.out) / 'comparison.png'}")
    print(f"wrote {Path(args.out) / 'concepts.json'}")
    return 0
