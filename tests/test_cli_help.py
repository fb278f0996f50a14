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
