"""The checkpoint argument of the commands that analyse one: positional everywhere
(``mothello probe CKPT ...``, ``mothello eval CKPT``), ``--checkpoint CKPT`` accepted too.
After a list option (``--layers 4 6 CKPT``) the parser reads CKPT as a list item;
`checkpoint_from` takes it back when it is an existing path and no checkpoint is given."""
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

    from pathlib import Path

    from .lists import LIST_OPTIONS

    given = [c for c in (args.checkpoint, args.checkpoint_option) if c is not None]
    for dest in LIST_OPTIONS:   # a checkpoint after a list option, read as its last item
        items = getattr(args, dest, None)
        if not given and items and len(items) > 1 and Path(items[-1]).exists():
            args.checkpoint = items.pop()
            given = [args.checkpoint]
    if not given:
        raise CheckpointError("no checkpoint: expected one, as the first argument or as "
                              "--checkpoint")
    if len(given) == 2 and given[0] != given[1]:
        raise CheckpointError(f"two checkpoints, {given[0]!r} and --checkpoint {given[1]!r}: "
                              "expected one")
    return given[0]
