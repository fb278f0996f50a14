"""mOthello languages: how squares are written as tokens, and one id space for a set of them.

A `Language` maps each of the 60 playable squares to a tuple of *local* tokens
``0..n_tokens-1``: atomic (one fresh token per square), split (1..k fresh tokens
per square, seeded), compositional (a row token then a column token, 16 tokens)
or any explicit mapping. A `LanguageSet` gives the languages one vocabulary:
pad id 0, then each input language's tokens in turn; for anchored squares the
languages after the first reuse the first language's ids (so those squares add
no ids); last, the tokens of an optional output-only language (the unified
objective, where every input language predicts the next move in one shared
move space).

>>> ls = LanguageSet.from_spec("atomic,atomic", n_anchors=8, seed=0)
>>> ls.vocab_size, ls.context_length, len(ls.anchors)
(113, 60, 8)
>>> games = generate_games(2, seed=0)
>>> encoded = ls.encode(games, "L1")
>>> encoded.tokens.shape, bool((ls.decode(encoded.tokens) == games).all())
((2, 60), True)

Encoding writes each move's tokens from a lookup table with no Python loop over
moves: the compiled encoder (csrc/_engine.pyx) for arrays and CPU tensors (on views
of the tensors, in blocks of games, on several threads), torch ops on the tensor's
device otherwise (a `Corpus` on a GPU builds its batches there).
`decode` inverts it and raises `LanguageError` on a token of no language, a
truncated multi-token move, tokens after padding, or a row that mixes languages.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _engine
from .storage import atomic_write_json
from .errors import InvalidSquareError, LanguageError, MothelloError, check_int
from .othello import (GAME_PLIES, PLAYABLE_SQUARES, parse_square, square_name,
                      validate_games)
from .othello import PLAYABLE_LOOKUP, check_game_squares, check_games_layout
from .othello import generate_games  # noqa: F401  (the docstring examples use it)
from .parallel import CHUNK_GAMES, resolve_threads, run_in_chunks

__all__ = ["KINDS", "OBJECTIVES", "PAD_ID", "IGNORE_INDEX", "Language", "LanguageSet", "Encoded"]

KINDS = ("atomic", "split", "compositional", "custom")
OBJECTIVES = ("standard", "unified")
PAD_ID = 0
IGNORE_INDEX = -100   # targets that carry no loss (torch's cross_entropy default)
FORMAT_VERSION = 1

_ROWS = 65            # lookup-table rows: index square + 1, row 0 for the -1 after a game's end
_PLAYABLE_INDEX = np.full(64, -1, dtype=np.int64)
_PLAYABLE_INDEX[list(PLAYABLE_SQUARES)] = np.arange(len(PLAYABLE_SQUARES))


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _square(value, what: str) -> int:
    """A playable square from an int or a name, or LanguageError."""
    try:
        square = parse_square(value)
    except InvalidSquareError as exc:
        raise LanguageError(f"{what} {value!r} is not a square: {exc}") from None
    if _PLAYABLE_INDEX[square] < 0:
        raise LanguageError(f"{what} {value!r} ({square_name(square)}) is a centre square, "
                            "which no move is played on; expected one of the 60 playable squares")
    return square


@dataclass(frozen=True)
class Language:
    """How one language writes squares: ``square_tokens[i]`` is the tuple of local
    tokens (``0..n_tokens-1``) of ``PLAYABLE_SQUARES[i]``.

    Rules, checked on construction: every local token is used; no two squares have
    the same tokens; each token always sits at the same position within a move (so
    a token sequence splits into moves by position alone and decodes uniquely).

    >>> Language.compositional("C").tokens_of("d3")   # row d (3), then column 3 (8 + 2)
    (3, 10)
    >>> Language.atomic("A").n_tokens, Language.compositional("C").n_tokens
    (60, 16)
    """
    name: str
    kind: str
    square_tokens: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise LanguageError(f"language name {self.name!r}: expected a non-empty string")
        if self.kind not in KINDS:
            raise LanguageError(f"language {self.name!r}: kind {self.kind!r}; expected one of {KINDS}")
        entries = tuple(self.square_tokens)
        if len(entries) != len(PLAYABLE_SQUARES):
            raise LanguageError(f"language {self.name!r} has {len(entries)} squares; expected "
                                f"{len(PLAYABLE_SQUARES)} (one per playable square)")
        normalised = []
        for square, tokens in zip(PLAYABLE_SQUARES, entries):
            tokens = tuple(tokens) if isinstance(tokens, (tuple, list, np.ndarray)) else (tokens,)
            if not tokens or not all(_is_int(t) and t >= 0 for t in tokens):
                raise LanguageError(f"language {self.name!r}, square {square_name(square)}: tokens "
                                    f"{tokens!r}; expected a non-empty tuple of integers >= 0")
            normalised.append(tuple(int(t) for t in tokens))
        object.__setattr__(self, "square_tokens", tuple(normalised))
        seen: dict[tuple[int, ...], int] = {}
        position: dict[int, tuple[int, int]] = {}
        for square, tokens in zip(PLAYABLE_SQUARES, normalised):
            if tokens in seen:
                raise LanguageError(f"language {self.name!r}: squares {square_name(seen[tokens])} "
                                    f"and {square_name(square)} have the same tokens {tokens}")
            seen[tokens] = square
            for k, token in enumerate(tokens):
                first = position.setdefault(token, (k, square))
                if first[0] != k:
                    raise LanguageError(
                        f"language {self.name!r}: token {token} is sub-token {first[0]} of square "
                        f"{square_name(first[1])} but sub-token {k} of {square_name(square)}; "
                        "expected each token at one position within its moves")
        unused = sorted(set(range(max(position) + 1)) - set(position))
        if unused:
            raise LanguageError(f"language {self.name!r}: local tokens {unused} are unused; "
                                f"expected the tokens to be exactly 0..{max(position)}")

    @property
    def n_tokens(self) -> int:
        """Number of local tokens."""
        return 1 + max(max(tokens) for tokens in self.square_tokens)

    @property
    def max_tokens(self) -> int:
        """Most tokens of one square."""
        return max(len(tokens) for tokens in self.square_tokens)

    def tokens_of(self, square: int | str) -> tuple[int, ...]:
        """Local tokens of a square (int or name)."""
        return self.square_tokens[int(_PLAYABLE_INDEX[_square(square, "square")])]

    @property
    def mapping(self) -> dict[int, tuple[int, ...]]:
        """Square -> local tokens."""
        return dict(zip(PLAYABLE_SQUARES, self.square_tokens))

    @classmethod
    def atomic(cls, name: str) -> Language:
        """One token per square: 60 tokens, in ``PLAYABLE_SQUARES`` order."""
        return cls(name, "atomic", tuple((i,) for i in range(len(PLAYABLE_SQUARES))))

    @classmethod
    def split(cls, name: str, *, max_tokens: int = 3, seed: int) -> Language:
        """Each square gets 1..`max_tokens` fresh tokens (a uniform draw per square,
        seeded); tokens are numbered in ``PLAYABLE_SQUARES`` order.

        >>> lang = Language.split("S", seed=0)
        >>> lengths = [len(t) for t in lang.square_tokens]
        >>> set(lengths) == {1, 2, 3}, lang.n_tokens == sum(lengths)
        (True, True)
        """
        max_tokens = check_int("max_tokens", max_tokens, least=1, error=LanguageError)
        seed = check_int("seed", seed, least=0, error=LanguageError)
        lengths = np.random.default_rng(seed).integers(1, max_tokens + 1,
                                                       size=len(PLAYABLE_SQUARES))
        ends = np.cumsum(lengths)
        return cls(name, "split", tuple(tuple(range(int(e - n), int(e)))
                                        for e, n in zip(ends, lengths)))

    @classmethod
    def compositional(cls, name: str) -> Language:
        """A row token (0..7 for rows a..h) then a column token (8..15 for columns 1..8)."""
        return cls(name, "compositional", tuple((s // 8, 8 + s % 8) for s in PLAYABLE_SQUARES))

    @classmethod
    def from_mapping(cls, name: str, mapping: Mapping[int | str, Sequence[int]], *,
                     kind: str = "custom") -> Language:
        """A language from ``{square (int or name like "d3"): local tokens}`` over exactly
        the 60 playable squares.

        >>> lang = Language.from_mapping("R", {s: (59 - i,) for i, s in enumerate(PLAYABLE_SQUARES)})
        >>> lang.tokens_of("a1"), lang.kind
        ((59,), 'custom')
        """
        if not isinstance(mapping, Mapping):
            raise LanguageError(f"mapping of language {name!r}: expected a dict square -> tokens, "
                                f"got {type(mapping).__name__}")
        by_square: dict[int, Sequence[int]] = {}
        for key, tokens in mapping.items():
            square = _square(key, f"language {name!r}: square")
            if square in by_square:
                raise LanguageError(f"language {name!r}: square {square_name(square)} is given twice")
            by_square[square] = tokens
        missing = [square_name(s) for s in PLAYABLE_SQUARES if s not in by_square]
        if missing:
            raise LanguageError(f"language {name!r} gives no tokens for squares {' '.join(missing)}; "
                                "expected all 60 playable squares")
        return cls(name, kind, tuple(by_square[s] for s in PLAYABLE_SQUARES))

    def to_dict(self) -> dict:
        """JSON-ready: name, kind and ``{square name: [local tokens]}``."""
        return {"name": self.name, "kind": self.kind,
                "square_tokens": {square_name(s): list(t)
                                  for s, t in zip(PLAYABLE_SQUARES, self.square_tokens)}}

    @classmethod
    def from_dict(cls, d: Mapping) -> Language:
        try:
            return cls.from_mapping(d["name"], d["square_tokens"], kind=d["kind"])
        except (KeyError, TypeError) as exc:
            raise LanguageError(f"language dict {str(d)[:80]!r}...: expected keys 'name', 'kind', "
                                f"'square_tokens' ({exc!r})") from None


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


def _parse_spec_item(item: str, index: int, seed: int) -> Language:
    text = item.strip()
    name, _, kind = text.rpartition("=")
    name = name.strip() or f"L{index}"
    kind, _, arg = kind.strip().partition(":")
    kind = kind.strip().lower()
    if arg and kind != "split":
        raise LanguageError(f"language spec {item!r}: only 'split' takes ':k'")
    if kind == "atomic":
        return Language.atomic(name)
    if kind == "compositional":
        return Language.compositional(name)
    if kind == "split":
        try:
            max_tokens = int(arg) if arg else 3
        except ValueError:
            raise LanguageError(f"language spec {item!r}: ':{arg}' is not a number of tokens") from None
        derived = int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0])
        return Language.split(name, max_tokens=max_tokens, seed=derived)
    raise LanguageError(f"language spec {item!r}: kind {kind!r}; expected [NAME=]atomic, "
                        "split[:k] or compositional")


class LanguageSet:
    """A set of input languages (and optionally one output-only language) sharing one
    id space; see the module docstring for the layout.

    Args:
        languages: the input languages, in id order.
        anchors: squares (ints or names) whose tokens languages 1.. take from language 0.
        n_anchors: instead of `anchors`, how many playable squares to anchor, drawn with `seed`.
        seed: seeds the draw of anchors.
        output_language: an output-only language with one token per square (unified objective).

    >>> ls = LanguageSet([Language.atomic("A"), Language.compositional("C")], anchors=["c4"])
    >>> ls.vocab_size, ls.token_ids("C")[parse_square("c4")].tolist()   # c4 is written as in A
    (77, [20, -1])
    """

    def __init__(self, languages: Sequence[Language], *, anchors: Iterable[int | str] | None = None,
                 n_anchors: int = 0, seed: int = 0, output_language: Language | None = None):
        languages = tuple(languages)
        if not languages or not all(isinstance(lang, Language) for lang in languages):
            raise LanguageError(f"languages={languages!r}: expected a non-empty sequence of Language")
        if output_language is not None:
            if not isinstance(output_language, Language):
                raise LanguageError(f"output_language={output_language!r}: expected a Language")
            if output_language.max_tokens != 1:
                raise LanguageError(f"output language {output_language.name!r} writes some squares "
                                    "with several tokens; expected one token per square")
        names = [lang.name for lang in languages] + \
            ([output_language.name] if output_language is not None else [])
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise LanguageError(f"language names {duplicates} are used twice; expected unique names")
        self.languages = languages
        self.output_language = output_language
        self.seed = seed
        self.anchors = self._resolve_anchors(anchors, n_anchors, seed)
        self._build()

    @staticmethod
    def _resolve_anchors(anchors, n_anchors, seed) -> tuple[int, ...]:
        n_anchors = check_int("n_anchors", n_anchors, least=0, most=len(PLAYABLE_SQUARES),
                              error=LanguageError)
        if anchors is None:
            check_int("seed", seed, least=0, error=LanguageError)
            chosen = np.random.default_rng(int(seed)).choice(
                np.array(PLAYABLE_SQUARES), size=int(n_anchors), replace=False)
            return tuple(sorted(int(s) for s in chosen))
        if isinstance(anchors, str):
            anchors = anchors.replace(",", " ").split()
        elif _is_int(anchors):
            raise LanguageError(f"anchors={anchors}: expected squares (ints or names); give "
                                "a number of squares to anchor as n_anchors")
        squares = [_square(a, "anchor") for a in anchors]
        repeated = sorted({square_name(s) for s in squares if squares.count(s) > 1})
        if repeated:
            raise LanguageError(f"anchors {repeated} are given twice; expected distinct squares")
        if n_anchors not in (0, len(squares)):
            raise LanguageError(f"n_anchors={n_anchors} but {len(squares)} anchors are given; "
                                "give either explicit anchors or n_anchors")
        return tuple(sorted(squares))

    def _build(self) -> None:
        n_lang = len(self.languages)
        anchored = set(self.anchors)
        next_id = 1
        codes: list[dict[int, tuple[int, ...]]] = []      # per language: square -> vocab ids
        owner = [-1]
        for j, lang in enumerate(self.languages):
            # local tokens that some square of this language still writes with its own tokens
            needed = set(range(lang.n_tokens)) if j == 0 else {
                t for s, toks in zip(PLAYABLE_SQUARES, lang.square_tokens) if s not in anchored
                for t in toks}
            local_to_id = {t: next_id + i for i, t in enumerate(sorted(needed))}
            next_id += len(needed)
            owner += [j] * len(needed)
            codes.append({s: codes[0][s] if (j > 0 and s in anchored) else
                          tuple(local_to_id[t] for t in toks)
                          for s, toks in zip(PLAYABLE_SQUARES, lang.square_tokens)})
        self._first_output_id = next_id
        if self.output_language is not None:
            out_lang = self.output_language
            codes.append({s: (next_id + toks[0],) for s, toks in
                          zip(PLAYABLE_SQUARES, out_lang.square_tokens)})
            owner += [n_lang] * out_lang.n_tokens
            next_id += out_lang.n_tokens
        self.vocab_size = next_id
        self._codes = codes
        self._k = [max(len(c) for c in code.values()) for code in codes]
        self.k_max = max(self._k[:n_lang])
        k = self.k_max

        # lookup tables, row = language * 65 + square + 1; row 0 of each language is the -1
        slots = np.zeros((len(codes) * _ROWS, k), dtype=np.int64)
        lengths = np.zeros(len(codes) * _ROWS, dtype=np.int64)
        for j, code in enumerate(codes):
            for s, ids in code.items():
                slots[j * _ROWS + s + 1, :len(ids)] = ids
                lengths[j * _ROWS + s + 1] = len(ids)
        self._slots, self._lengths = slots, lengths
        self.context_length = int(max(lengths[j * _ROWS:(j + 1) * _ROWS].sum() for j in range(n_lang)))

        self.token_language = np.asarray(owner, dtype=np.int64)
        squares_of: list[set[int]] = [set() for _ in range(next_id)]
        position = np.full(next_id, -1, dtype=np.int64)
        member = np.zeros((n_lang, next_id), dtype=bool)
        for j, code in enumerate(codes):
            for s, ids in code.items():
                for pos, i in enumerate(ids):
                    squares_of[i].add(s)
                    position[i] = pos
                    if j < n_lang:
                        member[j, i] = True
        self.token_square = np.asarray([next(iter(q)) if len(q) == 1 else -1 for q in squares_of],
                                       dtype=np.int64)
        self._position, self._member = position, member

        # decoding: key of a move = sum of id * V**position, offset by language * V**K
        span = next_id ** k
        if n_lang * span >= 2 ** 62:
            raise LanguageError(f"{n_lang} languages of up to {k} tokens per square over "
                                f"{next_id} ids: too many to decode with 64-bit keys")
        table: dict[int, int] = {}
        prefixes: dict[int, int] = {}
        for j, code in enumerate(codes[:n_lang]):
            for s, ids in code.items():
                for m in range(1, len(ids) + 1):
                    key = j * span + sum(i * next_id ** p for p, i in enumerate(ids[:m]))
                    (table if m == len(ids) else prefixes)[key] = s
        merged = {**{key: -2 for key in prefixes}, **table}    # -2: a move cut short
        order = sorted(merged)
        self._keys = np.asarray(order, dtype=np.int64)
        self._key_squares = np.asarray([merged[key] for key in order], dtype=np.int64)
        self._span = span
        self._torch_cache: dict = {}

    # ----------------------------------------------------------------- naming
    @classmethod
    def from_spec(cls, spec: str | Sequence[str], *, n_anchors: int = 0,
                  anchors: Iterable[int | str] | None = None, unified: bool = False,
                  seed: int = 0) -> LanguageSet:
        """Languages from ``"atomic,split,compositional"`` or ``["atomic", "split:3"]``
        (``split:k``: up to k tokens per square; ``NAME=kind`` names a language, else
        ``L0``, ``L1``, ...); `unified` adds an atomic output-only language ``"out"``.
        `seed` seeds split languages (each from ``(seed, its index)``) and the anchors.

        >>> LanguageSet.from_spec("atomic, en=split:2", unified=True).names
        ('L0', 'en')
        """
        if not isinstance(spec, (str, Sequence)):
            raise LanguageError(f"language spec {spec!r}: expected comma-separated kinds "
                                "like 'atomic,split:3,compositional', or a list of them")
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        if not items or not all(isinstance(i, str) and i.strip() for i in items):
            raise LanguageError(f"language spec {spec!r}: expected comma-separated kinds "
                                "like 'atomic,split:3,compositional'")
        check_int("seed", seed, least=0, error=LanguageError)
        languages = [_parse_spec_item(item, i, seed) for i, item in enumerate(items)]
        return cls(languages, anchors=anchors, n_anchors=n_anchors, seed=seed,
                   output_language=Language.atomic("out") if unified else None)

    def check_model(self, model) -> None:
        """`LanguageError` unless `model` (a `GPT`, possibly compiled or DDP-wrapped, or its
        `GPTConfig`) reads this set's tokens: its vocabulary is the set's. (Its context
        may be shorter than the set's longest game: Othello-GPT reads 59 of 60 moves.)"""
        config = getattr(model, "config", None) or model
        if not hasattr(config, "vocab_size"):   # a compiled or wrapped model
            from .model import unwrap
            config = unwrap(model).config
        if config.vocab_size != self.vocab_size:
            raise LanguageError(f"the model has a vocabulary of {config.vocab_size} tokens; "
                                f"this language set ({', '.join(self.names)}) has "
                                f"{self.vocab_size}: expected the language set the model was "
                                "trained with (load_model returns it)")

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the input languages."""
        return tuple(lang.name for lang in self.languages)

    @property
    def n_languages(self) -> int:
        """Number of input languages."""
        return len(self.languages)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    def language_index(self, language: int | str | Language) -> int:
        """Index of an input language (name, index or `Language`); the output language
        (by name or object) has index ``n_languages``."""
        if isinstance(language, Language):
            for j, lang in enumerate(self.languages + (self.output_language,)):
                if lang == language:
                    return j
            raise LanguageError(f"language {language.name!r} is not in this set "
                                f"(languages {list(self.names)})")
        if _is_int(language):
            if 0 <= language < self.n_languages:
                return int(language)
            raise LanguageError(f"language index {language}: expected 0..{self.n_languages - 1}")
        if isinstance(language, str):
            if language in self.names:
                return self.names.index(language)
            if self.output_language is not None and language == self.output_language.name:
                return self.n_languages
        known = list(self.names) + ([self.output_language.name] if self.output_language else [])
        raise LanguageError(f"unknown language {language!r}; expected one of {known} or an index")

    def select_languages(self, languages=None, *, least: int = 1,
                         error: type[MothelloError] = LanguageError) -> list[str]:
        """Input language names: all of them (``languages=None``) or `languages`, each an
        input language named once, at least `least` of them; else `error` naming the list.
        One name alone (a string) is a list of one."""
        if isinstance(languages, str):
            languages = [languages]
        names = list(self.names) if languages is None else list(languages)
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise error(f"languages={names}: {unknown} are not input languages; expected "
                        f"some of {list(self.names)}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise error(f"languages={names} lists {repeated} more than once: expected "
                        "distinct languages")
        if len(names) < least:
            given = f"languages={names}" if names else "languages is empty"
            raise error(f"{given}: expected at least {least} input language(s)")
        return names

    def _input_index(self, language) -> int:
        j = self.language_index(language)
        if j == self.n_languages:
            raise LanguageError(f"language {language!r} is the output-only language; "
                                f"expected an input language {list(self.names)}")
        return j

    # ----------------------------------------------------------------- tables
    def token_ids(self, language: int | str | Language) -> np.ndarray:
        """``int64 [64, K]``: vocab ids of each square's tokens in `language` (input or
        output), -1 padded; K is the language's longest square; centre rows are all -1."""
        j = self.language_index(language)
        k = self._k[j]
        rows = self._slots[j * _ROWS + 1:(j + 1) * _ROWS, :k].copy()
        rows[np.arange(k) >= self._lengths[j * _ROWS + 1:(j + 1) * _ROWS, None]] = -1
        return rows

    @property
    def translation_table(self) -> np.ndarray:
        """``int64 [n_languages, 64, K_max]``: `token_ids` of every input language."""
        out = np.full((self.n_languages, 64, self.k_max), -1, dtype=np.int64)
        for j in range(self.n_languages):
            ids = self.token_ids(j)
            out[j, :, :ids.shape[1]] = ids
        return out

    @property
    def output_id_range(self) -> tuple[int, int] | None:
        """``(first, stop)`` of the output language's ids, or None."""
        if self.output_language is None:
            return None
        return self._first_output_id, self.vocab_size

    def _torch_tables(self, device):
        import torch
        key = str(device)
        if key not in self._torch_cache:
            self._torch_cache[key] = {
                name: torch.as_tensor(value, device=device) for name, value in
                (("slots", self._slots), ("lengths", self._lengths),
                 ("playable", PLAYABLE_LOOKUP), ("output", self._output_lut()))}
        return self._torch_cache[key]

    def _output_lut(self) -> np.ndarray:
        lut = np.full(_ROWS, IGNORE_INDEX, dtype=np.int64)
        if self.output_language is not None:
            j = self.n_languages
            lut[1:] = self._slots[j * _ROWS + 1:(j + 1) * _ROWS, 0]
        return lut

    # --------------------------------------------------------------- encoding
    def _check_games(self, games, *, squares: bool = True):
        """Validate `games` (numpy-like or tensor) by `validate_games`' rule and return it
        (numpy: C-contiguous int8; a tensor as it is).

        Kept apart from `validate_games` only for tensors on a device, whose entries are
        checked there by the same shared check (reading two flags back, never the games);
        numpy games and CPU tensors (on a numpy view) go through `validate_games` itself.
        ``squares=False`` checks only dtype and shape for C-contiguous int8 numpy games
        (and CPU tensors of them): the compiled encoder checks their squares as it reads
        them and calls back here with ``squares=True`` to name a bad one."""
        if _is_tensor(games) and games.device.type == "cpu" and not games.requires_grad:
            self._check_games(games.numpy(), squares=squares)   # on a view of the tensor
            return games
        if _is_tensor(games):
            import torch
            integer = not (games.dtype.is_floating_point or games.dtype.is_complex
                           or games.dtype == torch.bool)
            check_games_layout(integer, games.dtype, games.shape, "games")
            check_game_squares(games.long(), self._torch_tables(games.device)["playable"],
                                "games")
            return games
        arr = np.asarray(games)
        if not squares and arr.dtype == np.int8 and arr.flags.c_contiguous:
            check_games_layout(True, arr.dtype, arr.shape, "games")
            return arr
        return validate_games(arr)

    def _check_rows(self, language, n: int, like):
        """An int language, or per-row int64 indices (numpy or tensor like `like`)."""
        if isinstance(language, np.ndarray) and language.ndim == 0:
            language = language.item()   # a 0-d array is one language, not per-row ones
        if isinstance(language, (str, Language)) or _is_int(language):
            return self._input_index(language)
        if _is_tensor(like):
            import torch
            rows = torch.as_tensor(language, device=like.device)
            integer = not (rows.dtype == torch.bool or rows.dtype.is_floating_point
                           or rows.dtype.is_complex)
        else:
            rows = np.asarray(language)
            integer = rows.dtype.kind in "iu"
        if not integer:
            raise LanguageError(f"language of dtype {rows.dtype}: expected a name, an index "
                                "or integer per-row indices")
        rows = rows.long() if _is_tensor(rows) else rows.astype(np.int64)
        if tuple(rows.shape) != (n,):
            raise LanguageError(f"per-row languages have shape {tuple(rows.shape)}; expected ({n},)")
        if n and (int(rows.min()) < 0 or int(rows.max()) >= self.n_languages):
            raise LanguageError(f"per-row languages range {int(rows.min())}..{int(rows.max())}; "
                                f"expected 0..{self.n_languages - 1}")
        return rows

    def encode(self, games, language, *, threads: int | None = None,
               out: Encoded | None = None) -> Encoded:
        """Write `games` in `language`.

        games: ``int8 [n, 60]`` (numpy, or a torch tensor on any device); language: a
        name, an index or a `Language`, or per-row indices ``int64 [n]`` (a mixed batch).
        Returns an `Encoded` whose arrays are of the kind and device of `games`:
        ``tokens`` and ``move_index`` ``int64 [n, T]``, ``move_end`` ``bool [n, T]``,
        with ``T = context_length`` whatever the languages. Numpy arrays and CPU tensors
        are encoded by the compiled encoder on `threads` threads (None: all cores), in
        chunks of games; tensors on other devices by torch ops there. `out`: an `Encoded` of numpy arrays
        of the right shapes and dtypes to write into (numpy games only), which saves
        the first touch of fresh memory when encoding many batches.

        >>> ls = LanguageSet([Language.split("S", seed=2)])
        >>> ls.token_ids("S")[[19, 18]].tolist()          # c4 is 2 tokens, c3 is 1
        [[37, 38, -1], [36, -1, -1]]
        >>> enc = ls.encode([[19, 18] + [-1] * 58], "S")
        >>> enc.tokens[0, :4].tolist(), enc.move_index[0, :4].tolist(), enc.move_end[0, :4].tolist()
        ([37, 38, 36, 0], [0, 0, 1, -1], [False, True, True, False])
        """
        games = self._check_games(games, squares=False)
        rows = self._check_rows(language, games.shape[0], games)
        if out is not None:
            shape = (games.shape[0], self.context_length)
            wanted = (("tokens", np.int64), ("move_index", np.int64), ("move_end", np.bool_))
            if _is_tensor(games) or not all(
                    isinstance(getattr(out, f), np.ndarray) and getattr(out, f).shape == shape
                    and getattr(out, f).dtype == d and getattr(out, f).flags.c_contiguous
                    and getattr(out, f).flags.writeable
                    for f, d in wanted):
                raise LanguageError(f"out: expected an Encoded of writable, C-contiguous numpy "
                                    f"arrays of shape {shape} (int64, int64, bool) and numpy "
                                    "games")
        if _is_tensor(games) and games.device.type != "cpu":
            self._check_fits(games, rows)   # the compiled encoder checks numpy and CPU games
        return self._encode(games, rows, threads, out)

    def _check_fits(self, games, rows) -> None:
        """LanguageError unless each game (a tensor) written in its language (every input
        language when `rows` is None) fits the context; on a device, this reads a flag back."""
        lengths = self._torch_tables(games.device)["lengths"]
        languages = range(self.n_languages) if rows is None else [rows]
        chunk = CHUNK_GAMES * 64                                     # bounded temporaries
        for start in range(0, games.shape[0], chunk):
            table_row = games[start:start + chunk].long() + 1
            for j in languages:
                offset = j * _ROWS if _is_int(j) else j[start:start + chunk, None] * _ROWS
                too_long = lengths[table_row + offset].sum(1) > self.context_length   # [chunk]
                if bool(too_long.any()):
                    raise LanguageError(f"game {start + int(too_long.nonzero()[0, 0])} does not "
                                        f"fit the context length {self.context_length}")

    def _encode(self, games, rows, threads: int | None = None, out: Encoded | None = None
                ) -> Encoded:
        """`encode` of validated games and languages."""
        if not _is_tensor(games):
            arrays = self._encode_numpy(games, rows, threads, out)
        elif games.device.type == "cpu":   # numpy views of the tensors, no copies
            import torch
            arrays = self._encode_numpy(games.numpy().astype(np.int8, copy=False),
                                        rows if _is_int(rows) else rows.numpy(), threads)
            arrays = tuple(torch.from_numpy(a) for a in arrays)
        else:
            arrays = self._encode_torch(games, rows)
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
        language = (np.full(n, rows, dtype=np.int64) if _is_int(rows)
                    else np.ascontiguousarray(rows, dtype=np.int64))
        games = np.ascontiguousarray(games, dtype=np.int8)
        end_bytes = move_end.view(np.uint8)
        status = np.empty(n, dtype=np.int64)

        def work(start: int, stop: int) -> None:
            _engine.encode_into(games[start:stop], language[start:stop], self._slots,
                                self._lengths, tokens[start:stop], move_index[start:stop],
                                end_bytes[start:stop], PAD_ID, status[start:stop])

        run_in_chunks(n, resolve_threads(threads), work, False, "encoding games")
        if n and status.min() < 0:
            self._check_games(games)   # names the bad square
            raise LanguageError(f"game {int(np.flatnonzero(status < 0)[0])} does not fit the "
                                f"context length {T}")
        return tokens, move_index, move_end

    def _encode_torch(self, games, rows):
        import torch
        tables = self._torch_tables(games.device)
        n, T, k = games.shape[0], self.context_length, self.k_max
        table_row = games.long() + 1
        table_row = table_row + (rows * _ROWS if _is_int(rows) else rows[:, None] * _ROWS)
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

    # --------------------------------------------------------------- decoding
    def decode(self, tokens, language=None):
        """Games from token ids: ``int64 [n, T]`` (numpy or tensor; pad 0 at the end of a
        row) -> ``int8 [n, 60]`` of the same kind and device.

        `language` (name or index) fixes the language of every row; None infers it per
        row. Raises `LanguageError` on a token that belongs to no input language, a
        multi-token move cut short, tokens after padding, or a row mixing languages.
        """
        if _is_tensor(tokens):
            import torch
            games = self._decode_numpy(tokens.detach().cpu().numpy(), language)
            return torch.from_numpy(games).to(tokens.device)
        return self._decode_numpy(np.asarray(tokens), language)

    def _bad(self, mask: np.ndarray, tokens: np.ndarray, message: str) -> None:
        if mask.any():
            r, t = (int(v) for v in np.argwhere(mask)[0])
            row = " ".join(str(int(v)) for v in tokens[r, max(0, t - 3):t + 4])
            raise LanguageError(f"row {r}, position {t} (token {int(tokens[r, t])}; around: {row}): "
                                + message)

    def _decode_numpy(self, tokens: np.ndarray, language) -> np.ndarray:
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
        self._bad(present & (owner == self.n_languages), tokens,
                  "belongs to the output-only language, which is not an input language")
        after_pad = np.zeros_like(present)
        after_pad[:, 1:] = present[:, 1:] & ~present[:, :-1]
        self._bad(after_pad, tokens, "comes after padding; expected padding only at the end")
        if language is not None:
            j = self._input_index(language)
            outside = present & ~self._member[j][tokens]
            self._bad(outside, tokens, f"is not a token of language {self.names[j]!r} (it is "
                      "from another language: a mix of languages)")
            row_language = np.full(n, j, dtype=np.int64)
        else:
            fits = (self._member[:, tokens] | ~present).all(axis=2)        # [n_lang, n]
            mixed = ~fits.any(axis=0)
            if mixed.any():
                r = int(np.flatnonzero(mixed)[0])
                used = sorted({self.names[int(o)] for o in owner[r][present[r]]})
                raise LanguageError(f"row {r} mixes languages {used}: no single input language "
                                    "has all of its tokens")
            row_language = fits.argmax(axis=0)

        position = self._position[tokens]                   # sub-token index within a move
        start = present & (position == 0)
        t = np.arange(T)
        last_start = np.maximum.accumulate(np.where(start, t, -1), axis=1)
        self._bad(present & ((last_start < 0) | (position != t - last_start)), tokens,
                  "sub-tokens out of order: a truncated or misordered multi-token move")
        n_moves = start.sum(1)
        if n and n_moves.max() > GAME_PLIES:
            r = int(np.argmax(n_moves))
            raise LanguageError(f"row {r} holds {int(n_moves[r])} moves; expected at most 60")
        key = np.zeros((n, T), dtype=np.int64)
        for j in range(self.k_max):                         # sub-token slots, not moves
            shifted_tok = np.zeros((n, T), dtype=np.int64)
            shifted_pos = np.full((n, T), -1, dtype=np.int64)
            shifted_tok[:, :max(T - j, 0)] = tokens[:, j:]   # nothing when the row is <= j long
            shifted_pos[:, :max(T - j, 0)] = position[:, j:]
            key += np.where(shifted_pos == j, shifted_tok * V ** j, 0)
        key += row_language[:, None] * self._span
        found = np.searchsorted(self._keys, key).clip(0, len(self._keys) - 1)
        square = np.where(self._keys[found] == key, self._key_squares[found], -3)
        self._bad(start & (square == -2), tokens,
                  "a multi-token move is cut short (truncated): its later sub-tokens are missing")
        self._bad(start & (square == -3), tokens,
                  "these tokens spell no square in the row's language")
        games = np.full((n, GAME_PLIES), -1, dtype=np.int8)
        move = start.cumsum(1) - 1
        games[np.nonzero(start)[0], move[start]] = square[start]
        return games

    # ---------------------------------------------------------------- targets
    def output_ids(self, games):
        """``int64 [n, 60]``: each move's id in the output language, -100 after the end
        (numpy or tensor like `games` int8 [n, 60]). Needs an output language."""
        self._need_output()
        games = self._check_games(games)
        if _is_tensor(games):
            return self._torch_tables(games.device)["output"][games.long() + 1]
        return self._output_lut()[games.astype(np.intp) + 1]

    def _need_output(self) -> None:
        if self.output_language is None:
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
        tokens = encoded.tokens
        if _is_tensor(tokens) and tokens.device.type == "cpu":      # numpy on views, no copies
            import torch
            views = Encoded(_to_numpy(tokens), _to_numpy(encoded.move_index),
                            _to_numpy(encoded.move_end), encoded.language,
                            None if encoded.games is None else _to_numpy(encoded.games))
            return torch.from_numpy(self.make_targets(views, objective))
        if _is_tensor(tokens):
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
        self._need_output()
        games = encoded.games
        if games is None:
            games = self.decode(tokens)
        out = self._torch_tables(tokens.device)["output"][games.long() + 1] if _is_tensor(tokens) \
            else self._output_lut()[np.asarray(games).astype(np.intp) + 1]
        following = full_like(out, IGNORE_INDEX)
        following[:, :-1] = out[:, 1:]
        move = xp_where(encoded.move_index >= 0, encoded.move_index, 0)
        picked = following[arange(tokens.shape[0])[:, None], move]
        return xp_where(encoded.move_end, picked, full_like(picked, IGNORE_INDEX))

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """JSON-ready description (enough to rebuild the same id space)."""
        return {"format_version": FORMAT_VERSION,
                "languages": [lang.to_dict() for lang in self.languages],
                "anchors": [square_name(s) for s in self.anchors],
                "output_language": None if self.output_language is None
                else self.output_language.to_dict(),
                "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, d: Mapping) -> LanguageSet:
        if not isinstance(d, Mapping) or d.get("format_version") != FORMAT_VERSION:
            raise LanguageError(f"language set dict with format_version "
                                f"{d.get('format_version') if isinstance(d, Mapping) else None!r}; "
                                f"expected {FORMAT_VERSION}")
        try:
            out = d["output_language"]
            made = cls([Language.from_dict(x) for x in d["languages"]], anchors=d["anchors"],
                       output_language=None if out is None else Language.from_dict(out))
        except (KeyError, TypeError) as exc:
            raise LanguageError(f"language set dict: missing or bad field ({exc!r})") from None
        if "vocab_size" in d and d["vocab_size"] != made.vocab_size:
            raise LanguageError(f"language set dict says vocab_size {d['vocab_size']}; its "
                                f"languages give {made.vocab_size}")
        return made

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> LanguageSet:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LanguageError(f"language set JSON is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def save(self, path) -> None:
        """Write the set as JSON to `path` atomically."""
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path) -> LanguageSet:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise LanguageError(f"cannot read language set {str(path)!r}: {exc}") from None
        try:
            return cls.from_json(text)
        except LanguageError as exc:
            raise LanguageError(f"language set {str(path)!r}: {exc}") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, LanguageSet) and self.to_dict() == other.to_dict()

    __hash__ = None

    def __repr__(self) -> str:
        out = f", output_language={self.output_language.name!r}" if self.output_language else ""
        return (f"LanguageSet({list(self.names)}, kinds={[lang.kind for lang in self.languages]}, "
                f"anchors={len(self.anchors)}{out}, vocab_size={self.vocab_size})")


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)
