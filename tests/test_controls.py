"""Baselines against a brute-force loop over squares and move numbers; the random-init
control is the trained model's own initialisation."""
import numpy as np
import pytest
import torch

from mothello_fast.controls import (CHANCE, baseline_accuracies, majority_per_square,
                                    majority_per_square_per_move, random_init_model)
from mothello_fast.errors import ProbeError
from mothello_fast.othello import generate_games, replay


def _positions(games, max_moves=59):
    labels = replay(games)
    moves = np.arange(60)
    keep = (moves < labels.n_moves[:, None]) & (moves < max_moves)
    game, move = np.nonzero(keep)
    return labels.board[game, move], move


def _brute_majority(labels, moves, test_labels, test_moves):
    """Loop over squares (and move numbers): the most common class, ties to the lower."""
    overall = [int(np.argmax(np.bincount(labels[:, s], minlength=3))) for s in range(64)]
    per_move = {}
    for m in np.unique(moves):
        rows = labels[moves == m]
        per_move[m] = [int(np.argmax(np.bincount(rows[:, s], minlength=3))) for s in range(64)]
    right_overall = right_move = 0
    for y, m in zip(test_labels, test_moves):
        table = per_move.get(m, overall)
        for s in range(64):
            right_overall += y[s] == overall[s]
            right_move += y[s] == table[s]
    n = test_labels.size
    return right_overall / n, right_move / n


def test_the_baselines_match_a_brute_force_count_on_real_positions():
    train, train_moves = _positions(generate_games(200, seed=0))
    test, test_moves = _positions(generate_games(30, seed=1))
    result = baseline_accuracies(train, train_moves, test, test_moves)
    overall, per_move = _brute_majority(train, train_moves, test, test_moves)
    assert result["majority_per_square"] == pytest.approx(overall)
    assert result["majority_per_square_per_move"] == pytest.approx(per_move)
    assert result["chance"] == CHANCE
    # knowing the move number helps: the board fills up as the game goes on
    assert per_move > overall + 0.05


def test_a_move_number_without_training_positions_falls_back_to_the_square_majority():
    labels = np.array([[1, 0], [1, 2], [1, 2]])
    moves = np.array([0, 1, 1])
    table = majority_per_square_per_move(labels, moves)
    np.testing.assert_array_equal(table, [[1, 0], [1, 2]])
    result = baseline_accuracies(labels, moves, np.array([[1, 2]]), np.array([5]))
    np.testing.assert_array_equal(majority_per_square(labels), [1, 2])
    assert result["majority_per_square_per_move"] == 1.0


@pytest.mark.parametrize("labels, match", [(np.array([[3, 0]]), "classes"),
                                           (np.zeros(4, dtype=int), "shape"),
                                           (np.zeros((2, 2)), "dtype")])
def test_bad_labels_are_named(labels, match):
    with pytest.raises(ProbeError, match=match):
        majority_per_square(labels)


def test_the_random_init_control_is_the_trained_model_at_step_zero(tmp_path):
    from mothello_fast.checkpoint import load_model
    from mothello_fast.train import TrainConfig, train

    config = TrainConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, batch_size=4,
                         max_steps=1, warmup_steps=0, lr=1e-12, eval_every=0, eval_games=4,
                         checkpoint_every=0, device="cpu", seed=11, dropout=0.0)
    games = generate_games(20, seed=0)
    train(config, train_games=games, val_games=games[:4], out_dir=tmp_path, progress=False)
    trained, language_set = load_model(tmp_path)
    before = torch.get_rng_state()
    control = random_init_model(trained.config, 11)
    assert torch.equal(torch.get_rng_state(), before)   # the global RNG is left alone
    assert not control.training
    for name, weight in trained.state_dict().items():   # one step of lr 1e-12 apart
        torch.testing.assert_close(control.state_dict()[name], weight, atol=1e-9, rtol=0)
    other = random_init_model(trained.config, 12).state_dict()
    assert any(not torch.equal(other[name], w) for name, w in control.state_dict().items())
