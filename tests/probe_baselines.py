"""What a board probe must beat: accuracy of guessing each square's most frequent class."""
import numpy as np

from mothello_fast.othello import replay


def majority_baseline(games: np.ndarray, max_moves: int = 59) -> float:
    """Accuracy, over the boards after the first `max_moves` moves of `games` (int8 [n, 60]),
    of predicting each square's most frequent class among those boards."""
    labels = replay(games)
    moves = np.arange(games.shape[1])
    boards = labels.board[(moves < labels.n_moves[:, None]) & (moves < max_moves)]
    majority = np.array([np.bincount(boards[:, s], minlength=3).argmax() for s in range(64)])
    return float((boards == majority).mean())
