"""What a board probe's accuracy must be compared with: baselines and a random-init model.

A probe that reads 61% of the squares right says nothing until it is set beside
what needs no model at all. The baselines here are fitted on the probe's training
positions and scored on its test positions, as the probe is:

- ``chance``: a uniform guess among the 3 classes (1/3);
- ``majority_per_square``: each square's most common state;
- ``majority_per_square_per_move``: each square's most common state after each move
  number (the board fills up as the game goes on: this baseline already knows the
  centre and how full the board is).

and `random_init_model` builds the model a trained one started from: the same shape,
the same seed, no training. Probing it exactly as the trained model is probed says
how much of the probe's accuracy the architecture and the inputs alone give.

>>> import numpy as np
>>> y = np.array([[0, 1], [0, 1], [2, 1]]); moves = np.array([0, 1, 1])
>>> baseline_accuracies(y, moves, y, moves)["majority_per_square"]
0.8333333333333334
"""
from __future__ import annotations

import numpy as np

from .errors import ProbeError

__all__ = ["CHANCE", "majority_per_square", "majority_per_square_per_move",
           "baseline_accuracies", "random_init_model", "BASELINES"]

N_CLASSES = 3
CHANCE = 1.0 / N_CLASSES
BASELINES = ("chance", "majority_per_square", "majority_per_square_per_move")


def _labels(labels, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ProbeError(f"{name} of dtype {labels.dtype} and shape {labels.shape}: expected "
                         "integer classes [n_positions, n_squares]")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise ProbeError(f"{name} holds classes {labels.min()}..{labels.max()}: expected 0..2")
    return labels


def _moves(moves, n: int, name: str) -> np.ndarray:
    moves = np.asarray(moves)
    if moves.shape != (n,) or not np.issubdtype(moves.dtype, np.integer) \
            or (n and moves.min() < 0):
        raise ProbeError(f"{name} of dtype {moves.dtype} and shape {moves.shape}: expected "
                         f"move numbers >= 0, int [{n}]")
    return moves.astype(np.int64)


def _counts(labels: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """int64 [n_groups, n_squares, 3]: how often each square holds each class per group."""
    n_squares = labels.shape[1]
    flat = (groups[:, None] * n_squares + np.arange(n_squares)) * N_CLASSES + labels
    return np.bincount(flat.ravel(), minlength=n_groups * n_squares * N_CLASSES) \
        .reshape(n_groups, n_squares, N_CLASSES)


def majority_per_square(train_labels) -> np.ndarray:
    """Each square's most common class in train_labels (int [N, 64]): int64 [64]
    (ties: the lower class)."""
    labels = _labels(train_labels, "train_labels")
    if len(labels) == 0:
        raise ProbeError("train_labels is empty: expected at least one position")
    return _counts(labels, np.zeros(len(labels), np.int64), 1)[0].argmax(-1)


def majority_per_square_per_move(train_labels, train_moves) -> np.ndarray:
    """Each square's most common class after each move number: int64 [max move + 1, 64]
    from train_labels (int [N, 64]) and train_moves (int [N], the move number of each
    position). A move number no training position has gets `majority_per_square`."""
    labels = _labels(train_labels, "train_labels")
    moves = _moves(train_moves, len(labels), "train_moves")
    if len(labels) == 0:
        raise ProbeError("train_labels is empty: expected at least one position")
    counts = _counts(labels, moves, int(moves.max()) + 1)
    table = counts.argmax(-1)
    unseen = counts.sum((1, 2)) == 0
    table[unseen] = majority_per_square(labels)
    return table


def baseline_accuracies(train_labels, train_moves, test_labels, test_moves) -> dict[str, float]:
    """Accuracy (mean over test positions and squares) of each baseline in `BASELINES`,
    fitted on the training positions (labels int [N, 64], move numbers int [N]) and
    scored on the test ones (int [M, 64], int [M])."""
    train = _labels(train_labels, "train_labels")
    test = _labels(test_labels, "test_labels")
    if train.shape[1] != test.shape[1] or len(test) == 0:
        raise ProbeError(f"train_labels {train.shape} and test_labels {test.shape}: expected "
                         "the same squares and at least one test position")
    test_moves = _moves(test_moves, len(test), "test_moves")
    per_move = majority_per_square_per_move(train, train_moves)
    overall = majority_per_square(train)
    rows = np.minimum(test_moves, len(per_move) - 1)
    predicted = np.where((test_moves < len(per_move))[:, None], per_move[rows], overall)
    return {"chance": CHANCE,
            "majority_per_square": float((test == overall).mean()),
            "majority_per_square_per_move": float((test == predicted).mean())}


def random_init_model(model_config, seed: int, device=None):
    """A `GPT` of `model_config` initialised as `train` initialises one with ``seed``
    (``torch.manual_seed(seed)`` then ``GPT(model_config)``), in eval mode: the trained
    model's step 0. The global torch RNG is left as it was."""
    import torch

    from .devices import resolve_device
    from .errors import ConfigError, check_int
    from .model import GPT

    seed = check_int("seed", seed, least=0, most=2**63 - 1, error=ConfigError)
    device = resolve_device("cpu" if device is None else device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(model_config)
    return model.to(device).eval()
