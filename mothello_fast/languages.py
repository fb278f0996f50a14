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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .encoding import (IGNORE_INDEX, OBJECTIVES, PAD_ID, CodeTables, Encoded, is_int,
                       is_tensor)
from .errors import InvalidSquareError, LanguageError, MothelloError, check_int
from .othello import PLAYABLE_SQUARES, parse_square, square_name
from .othello import generate_games  # noqa: F401  (the docstring examples use it)
from .storage import as_path, atomic_write_json

# OBJECTIVES, PAD_ID, IGNORE_INDEX and Encoded live in `encoding`; re-exported with the set
__all__ = ["KINDS", "OBJECTIVES", "PAD_ID", "IGNORE_INDEX", "Language", "LanguageSet", "Encoded",
           "check_language_set", "MAX_TOKENS_PER_SQUARE"]

KINDS = ("atomic", "split", "compositional", "custom")
MAX_TOKENS_PER_SQUARE = 60   # a game of 60 such moves is a context of 3,600 tokens
FORMAT_VERSION = 1

_PLAYABLE_INDEX = np.full(64, -1, dtype=np.int64)
_PLAYABLE_INDEX[list(PLAYABLE_SQUARES)] = np.arange(len(PLAYABLE_SQUARES))


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
            if not tokens or not all(is_int(t) and t >= 0 for t in tokens):
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
        if max(position) + 1 != len(position):   # never build the range of a huge token id
            unused = [t for t in range(len(position) + 1) if t not in position][:10]
            raise LanguageError(f"language {self.name!r}: local tokens {unused} (and perhaps "
                                f"more) are unused; expected the tokens to be exactly "
                                f"0..{len(position) - 1}, each used")

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
        max_tokens = check_int("max_tokens", max_tokens, least=1, most=MAX_TOKENS_PER_SQUARE,
                               error=LanguageError)
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
        languages = tuple(languages) if isinstance(languages, Iterable) \
            and not isinstance(languages, (str, bytes)) else ()
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
        elif is_int(anchors):
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
        self.token_language = np.asarray(owner, dtype=np.int64)
        self.encoding = CodeTables(codes, self.names, self.token_language)

    @property
    def k_max(self) -> int:
        """Most tokens of one square in any input language."""
        return self.encoding.k_max

    @property
    def context_length(self) -> int:
        """Tokens of the longest game in any input language."""
        return self.encoding.context_length

    @property
    def token_square(self) -> np.ndarray:
        """``int64 [vocab_size]``: the square each id writes (-1: none, or several)."""
        return self.encoding.token_square

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
        if is_int(language):
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
        if languages is not None and (isinstance(languages, bytes)
                                      or not isinstance(languages, Iterable)):
            raise error(f"languages={languages!r}: expected a language name or a list of them")
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

    def input_index(self, language) -> int:
        """Index of an input language (name, index or `Language`); the output-only
        language is refused (`LanguageError`)."""
        j = self.language_index(language)
        if j == self.n_languages:
            raise LanguageError(f"language {language!r} is the output-only language; "
                                f"expected an input language {list(self.names)}")
        return j

    # ----------------------------------------------------------------- tables
    def token_ids(self, language: int | str | Language) -> np.ndarray:
        """``int64 [64, K]``: vocab ids of each square's tokens in `language` (input or
        output), -1 padded; K is the language's longest square; centre rows are all -1."""
        return self.encoding.token_ids(self.language_index(language))

    def move_codes(self, language: int | str | Language):
        """`encoding.MoveCodes` of `language` (input or output): how evaluation reads a
        model's predictions, against the table `decode` reads."""
        return self.encoding.move_codes(self.language_index(language))

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

    # --------------------------------------------------------------- encoding
    def check_rows(self, language, n: int, like):
        """`language` (a name, an index or a `Language`: one input language) as its index,
        or per-row indices (``int64 [n]``) checked, numpy or a tensor like `like`."""
        if isinstance(language, np.ndarray) and language.ndim == 0:
            language = language.item()   # a 0-d array is one language, not per-row ones
        if isinstance(language, (str, Language)) or is_int(language):
            return self.input_index(language)
        if is_tensor(like):
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
        rows = rows.long() if is_tensor(rows) else rows.astype(np.int64)
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
        games = self.encoding.check_games(games, squares=False)
        rows = self.check_rows(language, games.shape[0], games)
        return self.encoding.encode(games, rows, threads=threads, out=out)

    # --------------------------------------------------------------- decoding
    def decode(self, tokens, language=None):
        """Games from token ids: ``int64 [n, T]`` (numpy or tensor; pad 0 at the end of a
        row) -> ``int8 [n, 60]`` of the same kind and device.

        `language` (name or index) fixes the language of every row; None infers it per
        row. Raises `LanguageError` on a token that belongs to no input language, a
        multi-token move cut short, tokens after padding, or a row mixing languages.
        """
        return self.encoding.decode(tokens, None if language is None
                                    else self.input_index(language))

    # ---------------------------------------------------------------- targets
    def output_ids(self, games):
        """``int64 [n, 60]``: each move's id in the output language, -100 after the end
        (numpy or tensor like `games` int8 [n, 60]). Needs an output language."""
        return self.encoding.output_ids(games)

    def make_targets(self, encoded: Encoded, objective: str = "standard"):
        """Targets ``int64 [n, T]`` for `encoded` (same kind and device), -100 where ignored.

        ``"standard"``: ``target[t] = tokens[t+1]``, -100 where that is pad or past the end.
        ``"unified"``: at the last sub-token of move i, the output-language id of move
        i+1 (when the game has one); -100 everywhere else.
        """
        return self.encoding.make_targets(encoded, objective)

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
        if not isinstance(text, (str, bytes, bytearray)):
            raise LanguageError(f"language set JSON {text!r}: expected a str")
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise LanguageError(f"language set JSON is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def save(self, path) -> None:
        """Write the set as JSON to `path` atomically."""
        atomic_write_json(as_path(path, "path", error=LanguageError), self.to_dict())

    @classmethod
    def load(cls, path) -> LanguageSet:
        path = as_path(path, "path", error=LanguageError)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
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


def check_language_set(value, name: str = "language_set") -> LanguageSet:
    """`value` if it is a `LanguageSet`, else a `LanguageError` naming `name`."""
    if not isinstance(value, LanguageSet):
        raise LanguageError(f"{name}={value!r}: expected a LanguageSet (LanguageSet.from_spec, "
                            "or the one load_model returns)")
    return value
