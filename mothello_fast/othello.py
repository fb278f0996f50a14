"""Othello: squares, the `Board`, and batch functions over games.

A **square** is 0..63, row-major, named by row letter a..h then column 1..8
(othello_world's convention): ``d5`` is ``8*3 + 4 = 28``. A **game** is a row
of 60 ``int8`` squares, ``-1`` after the game ends; passes are implicit (when
the side to move has no legal move, the other side plays). Colours are
``EMPTY = 0``, ``BLACK = 1``, ``WHITE = 2``; black moves first.

>>> board = Board.from_moves("f5 d6")
>>> board.turn == BLACK, board.legal_moves
(True, [18, 19, 20, 21, 22])
>>> square_name(28), parse_square("d5")
('d5', 28)

The batch functions (`generate_games`, `replay`, `perft`) run in the
compiled core (csrc/othello.h) without the GIL.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import _engine
from .errors import (GameArrayError, IllegalMoveError, InvalidSquareError, MothelloError,
                     check_int)
from .parallel import check_fits_in_memory, resolve_threads, run_in_chunks

__all__ = [
    "EMPTY", "BLACK", "WHITE", "GAME_PLIES", "PLAYABLE_SQUARES", "START_SQUARES",
    "square_name", "parse_square", "parse_moves", "Board", "generate_games",
    "validate_games", "Replay", "replay", "replay_bitboards", "next_player", "relative_board",
    "perft", "game_lengths", "check_seed", "check_games_layout", "check_game_squares",
    "PLAYABLE_LOOKUP",
]

EMPTY, BLACK, WHITE = 0, 1, 2
GAME_PLIES = 60
START_SQUARES = (27, 28, 35, 36)
#: The 60 squares a move can be played on, ascending.
PLAYABLE_SQUARES = tuple(s for s in range(64) if s not in START_SQUARES)

_ROWS = "abcdefgh"
_COLOUR_NAMES = {BLACK: "black", WHITE: "white"}


def square_name(square: int) -> str:
    """Name of a square: ``square_name(28) == 'd5'``."""
    square = check_int("square", square, least=0, most=63, error=InvalidSquareError)
    return f"{_ROWS[square // 8]}{square % 8 + 1}"


def parse_square(name: str | int) -> int:
    """Square of a name (``'d5'`` -> 28, case-insensitive); an int in 0..63 passes through."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, (bool, np.bool_)):
        square_name(int(name))  # validates
        return int(name)
    if isinstance(name, str):
        text = name.strip().lower()
        if len(text) == 2 and text[0] in _ROWS and text[1] in "12345678":
            return 8 * _ROWS.index(text[0]) + int(text[1]) - 1
    raise InvalidSquareError(f"square {name!r} is not a name a1..h8 (row letter, column digit) "
                             "or an integer in 0..63")


def parse_moves(moves: str | Iterable[str | int]) -> list[int]:
    """Squares from ``'c4 c3 c2'``, ``'c4,c3,c2'`` or an iterable of names / squares."""
    if isinstance(moves, str):
        moves = moves.replace(",", " ").split()
    elif not isinstance(moves, Iterable):
        raise InvalidSquareError(f"moves={moves!r}: expected names ('c4 c3 c2') or an iterable "
                                 "of squares")
    return [parse_square(m) for m in moves]


def _squares_of(bitboard: int) -> list[int]:
    return [s for s in range(64) if bitboard >> s & 1]


def _names(squares: Iterable[int]) -> str:
    return " ".join(square_name(s) for s in squares) or "(none)"


