"""List options of the subcommands (``--layers``, ``--languages``): items separated by
commas or spaces, everywhere: ``--layers 4 6``, ``--layers 4,6`` and ``--layers 4, 6`` are
the same list. A checkpoint given after a list (``eval --languages L0 L1 CKPT``) is read
as the checkpoint when it is an existing path and no other is given
(`checkpoints.checkpoint_from`)."""
from __future__ import annotations

import argparse


class _ListAction(argparse.Action):
    """Stores the items of the values split at commas, stripped (a shell splits ``4, 6``
    into ``4,`` and ``6``: the empty piece after a comma is no item)."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = [values] if isinstance(values, str) else values
        items = [part.strip() for value in values for part in value.split(",") if part.strip()]
        if not items:
            parser.error(f"{option_string} {' '.join(values)!r}: no item; expected items "
                         "separated by commas")
        setattr(namespace, self.dest, items)


LIST_OPTIONS = ("layers", "languages")   # the dests of the list options


def add_list_argument(parser: argparse.ArgumentParser, flag: str, *, default=None,
                      help: str) -> None:
    """`flag` taking a list, its items separated by spaces or commas."""
    parser.add_argument(flag, nargs="+", action=_ListAction, default=default,
                        metavar=flag.lstrip("-").upper(),
                        help=f"{help}; separated by spaces or commas")


def add_layers_argument(parser: argparse.ArgumentParser, *, default=None, help: str) -> None:
    add_list_argument(parser, "--layers", default=default,
                      help=f"{help}: integers (0 the embeddings, l the output of block l) or "
                           "hook names")


def layers_from(items: list[str] | None) -> list[int | str] | None:
    """The `--layers` items as `resolve_layers` takes them: digits as integers."""
    return None if items is None else [int(x) if x.isdigit() else x for x in items]
