"""What an analysing subcommand reads: a checkpoint run over games, or a collection of
activations already made (``--activations DIR``: `mothello collect`, or
``ParallelActivations.save`` from any model's hidden states). One of the two."""
from __future__ import annotations

import argparse

from .checkpoints import add_checkpoint_argument


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint (positional or ``--checkpoint``) and ``--activations DIR``."""
    add_checkpoint_argument(parser)
    parser.add_argument("--activations", metavar="DIR", default=None,
                        help="analyse this collection of parallel activations (mothello "
                             "collect, or ParallelActivations.save from any model) instead "
                             "of a checkpoint")


def uses_activations(args: argparse.Namespace) -> bool:
    """Whether the command reads ``--activations``; a checkpoint too is refused."""
    from ..errors import MothelloError

    if args.activations is None:
        return False
    if args.checkpoint is not None or args.checkpoint_option is not None:
        raise MothelloError(f"a checkpoint and --activations {args.activations!r}: expected "
                            "one of them")
    return True


def collection_from(path: str, layers=None, *, flag: str = "--activations"):
    """The `ParallelActivations` of the collection at `path` (at `layers`, default all)."""
    from ..activation_store import ParallelStore, load_activations
    from ..errors import DatasetError

    store = load_activations(path)
    if not isinstance(store, ParallelStore):
        raise DatasetError(f"{flag} {path!r} holds one language's activations "
                           "(collect_activations): expected a parallel collection (mothello "
                           "collect, collect_parallel or ParallelActivations.save)")
    return store.load(layers)