class Board:
    """An Othello position with its move history, modelled on python-chess.

    >>> board = Board()
    >>> board.push("c4"); board.push("c3")
    >>> board.pop()
    18
    >>> board.ply, board.turn == WHITE, board.score()
    (1, True, (4, 1))
    """

    def __init__(self) -> None:
        self._black, self._white = _engine.START
        self._turn = BLACK
        self._stack: list[tuple[int, int, int, int]] = []  # (square, black, white, turn) before it

    @classmethod
    def from_moves(cls, moves: str | Iterable[str | int]) -> Board:
        """The position after `moves` (names or squares; a game row's ``-1`` padding ends it,
        and only more ``-1`` may follow it)."""
        board = cls()
        if isinstance(moves, str):
            moves = moves.replace(",", " ").split()
        elif not isinstance(moves, Iterable):
            raise InvalidSquareError(f"moves={moves!r}: expected names ('c4 c3 c2') or an "
                                     "iterable of squares")
        ended = False
        for move in moves:
            if isinstance(move, (int, np.integer)) and move == -1:
                ended = True
            elif ended:
                raise InvalidSquareError(f"move {move!r} follows the -1 that ends the game: "
                                         "expected only -1 after it")
            else:
                board.push(move)
        return board

    def _sides(self) -> tuple[int, int]:
        return (self._black, self._white) if self._turn == BLACK else (self._white, self._black)

    @property
    def turn(self) -> int:
        """``BLACK`` or ``WHITE``: the side to move (passes already applied)."""
        return self._turn

    @property
    def ply(self) -> int:
        """Number of moves played."""
        return len(self._stack)

    @property
    def moves(self) -> list[int]:
        """The squares played so far, in order."""
        return [entry[0] for entry in self._stack]

    @property
    def legal_moves(self) -> list[int]:
        """Legal squares for the side to move, ascending (empty when the game is over)."""
        return _squares_of(_engine.legal(*self._sides()))

    def is_legal(self, square: int | str) -> bool:
        return bool(_engine.legal(*self._sides()) >> parse_square(square) & 1)

    def is_game_over(self) -> bool:
        return _engine.legal(*self._sides()) == 0

    def push(self, square: int | str) -> None:
        """Play `square` for the side to move; the turn then passes as the rules say."""
        square = parse_square(square)
        me, opp = self._sides()
        if not _engine.legal(me, opp) >> square & 1:
            raise IllegalMoveError(
                f"move {square_name(square)!r} ({square}) is not legal at ply {self.ply}; "
                f"legal: {_names(self.legal_moves)}")
        self._stack.append((square, self._black, self._white, self._turn))
        flipped = _engine.flips(me, opp, square)
        me |= flipped | (1 << square)
        opp &= ~flipped
        if self._turn == BLACK:
            self._black, self._white = me, opp
        else:
            self._white, self._black = me, opp
        # The opponent moves next unless it has no legal move and we do (implicit pass).
        if _engine.legal(opp, me) or not _engine.legal(me, opp):
            self._turn = WHITE if self._turn == BLACK else BLACK

    def pop(self) -> int:
        """Take back the last move and return its square."""
        if not self._stack:
            raise IllegalMoveError("pop: no move to take back (the board is at its start)")
        square, self._black, self._white, self._turn = self._stack.pop()
        return square

    def piece_at(self, square: int | str) -> int:
        """``EMPTY``, ``BLACK`` or ``WHITE``."""
        bit = 1 << parse_square(square)
        return BLACK if self._black & bit else WHITE if self._white & bit else EMPTY

    def board(self) -> np.ndarray:
        """Colours of the 64 squares: ``int8 [64]``, 0 empty, 1 black, 2 white."""
        out = np.zeros(64, dtype=np.int8)
        out[_squares_of(self._black)] = BLACK
        out[_squares_of(self._white)] = WHITE
        return out

    def score(self) -> tuple[int, int]:
        """Disc counts ``(black, white)``."""
        return bin(self._black).count("1"), bin(self._white).count("1")

    def winner(self) -> int | None:
        """``BLACK`` or ``WHITE`` once the game is over with more discs; ``None`` for a draw
        or a game still going."""
        if not self.is_game_over():
            return None
        black, white = self.score()
        return BLACK if black > white else WHITE if white > black else None

    def copy(self) -> Board:
        other = Board.__new__(Board)
        other._black, other._white, other._turn = self._black, self._white, self._turn
        other._stack = list(self._stack)
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Board) and (self._black, self._white, self._turn) == \
            (other._black, other._white, other._turn)

    def __hash__(self) -> int:
        return hash((self._black, self._white, self._turn))

    def __str__(self) -> str:
        """Diagram: rows a..h down, columns 1..8 across; X black, O white, * legal."""
        legal = _engine.legal(*self._sides())
        lines = ["  1 2 3 4 5 6 7 8"]
        for row in range(8):
            cells = []
            for col in range(8):
                bit = 1 << (8 * row + col)
                cells.append("X" if self._black & bit else "O" if self._white & bit
                             else "*" if legal & bit else ".")
            lines.append(f"{_ROWS[row]} " + " ".join(cells))
        state = "game over" if not legal else f"{_COLOUR_NAMES[self._turn]} to move"
        black, white = self.score()
        lines.append(f"{state}; black {black}, white {white}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Board.from_moves({_names(self.moves) if self._stack else ''!r})"


def check_seed(seed) -> int:
    """`seed` as an int if it is one in 0..2**64-1 (the engine's range), else
    `GameArrayError`."""
    return check_int("seed", seed, least=0, most=2**64 - 1, error=GameArrayError)


def _check_game_range(first_game, n: int) -> int:
    """`first_game` checked so that game numbers ``first_game .. first_game + n - 1`` fit
    in int64 (the engine's stream key)."""
    first_game = check_int("first_game", first_game, least=0, error=GameArrayError)
    if first_game + max(int(n), 1) > 2**63:
        raise GameArrayError(f"first_game={first_game!r} with {n} games: game numbers "
                             "first_game + i must fit in int64 (first_game + n at most 2**63)")
    return first_game


def generate_games(n: int, *, seed: int, threads: int | None = None,
                   prefix: str | Iterable[str | int] | None = None, first_game: int = 0,
                   progress: bool = False) -> np.ndarray:
    """`n` random legal games: ``int8 [n, 60]``, ``-1`` after each game's end.

    Each move is drawn uniformly among the legal moves. Game ``i`` comes from
    its own random stream keyed by ``(seed, first_game + i)``, so the result does
    not depend on `threads`, and ``generate_games(n, seed=s, first_game=k)`` is
    rows ``k..k+n`` of a larger call with the same seed. `prefix` forces the
    opening (``"c4 c3 c2"``): every game starts with it.

    >>> games = generate_games(3, seed=0, prefix="c4 c3")
    >>> games.shape, games.dtype.name, [square_name(s) for s in games[0, :2]]
    ((3, 60), 'int8', ['c4', 'c3'])
    """
    n = check_int("n", n, least=0, error=GameArrayError)
    # numpy would allocate them lazily, and the system kill the process while filling them
    check_fits_in_memory(f"n={n} games", n * GAME_PLIES, error=GameArrayError,
                         hint=": generate them in parts (generate_dataset writes shards)")
    seed = check_seed(seed)
    first_game = _check_game_range(first_game, n)
    threads = resolve_threads(threads)
    # an opening is moves only: no -1 (which would end it), each legal in turn
    opening = np.asarray(Board.from_moves(parse_moves(prefix)).moves if prefix is not None
                         else [], dtype=np.int8)
    out = np.empty((int(n), GAME_PLIES), dtype=np.int8)

    def work(start: int, stop: int) -> None:
        _engine.generate_into(out[start:stop], seed, first_game + start, opening)

    run_in_chunks(int(n), threads, work, progress, "generating games")
    return out


# The one rule for a games array, shared with `LanguageSet._check_games` (languages.py),
# which applies it to torch tensors on their own device as well: an integer array of
# shape [n, 60] whose entries are -1 or one of the 60 playable squares, -1 only as the
# padding after a game's end. Legality is `replay`'s to check.
PLAYABLE_LOOKUP = np.zeros(65, dtype=bool)    # index square + 1: -1 and the playable squares
PLAYABLE_LOOKUP[[0, *(s + 1 for s in PLAYABLE_SQUARES)]] = True
_BAD_BYTE = np.ones(256, dtype=bool)          # int8 squares seen as bytes: -1 is 255
_BAD_BYTE[[*PLAYABLE_SQUARES, 255]] = False


def check_games_layout(integer: bool, dtype, shape, name: str) -> None:
    """`GameArrayError` unless a games array of `dtype` (`integer` tells whether it is an
    integer dtype) has the shape ``(n_games, 60)``."""
    if not integer:
        raise GameArrayError(f"{name} has dtype {dtype}; expected an integer dtype (int8)")
    if len(shape) != 2 or shape[1] != GAME_PLIES:
        raise GameArrayError(f"{name} has shape {tuple(shape)}; expected (n_games, {GAME_PLIES})")


def _first_true(mask) -> tuple[int, int]:
    """``(row, column)`` of the first True of a 2-d numpy array or torch tensor."""
    if not isinstance(mask, np.ndarray):
        mask = mask.detach().cpu().numpy()
    g, p = np.argwhere(mask)[0]
    return int(g), int(p)


def check_game_squares(wide, playable, name: str) -> None:
    """The entries of the rule above, on `wide` (``int64 [n, 60]``, numpy or a torch tensor)
    with `playable` (`PLAYABLE_LOOKUP`, as an array or tensor like `wide`): `InvalidSquareError`
    at the first entry that is not -1 or a playable square, `GameArrayError` at the first
    square after a -1. On a device this reads two flags back, not the games."""
    bad = (wide < -1) | (wide > 63)
    if not bool(bad.any()):
        bad = ~playable[wide + 1]
    if bool(bad.any()):
        g, p = _first_true(bad)
        raise InvalidSquareError(f"{name}[{g}, {p}] = {int(wide[g, p])}: expected -1 or a "
                                 "playable square 0..63 (not a centre square, 27 28 35 36)")
    after = (wide[:, 1:] >= 0) & (wide[:, :-1] < 0)
    if bool(after.any()):
        g, p = _first_true(after)
        _, end = _first_true(wide[g:g + 1, :p + 1] < 0)
        raise GameArrayError(f"{name}[{g}, {p + 1}] = {int(wide[g, p + 1])} comes after the "
                             f"game's end (-1 at ply {end}); expected -1 to the end of the row")


def validate_games(games, *, name: str = "games") -> np.ndarray:
    """Check that `games` is an integer array ``[n, 60]`` of playable squares and -1
    (only after a game's end) and return it as C-contiguous ``int8`` (no copy when it
    already is). `GameArrayError` for a wrong dtype or shape or a square after the end,
    `InvalidSquareError` for an entry that is not -1 or a playable square, each naming
    the entry. Legality is checked by `replay`."""
    arr = np.asarray(games)
    check_games_layout(arr.dtype.kind in "iu", arr.dtype, arr.shape, name)
    if arr.dtype != np.int8 and (arr.size == 0 or (arr.min() >= -1 and arr.max() <= 63)):
        arr = arr.astype(np.int8)          # in range: narrowed, then checked as int8 games
    if arr.dtype.kind == "u":              # out of range (as int64, 2**64 - 1 would be -1)
        check_game_squares(arr, PLAYABLE_LOOKUP, name)
    if arr.dtype == np.int8 and not _BAD_BYTE[arr.view(np.uint8)].any():
        negative = arr < 0                 # one lookup per entry on the common path
        if not (negative[:, :-1] > negative[:, 1:]).any():
            return np.ascontiguousarray(arr)
    check_game_squares(arr.astype(np.int64), PLAYABLE_LOOKUP, name)
    return np.ascontiguousarray(arr, dtype=np.int8)


def _raise_illegal(games: np.ndarray, status: np.ndarray) -> None:
    game = int(np.flatnonzero(status < 0)[0])
    ply = int(-status[game] - 1)
    row = games[game]
    square = int(row[ply])   # a move after the end was refused first (validate_games)
    board = Board.from_moves(row[:ply].tolist())
    raise IllegalMoveError(f"game {game}, ply {ply}: move {square_name(square)!r} ({square}) is "
                           f"not legal; legal: {_names(board.legal_moves)}")


@dataclass(frozen=True)
class Replay:
    """Per-ply labels of replayed games; index ``[g, i]`` is the position after move ``i``
    of game ``g``. Entries after a game's end are zero.

    Attributes:
        board: ``int8 [n, 60, 64]``, 0 empty, 1 black, 2 white.
        player: ``uint8 [n, 60]``, who played move i (1 black, 2 white; 0 after the end).
        legal_next: ``bool [n, 60, 64]``, legal moves of the side to move after move i.
        flipped: ``bool [n, 60, 64]``, discs flipped by move i.
        n_moves: ``int64 [n]``, moves in each game.
    """
    board: np.ndarray
    player: np.ndarray
    legal_next: np.ndarray
    flipped: np.ndarray
    n_moves: np.ndarray

    @property
    def next_player(self) -> np.ndarray:
        """``uint8 [n, 60]``: the side to move after move i (see `next_player`)."""
        return next_player(self.player, self.board)

    def relative_board(self) -> np.ndarray:
        """``int8 [n, 60, 64]``: 0 empty, 1 mine, 2 theirs, relative to the side to move."""
        return relative_board(self.board, self.next_player)


def next_player(player: np.ndarray, board: np.ndarray | None = None) -> np.ndarray:
    """Side to move after each move: ``uint8 [n, 60]``, 0 after the end.

    player: ``uint8 [n, 60]`` who played each move (see `Replay`); board: ``int8 [n, 60, 64]``
    the positions. Within a row, the side to move is the player of the next move. After
    a row's last move it is the opponent, unless, given `board`, the opponent has no
    legal move and the player has (a row cut just before a pass); when the game is over
    it is the opponent by convention. Without `board` the opponent is assumed there.
    """
    player = _check_labels("player", player, 2, (0, 1, 2))
    if board is not None:
        board = _check_labels("board", board, 3, (EMPTY, BLACK, WHITE))
        if board.shape != (*player.shape, 64):
            raise GameArrayError(f"board has shape {board.shape}: expected the player's "
                                 f"{player.shape} + (64,)")
    following = np.zeros_like(player)
    following[:, :-1] = player[:, 1:]
    opponent = np.where(player > 0, 3 - player.astype(np.int16), 0).astype(player.dtype)
    result = np.where(following > 0, following, opponent)
    if board is None:
        return result
    games, plies = np.nonzero((player > 0) & (following == 0))   # each row's last move
    me = _bitboards(np.asarray(board)[games, plies] == player[games, plies, None])
    opp = _bitboards(np.asarray(board)[games, plies] == opponent[games, plies, None])
    opp_legal, my_legal = np.empty_like(me), np.empty_like(me)
    _engine.legal_into(opp, me, opp_legal)
    _engine.legal_into(me, opp, my_legal)
    passes = (opp_legal == 0) & (my_legal != 0)
    result[games[passes], plies[passes]] = player[games[passes], plies[passes]]
    return result


def _bitboards(squares: np.ndarray) -> np.ndarray:
    """``bool [m, 64]`` -> ``uint64 [m]`` (bit s set where square s is)."""
    packed = np.packbits(np.ascontiguousarray(squares, dtype=bool), axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").reshape(-1).astype(np.uint64)


def relative_board(board: np.ndarray, to_move: np.ndarray) -> np.ndarray:
    """Relative labels from absolute ones: ``board`` ``int8 [..., 64]`` (0 empty, 1 black,
    2 white) and ``to_move`` ``[...]`` (1 or 2) -> ``int8 [..., 64]``, 0 empty, 1 mine, 2 theirs."""
    board = _check_labels("board", board, None, (EMPTY, BLACK, WHITE))
    to_move = _check_labels("to_move", to_move, None, (0, BLACK, WHITE))
    if board.shape != (*to_move.shape, 64):
        raise GameArrayError(f"board has shape {board.shape}: expected to_move's "
                             f"{to_move.shape} + (64,)")
    mine = board == to_move[..., None]
    return np.where(board == EMPTY, 0, np.where(mine, 1, 2)).astype(np.int8)


def _check_labels(name: str, values, ndim: int | None, allowed: tuple[int, ...]) -> np.ndarray:
    """`values` as an integer array (of `ndim` dimensions when given) holding only
    `allowed` values, else `GameArrayError` naming the first value that is not."""
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer) or (ndim is not None and array.ndim != ndim):
        raise GameArrayError(f"{name} of dtype {array.dtype} and shape {array.shape}: expected "
                             f"integers{f' of {ndim} dimensions' if ndim else ''}")
    low, high = min(allowed), max(allowed)
    if array.size and low <= array.min() and array.max() <= high \
            and len(allowed) == high - low + 1:   # the usual case: two reductions, no mask
        return array
    bad = ~np.isin(array, allowed)
    if bad.any():
        raise GameArrayError(f"{name} holds {array[bad].flat[0].item()!r} at "
                             f"{tuple(int(i) for i in np.argwhere(bad)[0])}: expected one of "
                             f"{list(allowed)}")
    return array


_REPLAY_FIELDS = (("board", np.int8, (GAME_PLIES, 64)), ("player", np.uint8, (GAME_PLIES,)),
                  ("legal_next", np.bool_, (GAME_PLIES, 64)), ("flipped", np.bool_, (GAME_PLIES, 64)),
                  ("n_moves", np.int64, ()))


def _check_replay_out(out, n: int) -> None:
    """`GameArrayError` unless `out` is a `Replay` of C-contiguous arrays of the dtypes and
    shapes `replay` writes, for at least `n` games."""
    if not isinstance(out, Replay):
        raise GameArrayError(f"out: expected a Replay, got {type(out).__name__}")
    for field, dtype, shape in _REPLAY_FIELDS:
        arr = getattr(out, field)
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape[1:] != shape \
                or arr.ndim != 1 + len(shape) or not arr.flags.c_contiguous \
                or not arr.flags.writeable:
            got = (f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray)
                   else type(arr).__name__)
            raise GameArrayError(f"out.{field} is {got}; expected a writable C-contiguous "
                                 f"{np.dtype(dtype)} array of shape {('n', *shape)}")
        if len(arr) < n:
            raise GameArrayError(f"out holds {len(arr)} games (out.{field}); expected at least {n}")


