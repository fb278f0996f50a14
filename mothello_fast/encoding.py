"""Writing games as tokens and reading them back, over one set of lookup tables.

`CodeTables` holds, for the languages of one id space (built by `languages.LanguageSet`,
which names the languages and owns the ids), what encoding and decoding read:

- the move table: row ``language * 65 + square + 1`` gives a move's token ids (``slots``,
  ``int64 [rows, K]``) and their number (``lengths``); row 0 of each language is the -1
  after a game's end, written as nothing;
- the code table: every code and every start of a longer code of every language as one
  sorted integer key (its tokens as digits in base ``vocab_size + 1``, offset by the
  language), with the square it spells (-2: the start of a longer code). `decode` reads
  whole rows against it; evaluation reads a model's greedy predictions one sub-token at a
  time against the same table (`MoveCodes`).

Encoding runs the compiled encoder (csrc/_engine.pyx) on numpy games and CPU tensors (on
views, in blocks of games, on several threads) and torch ops on other devices; languages
are given here by index (``int``, or ``int64 [n]`` per row): `LanguageSet` resolves names.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from . import _engine
from .errors import LanguageError
from .othello import GAME_PLIES, PLAYABLE_LOOKUP, check_game_squares, check_games_layout
from .othello import validate_games
from .parallel import CHUNK_GAMES, check_fits_in_memory, resolve_threads, run_in_chunks

__all__ = ["Encoded", "CodeTables", "MoveCodes", "PAD_ID", "IGNORE_INDEX", "OBJECTIVES",
           "ROWS", "is_tensor", "is_int"]

PAD_ID = 0
IGNORE_INDEX = -100   # targets that carry no loss (torch's cross_entropy default)
OBJECTIVES = ("standard", "unified")
ROWS = 65             # move-table rows per language: square + 1, row 0 for the -1 after the end
_NOT_A_CODE, _CUT_SHORT = -3, -2   # code-table results besides a square


def is_tensor(x) -> bool:
    """Whether `x` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_int(x) -> bool:
    """Whether `x` is an integer (numpy's too), not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


@dataclass
class Encoded:
    """Games written in a language; arrays are numpy or torch like the games encoded.

    Attributes:
        tokens: ``int64 [n, T]`` token ids, pad (0) after each game's last token.
        move_index: ``int64 [n, T]``: index 0..59 of the move each token belongs to, -1 on pad.
        move_end: ``bool [n, T]``: the token is the last sub-token of its move.
        language: index of the language (an int), or ``int64 [n]`` per-row indices.
        games: ``int8 [n, 60]`` the games encoded.
    """
    tokens: object
    move_index: object
    move_end: object
    language: object
    games: object = None


class CodeTables:
    """The lookup tables of one id space (see the module docstring).

    codes: per language (the input languages, then an optional output-only language),
    square -> its token ids; names: the input languages' names (for messages);
    token_language: ``int64 [vocab_size]``, the language each id belongs to (pad: -1).
    """

    def __init__(self, codes: list[dict[int, tuple[int, ...]]], names: tuple[str, ...],
                 token_language: np.ndarray):
        n_inputs = len(names)
        V = len(token_language)
        check_fits_in_memory(f"the lookup tables of {n_inputs} languages over {V:,} ids",
                             n_inputs * V + 64 * V + len(codes) * ROWS * 8 * 64,
                             error=LanguageError)
        self.names = names
        self.n_inputs = n_inputs
        self.has_output = len(codes) > n_inputs
        self.vocab_size = len(token_language)
        self.token_language = token_language
        self.lengths_per_language = [max(len(c) for c in code.values()) for code in codes]
        self.k_max = max(self.lengths_per_language[:n_inputs])
        k = self.k_max   # an output language writes one token a square

        slots = np.zeros((len(codes) * ROWS, k), dtype=np.int64)
        lengths = np.zeros(len(codes) * ROWS, dtype=np.int64)
        for j, code in enumerate(codes):
            for s, ids in code.items():
                slots[j * ROWS + s + 1, :len(ids)] = ids
                lengths[j * ROWS + s + 1] = len(ids)
        self.slots, self.lengths = slots, lengths
        self.context_length = int(max(lengths[j * ROWS:(j + 1) * ROWS].sum()
                                      for j in range(n_inputs)))

        V = self.vocab_size
        squares_of: list[set[int]] = [set() for _ in range(V)]
        position = np.full(V, -1, dtype=np.int64)
        member = np.zeros((n_inputs, V), dtype=bool)
        for j, code in enumerate(codes):
            for s, ids in code.items():
                for pos, i in enumerate(ids):
                    squares_of[i].add(s)
                    position[i] = pos
                    if j < n_inputs:
                        member[j, i] = True
        self.token_square = np.asarray([next(iter(q)) if len(q) == 1 else -1 for q in squares_of],
                                       dtype=np.int64)
        self.position, self.member = position, member

        # the code table: a key per code and per start of a longer code, digits id + 1 in
        # base V + 1 (a pad predicted mid-code is a digit of its own), offset by language
        self.base = V + 1
        self.span = self.base ** k
        if len(codes) * self.span >= 2 ** 62:
            raise LanguageError(f"{len(codes)} languages of up to {k} tokens per square over "
                                f"{V} ids: too many to decode with 64-bit keys")
        table: dict[int, int] = {}
        prefixes: dict[int, int] = {}
        for j, code in enumerate(codes):
            for s, ids in code.items():
                for m in range(1, len(ids) + 1):
                    key = j * self.span + sum((i + 1) * self.base ** p
                                              for p, i in enumerate(ids[:m]))
                    (table if m == len(ids) else prefixes)[key] = s
        merged = {**{key: _CUT_SHORT for key in prefixes}, **table}
        order = sorted(merged)
        self.keys = np.asarray(order, dtype=np.int64)
        self.key_squares = np.asarray([merged[key] for key in order], dtype=np.int64)
        self._torch_cache: dict = {}

    # ------------------------------------------------------------------------ tables
    def token_ids(self, j: int) -> np.ndarray:
        """``int64 [64, K]``: ids of each square's tokens in language `j` (an input
        language, or ``n_inputs``: the output language), -1 padded; K is the language's
        longest square; centre rows are all -1."""
        k = self.lengths_per_language[j]
        rows = self.slots[j * ROWS + 1:(j + 1) * ROWS, :k].copy()
        rows[np.arange(k) >= self.lengths[j * ROWS + 1:(j + 1) * ROWS, None]] = -1
        return rows

    def output_lut(self) -> np.ndarray:
        """``int64 [65]``: the output language's id of each square + 1 (-100: none)."""
        lut = np.full(ROWS, IGNORE_INDEX, dtype=np.int64)
        if self.has_output:
            j = self.n_inputs
            lut[1:] = self.slots[j * ROWS + 1:(j + 1) * ROWS, 0]
        return lut

    def torch_tables(self, device) -> dict:
        """The tables as tensors on `device` (made once per device)."""
        import torch

        key = str(device)
        if key not in self._torch_cache:
            self._torch_cache[key] = {
                name: torch.as_tensor(value, device=device) for name, value in
                (("slots", self.slots), ("lengths", self.lengths),
                 ("playable", PLAYABLE_LOOKUP), ("output", self.output_lut()))}
        return self._torch_cache[key]

    def move_codes(self, j: int) -> MoveCodes:
        """The codes of language `j` (input, or ``n_inputs``: the output language) as
        evaluation reads predictions against them."""
        return MoveCodes(self, j)

    # ---------------------------------------------------------------------- encoding
    def check_games(self, games, *, squares: bool = True):
        """Validate `games` (numpy-like or tensor) by `validate_games`' rule and return it
        (numpy: C-contiguous int8; a tensor as it is).

        Kept apart from `validate_games` only for tensors on a device, whose entries are
        checked there by the same shared check (reading two flags back, never the games);
        numpy games and CPU tensors (on a numpy view) go through `validate_games` itself.
        ``squares=False`` checks only dtype and shape for C-contiguous int8 numpy games
        (and CPU tensors of them): the compiled encoder checks their squares as it reads
        them and calls back here with ``squares=True`` to name a bad one."""
        if is_tensor(games) and games.device.type == "cpu" and not games.requires_grad:
            self.check_games(games.numpy(), squares=squares)   # on a view of the tensor
            return games
        if is_tensor(games):
            import torch
            integer = not (games.dtype.is_floating_point or games.dtype.is_complex
                           or games.dtype == torch.bool)
            check_games_layout(integer, games.dtype, games.shape, "games")
            check_game_squares(games.long(), self.torch_tables(games.device)["playable"],
                               "games")
            return games
        arr = np.asarray(games)
        if not squares and arr.dtype == np.int8 and arr.flags.c_contiguous:
            check_games_layout(True, arr.dtype, arr.shape, "games")
            return arr
        return validate_games(arr)

    def check_fits(self, games, rows) -> None:
        """LanguageError unless each game (a tensor) written in its language (`rows`: an
        index or ``int64 [n]``; None: every input language) fits the context; on a device,
        this reads a flag back."""
        lengths = self.torch_tables(games.device)["lengths"]
        languages = range(self.n_inputs) if rows is None else [rows]
        chunk = CHUNK_GAMES * 64                                     # bounded temporaries
        for start in range(0, games.shape[0], chunk):
            table_row = games[start:start + chunk].long() + 1
            for j in languages:
                offset = j * ROWS if is_int(j) else j[start:start + chunk, None] * ROWS
                too_long = lengths[table_row + offset].sum(1) > self.context_length   # [chunk]
                if bool(too_long.any()):
                    raise LanguageError(f"game {start + int(too_long.nonzero()[0, 0])} does not "
                                        f"fit the context length {self.context_length}")

    def encode(self, games, rows, *, threads: int | None = None,
               out: Encoded | None = None) -> Encoded:
        """`games` (``int8 [n, 60]``, numpy or a tensor on any device; checked) written in
        the languages `rows` (an input language's index, or ``int64 [n]`` per row, as
        numpy or a tensor like the games; checked by the caller): an `Encoded` of the
        games' kind and device, ``T = context_length``. `out`: numpy arrays to write
        into (numpy games only)."""
        games = self.check_games(games, squares=False)
        if out is not None:
            shape = (games.shape[0], self.context_length)
            wanted = (("tokens", np.int64), ("move_index", np.int64), ("move_end", np.bool_))
            if is_tensor(games) or not all(
                    isinstance(getattr(out, f, None), np.ndarray) and getattr(out, f).shape == shape
                    and getattr(out, f).dtype == d and getattr(out, f).flags.c_contiguous
                    and getattr(out, f).flags.writeable
                    for f, d in wanted):
                raise LanguageError(f"out: expected an Encoded of writable, C-contiguous numpy "
                                    f"arrays of shape {shape} (int64, int64, bool) and numpy "
                                    "games")
        if is_tensor(games) and games.device.type != "cpu":
            self.check_fits(games, rows)   # the compiled encoder checks numpy and CPU games
        return self.encode_checked(games, rows, threads, out)

    def encode_checked(self, games, rows, threads: int | None = None,
                       out: Encoded | None = None) -> Encoded:
        """`encode` of games and languages already checked (a `Corpus` checks its games
        once and encodes a batch a step)."""
        if not is_tensor(games):
            arrays = self._encode_numpy(games, rows, threads, out)
        elif games.device.type == "cpu":   # numpy views of the tensors, no copies
            import torch
            arrays = self._encode_numpy(games.numpy().astype(np.int8, copy=False),
                                        rows if is_int(rows) else rows.numpy(), threads)
            arrays = tuple(torch.from_numpy(a) for a in arrays)
        else:
            arrays = self.encode_torch(games, rows)
        return Encoded(*arrays, rows, games)

    def _encode_numpy(self, games: np.ndarray, rows, threads: int | None = None,
                      out: Encoded | None = None):
        """The compiled encoder (csrc/_engine.pyx, `encode_into`): one pass over the
        moves writing tokens, move indices and move ends, on `threads` threads."""
        n, T = games.shape[0], self.context_length
        if out is not None:
            tokens, move_index, move_end = out.tokens, out.move_index, out.move_end
        else:
            tokens = np.empty((n, T), dtype=np.int64)
            move_index = np.empty((n, T), dtype=np.int64)
            move_end = np.empty((n, T), dtype=bool)
        language = (np.full(n, rows, dtype=np.int64) if is_int(rows)
                    else np.ascontiguousarray(rows, dtype=np.int64))
        games = np.ascontiguousarray(games, dtype=np.int8)
        end_bytes = move_end.view(np.uint8)
        status = np.empty(n, dtype=np.int64)

        def work(start: int, stop: int) -> None:
            _engine.encode_into(games[start:stop], language[start:stop], self.slots,
                                self.lengths, tokens[start:stop], move_index[start:stop],
                                end_bytes[start:stop], PAD_ID, status[start:stop])

        run_in_chunks(n, resolve_threads(threads), work, False, "encoding games")
        if n and status.min() < 0:
            self.check_games(games)   # names the bad square
            raise LanguageError(f"game {int(np.flatnonzero(status < 0)[0])} does not fit the "
                                f"context length {T}")
        return tokens, move_index, move_end

    def encode_torch(self, games, rows):
        """(tokens, move_index, move_end) of games (a tensor; checked, fitting the context)
        by torch ops on its device: the path of devices other than the CPU."""
        import torch
        tables = self.torch_tables(games.device)
        n, T, k = games.shape[0], self.context_length, self.k_max
        table_row = games.long() + 1
        table_row = table_row + (rows * ROWS if is_int(rows) else rows[:, None] * ROWS)
        lengths = tables["lengths"][table_row]                      # [n, 60]
        ends = lengths.cumsum(1)                                     # one past each move's tokens
        starts = ends - lengths
        base = torch.arange(n, device=games.device)[:, None] * T
        trash = n * T                                                # writes of unused slots land here
        slot_ids = tables["slots"][table_row]                        # [n, 60, K]
        flat_tokens = torch.zeros(n * T + 1, dtype=torch.int64, device=games.device)
        # a token past the row's T slots (a game too long for the context, which `encode`
        # and `Corpus` refuse first) goes to the trash slot too, never into the next row
        for j in range(k):                                           # sub-token slots, not moves
            dest = torch.where((lengths > j) & (starts + j < T), base + starts + j, trash)
            flat_tokens[dest.reshape(-1)] = slot_ids[:, :, j].reshape(-1)
        flat_end = torch.zeros(n * T + 1, dtype=torch.bool, device=games.device)
        last = torch.where((lengths > 0) & (ends <= T), base + ends - 1, trash)
        flat_end[last.reshape(-1)] = True
        tokens = flat_tokens[:n * T].view(n, T)
        move_end = flat_end[:n * T].view(n, T)
        ended = move_end.long()
        before = ended.cumsum(1) - ended                             # moves ended before each token
        move_index = torch.where(torch.arange(T, device=games.device) < ends[:, -1:], before,
                                 torch.full_like(before, -1))
        return tokens, move_index, move_end

    # ---------------------------------------------------------------------- decoding
    @staticmethod
    def _bad(mask: np.ndarray, tokens: np.ndarray, message: str) -> None:
        if mask.any():
            r, t = (int(v) for v in np.argwhere(mask)[0])
            row = " ".join(str(int(v)) for v in tokens[r, max(0, t - 3):t + 4])
            raise LanguageError(f"row {r}, position {t} (token {int(tokens[r, t])}; around: {row}): "
                                + message)

    def decode(self, tokens, j: int | None = None):
        """Games from token ids: ``int64 [n, T]`` (numpy or tensor; pad 0 at the end of a
        row) -> ``int8 [n, 60]`` of the same kind and device, every row in input language
        `j` (None: inferred per row); `LanguageError` on anything no language spells."""
        if is_tensor(tokens):
            import torch
            games = self._decode_numpy(tokens.detach().cpu().numpy(), j)
            return torch.from_numpy(games).to(tokens.device)
        return self._decode_numpy(np.asarray(tokens), j)

    def _decode_numpy(self, tokens: np.ndarray, j: int | None) -> np.ndarray:
        if tokens.dtype.kind not in "iu" or tokens.ndim != 2:
            raise LanguageError(f"tokens of dtype {tokens.dtype}, shape {tokens.shape}: expected "
                                "integer token ids [n, T]")
        tokens = tokens.astype(np.int64)
        n, T = tokens.shape
        V = self.vocab_size
        self._bad((tokens < 0) | (tokens >= V), tokens,
                  f"belongs to no language; expected ids 0..{V - 1}")
        present = tokens != PAD_ID
        owner = self.token_language[tokens]
        self._bad(present & (owner == self.n_inputs), tokens,
                  "belongs to the output-only language, which is not an input language")
        after_pad = np.zeros_like(present)
        after_pad[:, 1:] = present[:, 1:] & ~present[:, :-1]
        self._bad(after_pad, tokens, "comes after padding; expected padding only at the end")
        if j is not None:
            outside = present & ~self.member[j][tokens]
            self._bad(outside, tokens, f"is not a token of language {self.names[j]!r} (it is "
                      "from another language: a mix of languages)")
            row_language = np.full(n, j, dtype=np.int64)
        else:
            fits = (self.member[:, tokens] | ~present).all(axis=2)        # [n_lang, n]
            mixed = ~fits.any(axis=0)
            if mixed.any():
                r = int(np.flatnonzero(mixed)[0])
                used = sorted({self.names[int(o)] for o in owner[r][present[r]]})
                raise LanguageError(f"row {r} mixes languages {used}: no single input language "
                                    "has all of its tokens")
            row_language = fits.argmax(axis=0)

        position = self.position[tokens]                    # sub-token index within a move
        start = present & (position == 0)
        t = np.arange(T)
        last_start = np.maximum.accumulate(np.where(start, t, -1), axis=1)
        self._bad(present & ((last_start < 0) | (position != t - last_start)), tokens,
                  "sub-tokens out of order: a truncated or misordered multi-token move")
        n_moves = start.sum(1)
        if n and n_moves.max() > GAME_PLIES:
            r = int(np.argmax(n_moves))
            raise LanguageError(f"row {r} holds {int(n_moves[r])} moves; expected at most 60")
        key = row_language[:, None] * self.span
        for p in range(self.k_max):                         # sub-token slots, not moves
            shifted_tok = np.zeros((n, T), dtype=np.int64)
            shifted_pos = np.full((n, T), -1, dtype=np.int64)
            shifted_tok[:, :max(T - p, 0)] = tokens[:, p:]   # nothing when the row is <= p long
            shifted_pos[:, :max(T - p, 0)] = position[:, p:]
            key = key + np.where(shifted_pos == p, (shifted_tok + 1) * self.base ** p, 0)
        square = self.lookup(key)
        self._bad(start & (square == _CUT_SHORT), tokens,
                  "a multi-token move is cut short (truncated): its later sub-tokens are missing")
        self._bad(start & (square == _NOT_A_CODE), tokens,
                  "these tokens spell no square in the row's language")
        games = np.full((n, GAME_PLIES), -1, dtype=np.int8)
        move = start.cumsum(1) - 1
        games[np.nonzero(start)[0], move[start]] = square[start]
        return games

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The code table's entry of each key (int64, any shape): the square spelled, -2
        for the start of a longer code, -3 for neither."""
        if len(self.keys) == 0:
            return np.full(np.shape(keys), _NOT_A_CODE, dtype=np.int64)
        found = np.searchsorted(self.keys, keys).clip(0, len(self.keys) - 1)
        return np.where(self.keys[found] == keys, self.key_squares[found], _NOT_A_CODE)

    # ----------------------------------------------------------------------- targets
    def output_ids(self, games):
        """``int64 [n, 60]``: each move's id in the output language, -100 after the end
        (numpy or tensor like `games` int8 [n, 60]). Needs an output language."""
        self.need_output()
        games = self.check_games(games)
        if is_tensor(games):
            return self.torch_tables(games.device)["output"][games.long() + 1]
        return self.output_lut()[games.astype(np.intp) + 1]

    def need_output(self) -> None:
        """`LanguageError` unless the id space has an output language."""
        if not self.has_output:
            raise LanguageError("the unified objective needs an output language; build the set "
                                "with output_language=... (or from_spec(..., unified=True))")

    def make_targets(self, encoded: Encoded, objective: str = "standard"):
        """Targets ``int64 [n, T]`` for `encoded` (same kind and device), -100 where ignored.

        ``"standard"``: ``target[t] = tokens[t+1]``, -100 where that is pad or past the end.
        ``"unified"``: at the last sub-token of move i, the output-language id of move
        i+1 (when the game has one); -100 everywhere else.
        """
        if objective not in OBJECTIVES:
            raise LanguageError(f"objective={objective!r}: expected one of {OBJECTIVES}")
        if not isinstance(encoded, Encoded):
            raise LanguageError(f"encoded={type(encoded).__name__}: expected the Encoded that "
                                "encode returns")
        tokens = encoded.tokens
        shapes = [tuple(getattr(a, "shape", ())) for a in
                  (tokens, encoded.move_index, encoded.move_end)]
        if len(shapes[0]) != 2 or len(set(shapes)) != 1 or not (
                is_tensor(tokens) or isinstance(tokens, np.ndarray)):
            raise LanguageError(f"encoded arrays of shapes {shapes}: expected tokens, "
                                "move_index and move_end of one shape [n, T], as encode gives")
        if is_tensor(tokens) and tokens.device.type == "cpu":      # numpy on views, no copies
            import torch
            views = Encoded(_to_numpy(tokens), _to_numpy(encoded.move_index),
                            _to_numpy(encoded.move_end), encoded.language,
                            None if encoded.games is None else _to_numpy(encoded.games))
            return torch.from_numpy(self.make_targets(views, objective))
        if is_tensor(tokens):
            import torch
            xp_where, full_like = torch.where, torch.full_like
            arange = lambda m: torch.arange(m, device=tokens.device)  # noqa: E731
        else:
            xp_where, full_like, arange = np.where, np.full_like, np.arange
        if objective == "standard":
            targets = full_like(tokens, IGNORE_INDEX)
            following = tokens[:, 1:]
            targets[:, :-1] = xp_where(following != PAD_ID, following,
                                       full_like(following, IGNORE_INDEX))
            return targets
        self.need_output()
        games = encoded.games
        if games is None:
            games = self.decode(tokens)
        out = self.torch_tables(tokens.device)["output"][games.long() + 1] if is_tensor(tokens) \
            else self.output_lut()[np.asarray(games).astype(np.intp) + 1]
        following = full_like(out, IGNORE_INDEX)
        following[:, :-1] = out[:, 1:]
        move = xp_where(encoded.move_index >= 0, encoded.move_index, 0)
        picked = following[arange(tokens.shape[0])[:, None], move]
        return xp_where(encoded.move_end, picked, full_like(picked, IGNORE_INDEX))


class MoveCodes:
    """One language's codes in the shared code table, as evaluation reads a model's
    predictions: a key per prediction grows by a sub-token at a time.

    >>> import mothello_fast as mf
    >>> ls = mf.LanguageSet.from_spec("compositional")
    >>> codes = ls.move_codes("L0")
    >>> first, second = ls.token_ids("L0")[19]          # c4: a row token, a column token
    >>> square, pending = codes.lookup(codes.extend(codes.empty(1), [first], 0))
    >>> int(square[0]), bool(pending[0])                # the start of a longer code
    (-1, True)
    >>> keys = codes.extend(codes.extend(codes.empty(1), [first], 0), [second], 1)
    >>> int(codes.lookup(keys)[0][0]), bool(codes.last_token(keys, 1)[0] == second)
    (19, True)
    """

    def __init__(self, tables: CodeTables, j: int):
        self.tables = tables
        self.offset = j * tables.span
        self.max_len = tables.lengths_per_language[j]

    def empty(self, n: int) -> np.ndarray:
        """``int64 [n]`` keys of no sub-token yet."""
        return np.full(n, self.offset, dtype=np.int64)

    def extend(self, keys: np.ndarray, tokens, position: int) -> np.ndarray:
        """`keys` with each prediction's sub-token number `position` (from 0), `tokens`."""
        return keys + (np.asarray(tokens, dtype=np.int64) + 1) * self.tables.base ** position

    def last_token(self, keys: np.ndarray, position: int) -> np.ndarray:
        """The sub-token number `position` of each key."""
        return (keys - self.offset) // self.tables.base ** position % self.tables.base - 1

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keys: int64 [m] -> (square int64 [m], -1 where not a whole code; pending bool
        [m], True where the sub-tokens so far start a longer code)."""
        square = self.tables.lookup(keys)
        return np.where(square >= 0, square, -1), square == _CUT_SHORT
