"""The games of the analysing subcommands (probe, align, concepts, eval): one rule for
--data, --games and --seed (mothello_fast/cli/games.py)."""
import json

import numpy as np
import pytest

import mothello_fast as mf
from mothello_fast.cli import build_parser, main
from mothello_fast.cli.games import FRESH_SEED, games_from_args
from mothello_fast.errors import DatasetError

# each command with the arguments it requires besides the games
COMMANDS = {"probe": ["probe", "--checkpoint", "c", "--language", "L0"],
            "align": ["align", "--checkpoint", "c", "--out", "a.json"],
            "concepts": ["concepts", "c", "--out", "o"],
            "eval": ["eval", "c"]}
DEFAULT_GAMES = {"probe": 1000, "align": 1000, "concepts": 500, "eval": 1000}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    games = mf.generate_games(30, seed=7)
    path = tmp_path_factory.mktemp("data") / "games"
    mf.write_games(games, path, shard_size=12)   # several shards
    return path, games


def _games(command, *extra):
    return games_from_args(build_parser().parse_args(COMMANDS[command] + list(extra)))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_dataset_without_games_is_used_whole(command, dataset):
    path, games = dataset
    assert np.array_equal(_games(command, "--data", str(path)), games)


@pytest.mark.parametrize("command", COMMANDS)
def test_games_with_a_dataset_are_its_first_games(command, dataset):
    path, games = dataset
    assert np.array_equal(_games(command, "--data", str(path), "--games", "13"), games[:13])


@pytest.mark.parametrize("command", COMMANDS)
def test_more_games_than_the_dataset_holds_are_refused(command, dataset):
    path, _ = dataset
    with pytest.raises(DatasetError, match="--games 31.*holds only 30"):
        _games(command, "--data", str(path), "--games", "31")


@pytest.mark.parametrize("command", COMMANDS)
def test_without_a_dataset_games_are_fresh_and_seeded(command):
    assert np.array_equal(_games(command, "--games", "5", "--seed", "3"),
                          mf.generate_games(5, seed=3))
    fresh = _games(command)   # the command's own count, drawn with the fresh-games seed
    assert np.array_equal(fresh, mf.generate_games(DEFAULT_GAMES[command], seed=FRESH_SEED))
    assert not np.array_equal(fresh[:5], mf.generate_games(5, seed=0))  # not gen's seed 0


@pytest.mark.parametrize("command", COMMANDS)
def test_a_number_of_games_that_is_not_positive_is_refused(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(COMMANDS[command] + ["--games", "0"])
    assert "'0' is not a positive integer" in capsys.readouterr().err


def test_align_refuses_a_negative_number_of_test_games(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(COMMANDS["align"] + ["--test-games", "-1"])
    assert "'-1' is not an integer >= 0" in capsys.readouterr().err


def test_align_tests_on_fresh_games_by_default(tmp_path, torch_one_thread):
    import torch

    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.model import GPT, GPTConfig

    ls = mf.LanguageSet.from_spec("atomic,atomic")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ls.vocab_size, context_length=ls.context_length,
                          n_layers=1, n_heads=2, d_model=32, d_mlp=64, dropout=0.0))
    save_checkpoint(tmp_path / "ckpt", model=model, language_set=ls)
    out = tmp_path / "align.json"
    assert main(["align", "--checkpoint", str(tmp_path / "ckpt"), "--games", "4",
                 "--layers", "1", "--kind", "linear", "--epochs", "1", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 0
    matrix = json.loads(out.read_text())["matrices"][0]

    def positions(games):
        return int(np.minimum(mf.game_lengths(games), 59).sum())

    # trained on every position of the 4 games, tested on 100 fresh ones (seed + 1)
    assert matrix["n_train"] == positions(mf.generate_games(4, seed=FRESH_SEED))
    assert matrix["n_test"] == positions(mf.generate_games(100, seed=FRESH_SEED + 1))