def replay(games, *, threads: int | None = None, out: Replay | None = None) -> Replay:
    """Replay ``games`` (``int8 [n, 60]``) and return every per-ply label (see `Replay`).

    `out`, a `Replay` of at least ``n`` games (e.g. from an earlier call), is filled
    in place and its first ``n`` rows returned: streaming over batches that way skips
    allocating (and first touching) ~11.5 KB of fresh memory per game.

    Raises `IllegalMoveError` naming the game, the ply and the move at the first
    illegal move, and `GameArrayError` / `InvalidSquareError` for a bad array.
    """
    games = validate_games(games)
    n = games.shape[0]
    if out is None:
        out = Replay(*(np.empty((n, *shape), dtype=dtype) for _, dtype, shape in _REPLAY_FIELDS))
    else:
        _check_replay_out(out, n)
    result = Replay(*(getattr(out, f)[:n] for f, _, _ in _REPLAY_FIELDS))
    legal_next, flipped = result.legal_next.view(np.uint8), result.flipped.view(np.uint8)

    def work(start: int, stop: int) -> None:
        _engine.replay_labels_into(games[start:stop], result.board[start:stop],
                                   result.player[start:stop], legal_next[start:stop],
                                   flipped[start:stop], result.n_moves[start:stop])

    run_in_chunks(n, resolve_threads(threads), work, False, "replaying games")
    if n and result.n_moves.min() < 0:
        _raise_illegal(games, result.n_moves)
    return result


