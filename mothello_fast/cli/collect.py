"""Collect a checkpoint's hidden states on parallel games in every language, once, to disk.

The collection (safetensors shards and a JSON index, see mothello_fast.activation_store)
is what `probe`, `align` and `concepts` read with --activations DIR; an interrupted
collection resumes when the command is run again.

Example:
    mothello collect runs/x --games 1000 --layers 0 2 4 6 8 --out acts/
"""
from __future__ import annotations

import argparse

from .checkpoints import add_checkpoint_argument, checkpoint_from
from .defaults import api_defaults
from .games import add_games_arguments, games_from_args, positive_int
from .lists import add_layers_argument, add_list_argument, layers_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_argument(parser)
    parser.add_argument("--out", required=True, help="directory for the collection")
    add_layers_argument(parser, help="layers (default: every layer, 0 to the last block)")
    add_list_argument(parser, "--languages", help="input languages (default: all)")
    add_games_arguments(parser, default_games=1000)
    api = api_defaults("mothello_fast.activations", "collect_parallel")
    parser.add_argument("--shard-games", type=positive_int, default=api["shard_games"],
                        help="games per shard on disk")
    parser.add_argument("--batch-size", type=positive_int, default=api["batch_size"],
                        help="games per forward pass")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..activations import collect_parallel
    from ..checkpoint import load_model
    from ..devices import resolve_device
    from ..model import unwrap

    model, language_set = load_model(checkpoint_from(args), device=resolve_device(args.device))
    layers = layers_from(args.layers)
    if layers is None:
        layers = list(range(unwrap(model).config.n_layers + 1))
    store = collect_parallel(model, language_set, games_from_args(args),
                             languages=args.languages, layers=layers,
                             batch_size=args.batch_size, progress=not args.quiet,
                             out_dir=args.out, shard_games=args.shard_games)
    print(f"wrote {store.path}: {len(store)} positions in {list(store.languages)} at layers "
          f"{store.layers}")
    return 0
