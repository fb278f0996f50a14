"""The command's help: every subcommand's summary whole, its examples as written."""
import re

import pytest

from mothello_fast.cli import COMMANDS, build_parser


def test_the_summary_of_every_subcommand_is_a_whole_sentence(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    listing = capsys.readouterr().out.split("COMMAND\n", 1)[1].split("\noptions:")[0]
    entries = re.split(r"\n    (?=\S)", "\n" + listing)[1:]    # one per subcommand
    assert [e.split()[0] for e in entries] == list(COMMANDS)
    for entry in entries:
        assert " ".join(entry.split()).endswith("."), entry   # not cut at a line end


@pytest.mark.parametrize("command", ["probe", "align", "transfer"])
def test_a_wrapped_example_keeps_its_line_continuation(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    example = capsys.readouterr().out.split("Example:\n", 1)[1]
    first, second = example.splitlines()[:2]
    assert first.rstrip().endswith("\\") and second.startswith("        ")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_with_a_default_shows_it(command):
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    page = sub.choices[command].format_help()
    for action in sub.choices[command]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        if action.default not in (None, False):
            shown = ",".join(map(str, action.default)) if isinstance(action.default, list) \
                else str(action.default)
            assert "default" in action.help or f"(default: {shown})" in " ".join(page.split()), \
                (command, action.option_strings[0])