def replay_bitboards(games, *, threads: int | None = None) -> dict[str, np.ndarray]:
    """Compact replay: ``uint64 [n, 60]`` bitboards ``black``, ``white``, ``legal_next``,
    ``flipped`` plus ``player`` ``uint8 [n, 60]`` and ``n_moves`` ``int64 [n]``
    (the same content as `replay`, 8x smaller)."""
    games = validate_games(games)
    n = games.shape[0]
    out = {k: np.empty((n, GAME_PLIES), dtype=np.uint64)
           for k in ("black", "white", "legal_next", "flipped")}
    out["player"] = np.empty((n, GAME_PLIES), dtype=np.uint8)
    status = np.empty(n, dtype=np.int64)

    def work(start: int, stop: int) -> None:
        _engine.replay_bitboards_into(games[start:stop], *(out[k][start:stop] for k in
                                      ("black", "white", "player", "legal_next", "flipped")),
                                      status[start:stop])

    run_in_chunks(n, resolve_threads(threads), work, False, "replaying games")
    if n and status.min() < 0:
        _raise_illegal(games, status)
    out["n_moves"] = status
    return out


def game_lengths(games) -> np.ndarray:
    """Number of squares (entries >= 0) in each game: ``int64 [n]``. For a valid game
    (``-1`` only as padding after its end) that is its number of moves."""
    games = validate_games(games)
    return (games >= 0).sum(axis=1).astype(np.int64)


