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


def test_building_the_command_imports_no_torch():
    """`mothello gen` stays light: the parser reads the API's defaults from its source."""
    import subprocess
    import sys

    code = ("import sys; from mothello_fast.cli import build_parser; "
            "build_parser().parse_args(['gen', '--games', '5', '--seed', '0', '--out', 'x']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command, flag, function, name", [
    ("probe", "--hidden", "mothello_fast.probes.MLPProbe", "hidden"),
    ("probe", "--epochs", "mothello_fast.probes.MLPProbe", "epochs"),
    ("probe", "--lr", "mothello_fast.probes.MLPProbe", "lr"),
    ("probe", "--batch-size", "mothello_fast.probes.MLPProbe", "batch_size"),
    ("probe", "--test-fraction", "mothello_fast.probes.probe_activations", "test_fraction"),
    ("collect", "--shard-games", "mothello_fast.activations.collect_parallel", "shard_games"),
    ("collect", "--batch-size", "mothello_fast.activations.collect_parallel", "batch_size"),
    ("eval", "--batch-size", "mothello_fast.evaluate.evaluate_checkpoint", "batch_size"),
    ("gen", "--shard-size", "mothello_fast.datasets.generate_dataset", "shard_size"),
    ("transfer", "--evaluations", "mothello_fast.transfer.run_transfer", "n_evaluations"),
    ("concepts", "--clusters", "mothello_fast.concepts.default_kmeans", "n_clusters"),
    ("concepts", "--n-init", "mothello_fast.concepts.default_kmeans", "n_init"),
    ("concepts", "--theta-o", "mothello_fast.concepts.concept_report", "theta_o"),
    ("concepts", "--batch-size", "mothello_fast.concepts.concept_report", "batch_size")])
def test_an_option_s_default_is_the_api_s(command, flag, function, name):
    """The defaults read from the source are those the imported API has."""
    import argparse
    import importlib
    import inspect

    module, _, attribute = function.rpartition(".")
    api = getattr(importlib.import_module(module), attribute)
    expected = api().get_params()[name] if inspect.isclass(api) \
        else inspect.signature(api).parameters[name].default
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    assert action.default == expected
