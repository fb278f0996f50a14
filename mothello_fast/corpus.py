"""Multilingual corpora: batches of games written in a set of languages, built on the
device that trains on them.

The whole game array lives on `device` (``int8``, 60 bytes a game) and a batch is a
handful of torch ops there: draw game indices and languages, gather the games,
encode them with the language set's lookup tables, build targets. No Python loop
runs over games or moves, and nothing waits on the host.

``Corpus.batch(step)`` is a pure function of ``(seed, step)``: training resumes at
step s by asking for batch s. Games are drawn with replacement (no epochs), from a
random stream keyed by ``(seed, step)`` on the corpus device; the same seed gives
the same batches on the same kind of device (CPU and CUDA streams differ).

>>> from mothello_fast import LanguageSet, generate_games
>>> corpus = Corpus(generate_games(100, seed=0), LanguageSet.from_spec("atomic,split"),
...                 batch_size=8, seed=0)
>>> batch = corpus.batch(3)
>>> tuple(batch.tokens.shape), bool((batch.tokens == corpus.batch(3).tokens).all())
((8, 123), True)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .devices import check_fits_in_memory, resolve_device
from .errors import LanguageError, check_int
from .languages import OBJECTIVES, LanguageSet

__all__ = ["Batch", "Corpus", "MODES"]

MODES = ("sample", "parallel")
# raw draws are uniform in [0, 2**62); modulo any corpus size below 2**40 their bias is < 1e-6
_DRAW_RANGE = 2 ** 62


@dataclass
class Batch:
    """One batch, all torch tensors on the corpus device; B rows.

    Attributes:
        tokens: ``int64 [B, T]`` token ids, pad 0.
        targets: ``int64 [B, T]`` targets of the corpus objective, -100 ignored.
        language_ids: ``int64 [B]`` input-language index of each row.
        move_end: ``bool [B, T]`` last sub-token of each move.
        move_index: ``int64 [B, T]`` move (0..59) of each token, -1 on pad.
        game_index: ``int64 [B]`` row of the corpus games array each row is.
        games: ``int8 [B, 60]`` the games themselves.
    """
    tokens: torch.Tensor
    targets: torch.Tensor
    language_ids: torch.Tensor
    move_end: torch.Tensor
    move_index: torch.Tensor
    game_index: torch.Tensor
    games: torch.Tensor | None = None


def language_subsets(language_set: LanguageSet, language_games, n_games: int
                     ) -> list[np.ndarray | None]:
    """`language_games` (see `Corpus`) as the corpus reads it: per input language, the
    sorted distinct game indices ``int64 [m]`` it may be drawn with, or None (all games);
    a `LanguageError` names a subset that is no 1-D index array or bool mask of `n_games`."""
    allowed: list[np.ndarray | None] = [None] * language_set.n_languages
    if language_games is None:
        return allowed
    if not isinstance(language_games, Mapping):
        raise LanguageError("language_games: expected a dict language name -> game indices "
                            f"or mask, got {type(language_games).__name__}")
    for name, subset in language_games.items():
        j = language_set.input_index(name)
        subset = subset.detach().cpu().numpy() if isinstance(subset, torch.Tensor) \
            else np.asarray(subset)
        if subset.shape == (0,) and subset.dtype != np.bool_:   # [] (float64): no games
            subset = subset.astype(np.int64)
        if subset.dtype == np.bool_:
            if subset.shape != (n_games,):
                raise LanguageError(f"language_games[{name!r}] is a mask of shape "
                                    f"{subset.shape}; expected ({n_games},)")
            subset = np.flatnonzero(subset)
        elif subset.dtype.kind not in "iu" or subset.ndim != 1:
            raise LanguageError(f"language_games[{name!r}] has dtype {subset.dtype}, shape "
                                f"{subset.shape}; expected 1-D game indices or a bool mask")
        elif len(subset) and (subset.min() < 0 or subset.max() >= n_games):
            raise LanguageError(f"language_games[{name!r}] holds indices "
                                f"{int(subset.min())}..{int(subset.max())}; expected 0.."
                                f"{n_games - 1}")
        allowed[j] = np.unique(subset.astype(np.int64))
    return allowed


def _step_seed(seed: int, step: int) -> int:
    state = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])      # < 2**63, a valid torch seed


class Corpus:
    """Batches of `games` written in the languages of `language_set`.

    Args:
        games: ``int8 [n, 60]`` (numpy, a `GameDataset`, or a tensor).
        language_set: the `LanguageSet` (its input languages are drawn; its output
            language, if any, gives the targets of the unified objective).
        batch_size: games per batch.
        objective: ``"standard"`` or ``"unified"`` (see `LanguageSet.make_targets`).
        mode: ``"sample"``: each row is a game drawn in a language drawn per row, with
            probabilities `weights` (over the input languages; default equal).
            ``"parallel"``: `batch_size` games, each written in every input language;
            rows are **language-major**: row ``l * batch_size + i`` is game i in
            language l, so ``tokens.view(n_languages, batch_size, T)`` separates them.
        weights: per input language, non-negative, any positive total (sample mode only);
            a sequence in language order or a dict name -> weight (missing names: 0).
        language_games: ``{language name: game indices int [m] or bool mask [n]}``: the
            games that language may be drawn with (other languages: all games). In
            parallel mode the games drawn are those every language may be drawn with.
        seed: seeds every draw; batch s depends only on ``(seed, s)``.
        device: where the games live and batches are built ("auto": CUDA when present).
    """

    def __init__(self, games, language_set: LanguageSet, *, batch_size: int,
                 objective: str = "standard", mode: str = "sample", weights=None,
                 language_games: Mapping[str, np.ndarray] | None = None, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if not isinstance(language_set, LanguageSet):
            raise LanguageError(f"language_set={language_set!r}: expected a LanguageSet")
        check_int("batch_size", batch_size, least=1, error=LanguageError)
        if objective not in OBJECTIVES:
            raise LanguageError(f"objective={objective!r}: expected one of {OBJECTIVES}")
        if objective == "unified" and language_set.output_language is None:
            raise LanguageError("objective='unified' needs a language set with an output "
                                "language (LanguageSet.from_spec(..., unified=True))")
        if mode not in MODES:
            raise LanguageError(f"mode={mode!r}: expected one of {MODES}")
        check_int("seed", seed, least=0, error=LanguageError)
        self.language_set = language_set
        self.batch_size = int(batch_size)
        self.objective = objective
        self.mode = mode
        self.seed = int(seed)
        self.device = resolve_device(device)
        rows = self.batch_size * (language_set.n_languages if mode == "parallel" else 1)
        # tokens, targets, move index (int64) and move ends per position, and temporaries
        check_fits_in_memory(f"batch_size={batch_size}: a batch of {rows:,} rows",
                             rows * (2 * 25 * language_set.context_length + 60), self.device,
                             error=LanguageError)
        if isinstance(games, torch.Tensor):
            games = language_set.encoding.check_games(games.to(self.device))
            self.games = games.to(torch.int8)
        else:
            games = language_set.encoding.check_games(np.asarray(games))
            if not games.flags.writeable:   # a memory-mapped dataset: torch wants its own copy
                games = games.copy()
            self.games = torch.from_numpy(games).to(self.device)
        self.n_games = int(self.games.shape[0])
        if self.n_games == 0:
            raise LanguageError("a corpus needs at least one game; got 0")
        if self.device.type != "cpu":   # once here: batches are built without host reads
            language_set.encoding.check_fits(self.games, None)
        n_lang = language_set.n_languages
        allowed = language_subsets(language_set, language_games, self.n_games)
        if mode == "sample":
            probs = self._weights(weights)
            empty = [language_set.names[j] for j in range(n_lang) if probs[j] > 0 and
                     allowed[j] is not None and len(allowed[j]) == 0]
            if empty:
                raise LanguageError(f"languages {empty} have a positive weight but no games "
                                    "in language_games")
            self.weights = probs
            self._probs = torch.as_tensor(probs, dtype=torch.float64, device=self.device)
            if all(a is None for a in allowed):
                self._pool = None
            else:
                subsets = [np.arange(self.n_games) if a is None else a for a in allowed]
                sizes = np.array([len(a) for a in subsets], dtype=np.int64)
                self._pool = torch.as_tensor(np.concatenate(subsets), device=self.device)
                self._pool_size = torch.as_tensor(np.maximum(sizes, 1), device=self.device)
                self._pool_start = torch.as_tensor(np.cumsum(sizes) - sizes, device=self.device)
        else:
            if weights is not None:
                raise LanguageError("weights apply to mode='sample'; parallel mode writes every "
                                    "game in every language")
            self.weights = None
            common = None
            for a in allowed:
                if a is not None:
                    common = a if common is None else np.intersect1d(common, a)
            if common is not None and len(common) == 0:
                raise LanguageError("language_games leave no game that every language may be "
                                    "drawn with (parallel mode needs one)")
            self._pool = None if common is None else torch.as_tensor(common, device=self.device)

    def _weights(self, weights) -> np.ndarray:
        n_lang = self.language_set.n_languages
        if weights is None:
            return np.full(n_lang, 1.0 / n_lang)
        try:   # anything that is not numbers is refused below, as NaN
            if isinstance(weights, Mapping):
                values = np.zeros(n_lang)
                for name, w in weights.items():
                    values[self.language_set.input_index(name)] = w
            elif isinstance(weights, (Sequence, np.ndarray, torch.Tensor)) \
                    and not isinstance(weights, str):
                values = np.asarray(weights, dtype=np.float64)
            else:
                values = np.array([np.nan])
        except (TypeError, ValueError) as exc:
            if isinstance(exc, LanguageError):   # a language name the set lacks
                raise
            values = np.array([np.nan])
        if values.shape != (n_lang,) or not np.isfinite(values).all() or (values < 0).any() \
                or values.sum() <= 0:
            raise LanguageError(f"weights={weights!r}: expected {n_lang} non-negative numbers "
                                f"(one per input language {list(self.language_set.names)}) with a "
                                "positive sum")
        return values / values.sum()

    @property
    def rows_per_batch(self) -> int:
        """Rows of a batch: batch_size, times n_languages in parallel mode."""
        return self.batch_size * (self.language_set.n_languages if self.mode == "parallel" else 1)

    def batch(self, step: int) -> Batch:
        """Batch number `step`, a pure function of ``(seed, step)``."""
        check_int("step", step, least=0, error=LanguageError)
        # a generator of this call's own, so that concurrent calls never share a stream
        gen = torch.Generator(device=self.device).manual_seed(_step_seed(self.seed, int(step)))
        B, n_lang, device = self.batch_size, self.language_set.n_languages, self.device
        draws = torch.randint(0, _DRAW_RANGE, (B,), generator=gen, device=device)
        if self.mode == "sample":
            languages = torch.multinomial(self._probs, B, replacement=True, generator=gen)
            if self._pool is None:
                game_index = draws % self.n_games
            else:
                game_index = self._pool[self._pool_start[languages]
                                        + draws % self._pool_size[languages]]
        else:
            game_index = draws % self.n_games if self._pool is None else \
                self._pool[draws % self._pool.shape[0]]
            game_index = game_index.repeat(n_lang)                        # language-major
            languages = torch.arange(n_lang, device=device).repeat_interleave(B)
        if device.type == "cpu":   # numpy's take: torch's CPU row gather is far slower here
            games = torch.from_numpy(self.games.numpy().take(game_index.numpy(), axis=0))
        else:
            games = self.games[game_index]
        encoded = self.language_set.encoding.encode_checked(games, languages)
        targets = self.language_set.make_targets(encoded, self.objective)
        return Batch(tokens=encoded.tokens, targets=targets, language_ids=languages,
                     move_end=encoded.move_end, move_index=encoded.move_index,
                     game_index=game_index, games=games)

    def __iter__(self):
        """Batches 0, 1, 2, ... forever."""
        step = 0
        while True:
            yield self.batch(step)
            step += 1

    def __repr__(self) -> str:
        return (f"Corpus({self.n_games} games, {self.language_set!r}, batch_size={self.batch_size}, "
                f"objective={self.objective!r}, mode={self.mode!r}, device={str(self.device)!r})")