PERFT_CHUNK_PLIES = 6   # subtrees counted in one compiled call: ~1e6 leaves, a few ms


def perft(depth: int) -> int:
    """Leaves of the game tree `depth` plies from the start, a pass counted as a ply and a
    game that ends earlier counted as one leaf: ``perft(4) == 244``.

    `depth` is 0..60 (a game's moves). The tree is walked in Python down to the last
    `PERFT_CHUNK_PLIES` plies and each subtree below is counted by the compiled engine,
    so that Ctrl-C stops a long count within a fraction of a second (perft(11) takes
    about 1 s, and every further ply about ten times longer)."""
    depth = check_int("depth", depth, least=0, most=GAME_PLIES, error=MothelloError)
    if depth == 0:
        return 1
    me, opp = _engine.START
    return _perft_split(me, opp, depth, False)


def _perft_split(me: int, opp: int, depth: int, passed: bool) -> int:
    """`perft` below a position, as csrc/othello.h's perft_rec counts it, splitting off
    subtrees of `PERFT_CHUNK_PLIES` plies to the compiled engine."""
    if depth <= PERFT_CHUNK_PLIES:
        return int(_engine.perft_from(me, opp, depth, passed))
    legal = _engine.legal(me, opp)
    if not legal:
        return 1 if passed else _perft_split(opp, me, depth - 1, True)
    total = 0
    while legal:
        square = (legal & -legal).bit_length() - 1
        legal &= legal - 1
        flipped = _engine.flips(me, opp, square)
        total += _perft_split(opp & ~flipped, me | flipped | 1 << square, depth - 1, False)
    return total
