"""mothello-fast: a fast toolkit for cross-lingual alignment and transfer on mOthello.

The engine (`othello`) and datasets need only numpy; everything that needs torch
is imported on first use, so ``import mothello_fast`` stays light.
"""
from importlib import import_module

from .errors import (CheckpointError, DatasetError, GameArrayError, IllegalMoveError,
                     InvalidSquareError, LanguageError, MothelloError)
from .othello import (BLACK, EMPTY, GAME_PLIES, PLAYABLE_SQUARES, START_SQUARES, WHITE, Board,
                      Replay, game_lengths, generate_games, parse_moves, parse_square, perft,
                      relative_board, replay, replay_bitboards, square_name, validate_games)
from .datasets import (GameDataset, deduplicate, generate_dataset, load_games, split_games,
                       write_games)

__version__ = "0.1.0"

# Public names that live in modules importing torch (or other heavy libraries):
# name -> module, resolved on first attribute access.
_LAZY = {
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mothello_fast' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
