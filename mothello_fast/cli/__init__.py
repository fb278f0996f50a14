"""The `mothello` command: one subcommand per module in this package.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args)``; its
docstring's first line is the subcommand's help. Subcommands are thin: each
calls one public function of the Python API. Modules are imported only when
their subcommand runs, except for building the parser, so ``mothello gen``
never imports torch.
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

from ..errors import MothelloError

# Subcommand name -> module in this package.
COMMANDS = {
    "gen": "gen",
    "train": "train",
    "eval": "eval",
    "collect": "collect",
    "probe": "probe",
    "concepts": "concepts",
    "align": "align",
    "transfer": "transfer",
    "study": "study",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The subcommands' help: the docstring as written, and every option's default (where
    it has one and its help does not already say it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or not action.option_strings or default in (None, False) \
                or default is argparse.SUPPRESS:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mothello", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = import_module(f".{module_name}", __name__)
        # the docstring's first paragraph: its first sentence, which may wrap
        help_text = " ".join((module.__doc__ or name).strip().split("\n\n")[0].split())
        module.add_arguments(sub.add_parser(name, help=help_text, description=module.__doc__,
                                            formatter_class=HelpFormatter))
    return parser


def in_flags(message: str, parser: argparse.ArgumentParser, aliases=None) -> str:
    """`message` (an error of the Python API) as the command's user reads it: each
    ``name=value`` whose name is one of the command's options (its dest, or an API
    name in `aliases`: name -> flag) written ``--flag value``; a message that already
    names the flag is left as it is, as is a name that `aliases` maps to None."""
    import re

    flags = {action.dest: action.option_strings[-1] for action in parser._actions
             if action.option_strings and action.option_strings[-1].startswith("--")}
    flags.update(aliases or {})
    for name, flag in flags.items():
        if flag is None or flag in message:   # None: a name the command leaves as it is
            continue
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}=(?=\S)", f"{flag} ", message)
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = import_module(f".{COMMANDS[args.command]}", __name__)
    try:
        return module.run(args) or 0
    except (MothelloError, OSError) as exc:   # OSError: a path that cannot be read or written
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        message = in_flags(str(exc), sub.choices[args.command],
                           getattr(module, "API_NAMES", None))
        print(f"mothello {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # what was written is complete: every write is atomic
        print(f"mothello {args.command}: interrupted; run the same command again to resume "
              "(train: add --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
