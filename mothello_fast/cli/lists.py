"""List options of the subcommands (``--layers``, ``--languages``): items separated by
commas, and where no positional argument follows, by spaces too: ``--layers 4 6``,
``--layers 4,6`` and ``--layers 4, 6`` are the same list. A command with a positional
argument (``eval CKPT``, ``concepts CKPT``) takes one comma-separated value: a
space-separated list would swallow the positional (``eval --languages L0 L1 CKPT``)."""
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


def add_list_argument(parser: argparse.ArgumentParser, flag: str, *, default=None,
                      help: str, spaces: bool = True) -> None:
    """`flag` taking a list; `spaces`: also as separate arguments (not for a command with
    a positional argument, see the module docstring)."""
    parser.add_argument(flag, nargs="+" if spaces else None, action=_ListAction,
                        default=default, metavar=flag.lstrip("-").upper(),
                        help=f"{help}; separated by {'spaces or ' if spaces else ''}commas")


def add_layers_argument(parser: argparse.ArgumentParser, *, default=None, help: str,
                        spaces: bool = True) -> None:
    add_list_argument(parser, "--layers", default=default, spaces=spaces,
                      help=f"{help}: integers (0 the embeddings, l the output of block l) or "
                           "hook names")


def layers_from(items: list[str] | None) -> list[int | str] | None:
    """The `--layers` items as `resolve_layers` takes them: digits as integers."""
    return None if items is None else [int(x) if x.isdigit() else x for x in items]
