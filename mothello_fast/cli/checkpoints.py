"""The checkpoint argument of the commands that analyse one: positional everywhere
(``mothello probe CKPT ...``, ``mothello eval CKPT``), ``--checkpoint CKPT`` accepted too.
Give it first when a list option follows: ``--layers 4 6 CKPT`` reads CKPT as a layer."""
from __future__ import annotations

import argparse

HELP = "checkpoint directory, or a run directory (its newest checkpoint)"


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help=HELP)
    parser.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT",
                        help="the same, as an option")


def checkpoint_from(args: argparse.Namespace) -> str:
    """The checkpoint the arguments name, positional or ``--checkpoint`` (one of them)."""
    from ..errors import CheckpointError

    given = [c for c in (args.checkpoint, args.checkpoint_option) if c is not None]
    if not given:
        raise CheckpointError("no checkpoint: expected one, as the first argument or as "
                              "--checkpoint")
    if len(given) == 2 and given[0] != given[1]:
        raise CheckpointError(f"two checkpoints, {given[0]!r} and --checkpoint {given[1]!r}: "
                              "expected one")
    return given[0]
