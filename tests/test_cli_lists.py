"""The list options of the subcommands: items separated by commas or spaces everywhere."""
import pytest

from mothello_fast.cli import build_parser
from mothello_fast.cli.lists import layers_from

COMMAS = (["4,6,blocks.1.hook_resid_mid"], ["4, 6 ,blocks.1.hook_resid_mid"])
SPACES = (["4", "6", "blocks.1.hook_resid_mid"], ["4,", "6", ",blocks.1.hook_resid_mid"],
          ["4, 6", "blocks.1.hook_resid_mid"])
COMMANDS = {"probe": ["probe", "--checkpoint", "CK", "--language", "L0"],
            "align": ["align", "--checkpoint", "CK", "--out", "a.json"],
            "concepts": ["concepts", "CK", "--out", "d"], "eval": ["eval", "CK"],
            "collect": ["collect", "CK", "--out", "d"]}


@pytest.mark.parametrize("command", ["probe", "align", "concepts", "collect"])
def test_layers_are_the_same_list_however_separated(command):
    for spelling in COMMAS + SPACES:
        args = build_parser().parse_args(COMMANDS[command] + ["--layers", *spelling])
        assert layers_from(args.layers) == [4, 6, "blocks.1.hook_resid_mid"], spelling


@pytest.mark.parametrize("command", ["align", "concepts", "eval"])
def test_languages_are_the_same_list_however_separated(command):
    parser = build_parser()
    spellings = [["L0,L2"], ["L0, L2"], ["L0", "L2"], ["L0,", "L2"]]
    for spelling in spellings:
        assert parser.parse_args(COMMANDS[command] + ["--languages", *spelling]).languages \
            == ["L0", "L2"]
    assert parser.parse_args(COMMANDS[command]).languages is None   # every input language


@pytest.mark.parametrize("argv", [["eval", "--languages", "L0,L1", "CK"],
                                  ["eval", "--languages", "L0", "L1", "CK"],
                                  ["concepts", "--layers", "1", "4", "CK", "--out", "d"],
                                  ["concepts", "--layers", "1,4", "CK", "--out", "d"]])
def test_a_checkpoint_after_a_list_option_is_the_checkpoint(argv, tmp_path):
    from mothello_fast.cli.checkpoints import checkpoint_from

    checkpoint = str(tmp_path)   # an existing path
    args = build_parser().parse_args([checkpoint if a == "CK" else a for a in argv])
    assert checkpoint_from(args) == checkpoint
    assert (args.languages or args.layers) in (["L0", "L1"], ["1", "4"])


def test_the_probe_layer_default_is_layer_six(tmp_path, capsys):
    import json

    import torch

    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.cli import main
    from mothello_fast.languages import LanguageSet
    from mothello_fast.model import GPT, GPTConfig

    ls = LanguageSet.from_spec("atomic")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ls.vocab_size, context_length=ls.context_length,
                          n_layers=6, n_heads=2, d_model=16, d_mlp=32))
    save_checkpoint(tmp_path / "ckpt", model=model, language_set=ls)
    assert main(["probe", str(tmp_path / "ckpt"), "--language", "L0", "--games", "4",
                 "--kind", "linear", "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]).keys() == {"6"}


def test_a_list_of_no_item_is_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(COMMANDS["probe"] + ["--layers", ",", " "])
    assert exit_info.value.code == 2
    assert "--layers ',  ': no item" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["probe", "align", "concepts", "eval"])
def test_the_checkpoint_is_positional_everywhere_and_an_option_too(command):
    from mothello_fast.cli.checkpoints import checkpoint_from

    rest = {"probe": ["--language", "L0"], "align": ["--out", "a.json"],
            "concepts": ["--out", "d"], "eval": []}[command]
    for spelling in (["CK"], ["--checkpoint", "CK"], ["CK", "--checkpoint", "CK"]):
        args = build_parser().parse_args([command, *spelling, *rest])
        assert checkpoint_from(args) == "CK"


def test_no_checkpoint_or_two_of_them_are_named(capsys):
    from mothello_fast.cli import main

    assert main(["eval", "--games", "1"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["eval", "A", "--checkpoint", "B", "--games", "1"]) == 2
    assert "two checkpoints, 'A' and --checkpoint 'B'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["concepts", "CK", "--clusters", "0", "--out", "o"], "--clusters 0"),
    (["concepts", "CK", "--neighbors", "0", "--out", "o"], "--neighbors 0"),
    (["probe", "CK", "--language", "L0", "--epochs", "0"], "--epochs 0"),
    (["probe", "CK", "--language", "L0", "--test-fraction", "2"], "--test-fraction 2")])
def test_errors_name_the_flags_not_the_python_arguments(argv, flag, tmp_path, capsys):
    from mothello_fast.cli import main

    assert main([str(tmp_path / a) if a == "CK" else a for a in argv]) == 2
    assert flag in capsys.readouterr().err
