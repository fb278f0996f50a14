"""Hidden states of a model after each move of a set of games, with the engine's labels.

`collect_activations` runs a model (in eval mode: dropout off) over games written
in one language and keeps the residual stream at the last sub-token of each move
(``Encoded.move_end``; the first 59 moves by default, see below), row by row aligned
with the labels of the position after that move: the board (absolute and relative),
the legal next moves and the player.

**Layers: the one convention.** Every entry point that takes `layers` (the Python API
and the ``--layers`` of every command) reads them through `resolve_layers`:

- an integer ``l`` counts as Othello-GPT's and mOthello's probe tables do: layer 0 is
  the embeddings (``blocks.0.hook_resid_pre``) and layer ``l >= 1`` the residual stream
  after block ``l`` (``blocks.{l-1}.hook_resid_post``), so "layer 6" is the output of
  the sixth block;
- a TransformerLens key ``("resid_post", 5)`` counts blocks from 0, as
  ``cache["resid_post", 5]`` does (`model.act_name`): it is the same hook as layer 6;
- a hook name (``"blocks.5.hook_resid_post"``) or a glob pattern of hook names
  (``"blocks.*.hook_resid_post"``) is unambiguous in both conventions.

Results are labelled by the layer as given, with its hook name beside it.

By default only the positions after moves 0..58 are kept (``max_moves=59``): the
mOthello protocol scores probes over the first 59 moves, and the position after the
60th move has no next move for the model to predict.

With ``out_dir``, the collection streams to disk instead of filling memory: one
safetensors shard per `shard_games` games, each written atomically, and an
``index.json`` written last; re-running the same collection skips finished shards.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from .progress import progress_bar

from .errors import LanguageError, MothelloError, ProbeError, check_int, number_array
from .languages import check_language_set
from .model import unwrap
from .othello import replay, validate_games

__all__ = ["Activations", "collect_activations", "ParallelActivations", "collect_parallel",
           "hook_name", "resolve_layers", "match_layers", "check_games", "check_collection",
           "check_label_kind",
           "LABEL_KINDS", "LABEL_FIELDS", "PARALLEL_LABEL_FIELDS", "MAX_MOVES"]

LABEL_FIELDS = ("board", "relative", "legal_next", "player", "game", "move")
PARALLEL_LABEL_FIELDS = ("board", "relative", "game", "move", "square")
LABEL_KINDS = ("absolute", "relative")
MAX_MOVES = 59   # mOthello scores probes over the first 59 moves


def hook_name(layer: int | str, n_layers: int) -> str:
    """Hook name of `layer`: a hook name is returned as is; an integer ``l`` names the
    residual stream after ``l`` blocks (0: the embeddings).

    >>> hook_name(0, 8), hook_name(6, 8), hook_name("blocks.2.hook_mlp_out", 8)
    ('blocks.0.hook_resid_pre', 'blocks.5.hook_resid_post', 'blocks.2.hook_mlp_out')
    """
    if isinstance(layer, str):
        return layer
    try:
        layer = check_int("layer", layer, least=0, most=n_layers, error=ProbeError)
    except ProbeError as exc:
        raise ProbeError(f"{exc} (0 the embeddings, l the output of block l) or a hook "
                         "name") from None
    return "blocks.0.hook_resid_pre" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


def resolve_layers(model, layers: Sequence[int | str] | int | str) -> list[tuple[int | str, str]]:
    """`layers` (one or a sequence of integers, TransformerLens keys, hook names or glob
    patterns of hook names: the module docstring's convention) as ``(layer, hook name)``
    pairs of `model`, one per distinct hook, in the order given.

    A glob pattern gives one pair per matching hook, labelled with the hook name, as does a
    TransformerLens key (so that every label can be written to JSON); a hook
    named twice (``[1, 1]``, ``[1, "blocks.0.hook_resid_post"]``) keeps its first label.
    Raises `ProbeError` for an empty list, an unknown hook name or a pattern that
    matches nothing.
    """
    from .model import HookPoint

    gpt = unwrap(model)
    points = [name for name, module in gpt.named_modules() if isinstance(module, HookPoint)]
    layers = _layer_list(layers)
    pairs: dict[str, int | str] = {}
    for layer in layers:
        if not isinstance(layer, (int, str, tuple, np.integer)) or isinstance(layer, bool):
            raise ProbeError(f"layer {layer!r}: expected an integer, a hook name or a "
                             "TransformerLens key")
        if isinstance(layer, tuple):   # TransformerLens's ("resid_post", 5): blocks from 0
            name = _tl_key(layer)
            if name not in points:
                raise ProbeError(f"layer={layer!r} names {name!r}, not a hook point of the "
                                 f"model; expected one of {points}")
            pairs.setdefault(name, name)
            continue
        if isinstance(layer, str) and any(c in layer for c in "*?["):
            matched = [name for name in points if fnmatch.fnmatchcase(name, layer)]
            if not matched:
                raise ProbeError(f"layer pattern {layer!r} matches no hook point of the model; "
                                 f"expected a pattern of one of {points}")
            for name in matched:
                pairs.setdefault(name, name)
            continue
        name = hook_name(layer, gpt.config.n_layers)
        if name not in points:
            raise ProbeError(f"layer={layer!r} is not a hook point of the model; expected an "
                             f"integer 0..{gpt.config.n_layers} or one of {points}")
        pairs.setdefault(name, int(layer) if isinstance(layer, np.integer) else layer)
    return [(layer, name) for name, layer in pairs.items()]


def _is_tl_key(layer) -> bool:
    """Whether `layer` is one TransformerLens key, ``(name, block[, layer_type])``: a tuple
    whose name is no hook name (hook names hold dots)."""
    return isinstance(layer, tuple) and 2 <= len(layer) <= 3 and isinstance(layer[0], str) \
        and "." not in layer[0]


def _layer_list(layers) -> list:
    """`layers` (one layer, or a sequence of them) as a non-empty list, else `ProbeError`."""
    if isinstance(layers, (int, str, np.integer)) or _is_tl_key(layers):
        return [layers]
    if isinstance(layers, (bytes, bool)) or not isinstance(layers, (Sequence, range,
                                                                    np.ndarray)):
        raise ProbeError(f"layers={layers!r}: expected a layer (an integer, a hook name, a "
                         "TransformerLens key) or a list of them")
    if not len(layers):
        raise ProbeError("layers is empty: expected at least one layer or hook name")
    return list(layers)


def match_layers(layers, hooks: dict) -> list:
    """The labels of `hooks` (label -> hook name, as a collection holds them) that `layers`
    names, in order, each once: labels, hook names, integers (the module docstring's
    convention) or TransformerLens keys naming a collected hook. `ProbeError` for an empty
    list or a layer not collected."""
    layers = _layer_list(layers)
    by_hook = {hook: label for label, hook in hooks.items()}
    chosen = []
    for layer in layers:
        if isinstance(layer, np.integer):
            layer = int(layer)
        if not isinstance(layer, (int, str, tuple)) or isinstance(layer, bool):
            raise ProbeError(f"layer {layer!r}: expected a label, a hook name, an integer or "
                             "a TransformerLens key")
        if not isinstance(layer, tuple) and layer in hooks:
            chosen.append(layer)
            continue
        name = layer if isinstance(layer, str) else _tl_key(layer) if isinstance(layer, tuple) \
            else hook_name(layer, 1 << 30) if isinstance(layer, int) and layer >= 0 else None
        if name not in by_hook:
            raise ProbeError(f"layer {layer!r} not collected; collected: {list(hooks)} (hooks "
                             f"{list(by_hook)})")
        chosen.append(by_hook[name])
    return list(dict.fromkeys(chosen))


def _tl_key(key: tuple) -> str:
    """The hook name of a TransformerLens cache key ``(name, block[, layer_type])``."""
    from .model import act_name

    if not 2 <= len(key) <= 3 or not isinstance(key[0], str) \
            or not isinstance(key[1], (int, np.integer)) or isinstance(key[1], bool):
        raise ProbeError(f"layer={key!r}: expected a TransformerLens key (name, block), such "
                         "as ('resid_post', 5)")
    try:
        return act_name(key[0], int(key[1]), *key[2:])
    except MothelloError as exc:
        raise ProbeError(f"layer={key!r}: {exc}") from None


def check_collection(value, name: str = "collection") -> ParallelActivations:
    """`value` if it is a `ParallelActivations`, else a `ProbeError` naming `name`."""
    if not isinstance(value, ParallelActivations):
        raise ProbeError(f"{name}={type(value).__name__}: expected a ParallelActivations "
                         "(collect_parallel, ParallelActivations.from_sequences, or a "
                         "ParallelStore's load())")
    return value


def check_games(games, name: str = "games", *, error: type[MothelloError] = ProbeError
                ) -> np.ndarray:
    """`games` (int8 [n, 60]) validated, with at least one game, else an error naming
    `name` (`error` when there is none; `validate_games`'s errors otherwise)."""
    games = validate_games(games, name=name)
    if len(games) == 0:
        raise error(f"{name} is empty: expected at least one game")
    return games


def check_label_kind(kind: str) -> str:
    """`kind` if it is one of `LABEL_KINDS`, else a `ProbeError`."""
    if kind not in LABEL_KINDS:
        raise ProbeError(f"labels={kind!r}: expected one of {list(LABEL_KINDS)}")
    return kind


class _PositionRows:
    """What every collection of positions offers: its length, its layers, its labels."""

    def __len__(self) -> int:
        return len(self.game)

    @property
    def layers(self) -> list:
        return list(self.hidden)

    def labels(self, kind: str = "absolute") -> np.ndarray:
        """Probe labels ``int8 [P, 64]``: "absolute" (the board) or "relative"."""
        return self.board if check_label_kind(kind) == "absolute" else self.relative


@dataclass
class Activations(_PositionRows):
    """Hidden states and labels of P positions (one per move kept), row-aligned.

    hidden: hook name -> ``float32 [P, d_model]``; board: ``int8 [P, 64]`` (0 empty,
    1 black, 2 white); relative: ``int8 [P, 64]`` (0 empty, 1 mine, 2 theirs, for the
    side to move next); legal_next: ``bool [P, 64]``; player: ``uint8 [P]`` (who played
    the move); game: ``int64 [P]`` (row in the games array); move: ``int64 [P]`` (ply).
    """
    language: str
    hidden: dict[str, np.ndarray]
    board: np.ndarray
    relative: np.ndarray
    legal_next: np.ndarray
    player: np.ndarray
    game: np.ndarray
    move: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[Activations]) -> Activations:
        if not parts or not all(isinstance(p, Activations) for p in parts):
            raise ProbeError("parts: expected a non-empty list of Activations")
        hidden = {k: np.concatenate([p.hidden[k] for p in parts]) for k in parts[0].hidden}
        return cls(parts[0].language, hidden,
                   *(np.concatenate([getattr(p, f) for p in parts]) for f in LABEL_FIELDS))


def _numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) \
        else np.asarray(array)


class _StopForward(Exception):
    """Raised by the hook of the deepest hook point a collection reads: the rest of the
    forward pass (later blocks, the unembedding) would be thrown away."""


def _run_to_last_hook(gpt, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """hook name -> activation at `hooks` of one forward pass over tokens (int64 [B, T]),
    stopped once the last of them in forward order has been reached (what
    ``run_with_cache(tokens, names_filter=hooks)[1]`` holds, without running the blocks
    after it: "layer 6" of an 8-layer model skips a quarter of the forward pass)."""
    order = {name: i for i, name in enumerate(gpt.hook_names)}
    last = max(hooks, key=order.__getitem__)
    cache: dict[str, torch.Tensor] = {}

    def save(activation: torch.Tensor, hook) -> None:
        cache[hook.name] = activation.detach()
        if hook.name == last:
            raise _StopForward

    try:
        gpt.run_with_hooks(tokens, [(name, save) for name in hooks])
    except _StopForward:
        pass
    if len(cache) < len(hooks):   # hook_names out of forward order: run the whole pass
        cache = dict(gpt.run_with_cache(tokens, names_filter=hooks)[1])
    return cache


def _move_end_positions(encoded, width: int, max_moves: int | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, moves) int64 [P]: where, within the first `width` tokens of `encoded`,
    each kept move ends (its last sub-token; the first `max_moves` moves), game-major then
    in position order, and the move's ply."""
    move_end = _numpy(encoded.move_end)[:, :width]
    move_index = _numpy(encoded.move_index)[:, :width]
    if max_moves is not None:
        move_end = move_end & (move_index < max_moves)
    rows, cols = np.nonzero(move_end)
    return rows.astype(np.int64), cols.astype(np.int64), move_index[rows, cols].astype(np.int64)


def _labelled(language: str, hidden: dict, labels, rows: np.ndarray, moves: np.ndarray,
              first_game: int = 0) -> Activations:
    """`Activations` of the positions (game `rows`, ply `moves`) with the engine's labels
    (`labels`: the `Replay` of the games the rows index)."""
    return Activations(language, hidden, labels.board[rows, moves],
                       labels.relative_board()[rows, moves], labels.legal_next[rows, moves],
                       labels.player[rows, moves], rows + first_game, moves)


def _collect_batch(gpt, language_set, games: np.ndarray, language: str, hooks: list[str],
                   first_game: int, device: torch.device, max_moves: int | None
                   ) -> Activations:
    encoded = language_set.encode(games, language)
    context = gpt.config.context_length
    tokens = _numpy(encoded.tokens)[:, :context]
    rows, cols, moves = _move_end_positions(encoded, context, max_moves)
    cache = _run_to_last_hook(gpt, torch.as_tensor(tokens, device=device), hooks)
    rows_t, cols_t = torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)
    # [B, T, ...] hooks by (game, position); attention scores and patterns [B, nh, T, T] by
    # (game, query position): each row its heads' scores over the keys, flattened
    hidden = {h: (cache[h][rows_t, :, cols_t] if h.endswith(("hook_attn_scores", "hook_pattern"))
                  else cache[h][rows_t, cols_t]).flatten(1).float().cpu().numpy()
              for h in hooks}
    return _labelled(language, hidden, replay(games), rows, moves, first_game)


@torch.no_grad()
def collect_activations(model, language_set, games, *, language: str,
                        layers: Sequence[int | str] | int | str = (6,), batch_size: int = 256,
                        progress: bool = True, out_dir=None, shard_games: int = 4096,
                        max_moves: int | None = MAX_MOVES):
    """Residual stream at the last sub-token of every move of `games` written in `language`.

    games: int8 [n, 60]. layers: see `resolve_layers` (the hidden states are keyed by hook
    name, one per distinct hook). Only the positions after moves ``0..max_moves-1`` are
    kept (default 59, the mOthello protocol; None: every move). The model runs in eval
    mode (dropout off) on its own device, `batch_size` games at a time, each forward pass
    stopped after the deepest hook read (nothing later is computed); its training
    mode is restored afterwards. Returns `Activations` in memory, or with `out_dir` an
    `ActivationStore` of safetensors shards of `shard_games` games (re-running the same
    collection into the same directory skips finished shards).
    """
    games = check_games(games)
    check_language_set(language_set)
    batch_size = check_int("batch_size", batch_size, least=1, error=ProbeError)
    if max_moves is not None:
        max_moves = check_int("max_moves", max_moves, least=1, error=ProbeError)
    if language not in language_set.names:
        raise LanguageError(f"language={language!r}: expected one of {list(language_set.names)}")
    gpt = unwrap(model)
    language_set.check_model(gpt)
    hooks = [hook for _, hook in resolve_layers(gpt, layers)]
    shard_games = check_int("shard_games", shard_games, least=1, error=ProbeError)
    device = next(gpt.parameters()).device
    was_training = gpt.training
    gpt.eval()
    try:
        if out_dir is None:
            return Activations.concatenate([
                _collect_batch(gpt, language_set, games[s:s + batch_size], language, hooks, s,
                               device, max_moves)
                for s in progress_bar(progress, range(0, len(games), batch_size),
                                      desc=f"activations {language}", leave=False)])
        return _collect_to_disk(gpt, language_set, games, language, hooks, batch_size,
                                shard_games, progress, Path(out_dir), device, max_moves)
    finally:
        gpt.train(was_training)


def _fingerprint(gpt, games: np.ndarray, language_set) -> dict:
    """What a collection on disk was read from: the games, the weights, and how the
    language set writes the games (the same names can stand for other token ids)."""
    weights = hashlib.sha256()
    for name, tensor in sorted(gpt.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().float().cpu().numpy().tobytes())
    encoding = json.dumps(language_set.to_dict(), sort_keys=True).encode()
    return {"games_sha256": hashlib.sha256(np.ascontiguousarray(games).tobytes()).hexdigest(),
            "model_sha256": weights.hexdigest(),
            "language_set_sha256": hashlib.sha256(encoding).hexdigest()}


def _collect_to_disk(gpt, language_set, games, language, hooks, batch_size, shard_games,
                     progress, out_dir, device, max_moves):
    from .activation_store import SINGLE_FORMAT, ActivationStore, shard_tensors, write_store

    params = {"format": SINGLE_FORMAT, "language": language, "layers": hooks,
              "n_games": len(games), "shard_games": shard_games, "max_moves": max_moves,
              **_fingerprint(gpt, games, language_set)}

    def part(start: int, stop: int):
        acts = Activations.concatenate(
            [_collect_batch(gpt, language_set, games[s:min(s + batch_size, stop)], language,
                            hooks, s, device, max_moves) for s in range(start, stop, batch_size)])
        return shard_tensors(acts.hidden, {f: getattr(acts, f) for f in LABEL_FIELDS}), len(acts)

    index = write_store(out_dir, params, _chunks(len(games), shard_games), part,
                        extra={"d_model": gpt.config.d_model}, progress=progress,
                        desc=f"activations {language}")
    return ActivationStore(Path(out_dir), index)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


@dataclass
class ParallelActivations(_PositionRows):
    """The same positions (game, move) written in several languages, row-aligned across
    languages and layers: the collection every analysis takes (probes, the alignment
    matrix, CALIGN/COLAP, unification, the study's controls), from a mOthello model
    (`collect_parallel`) or any other (`from_sequences`), in memory or on disk (`save`,
    ``collect_parallel(..., out_dir=DIR)``, `activation_store.load_activations`).

    hidden: layer -> language -> ``float32 [P, d]`` (layers labelled as given, see
    `resolve_layers`); hooks: layer -> hook name; board, relative: ``int8 [P, 64]``;
    game, move: ``int64 [P]`` (row in the games array, ply); square: ``int64 [P]`` (the
    square of the move, the type of a point for the concept metrics); language_set: the
    `LanguageSet` the games were written in, when known.
    """
    languages: tuple[str, ...]
    hooks: dict
    hidden: dict
    board: np.ndarray
    relative: np.ndarray
    game: np.ndarray
    move: np.ndarray
    square: np.ndarray
    language_set: object = None

    @classmethod
    def from_sequences(cls, hidden, language_set, games, *,
                       max_moves: int | None = MAX_MOVES) -> ParallelActivations:
        """The collection of any model's hidden states over `games` (int8 [n, 60]) written
        in the languages of `language_set`: hidden maps layer (any label) -> language ->
        float ``[n, T, d]`` (numpy or torch; T at most the set's context: a model that
        reads 59 of 60 tokens gives 59), the model's output at every token of each game
        as `language_set.encode` writes it; for example a TransformerLens model's
        ``run_with_cache(tokens)[1]["blocks.5.hook_resid_post"]``, or a Hugging Face
        model's ``hidden_states[6]``. Rows are read at the last sub-token of each move
        (the first `max_moves`), at the positions every language has, with the engine's
        labels."""
        games = check_games(games)
        check_language_set(language_set)
        if max_moves is not None:
            max_moves = check_int("max_moves", max_moves, least=1, error=ProbeError)
        if not isinstance(hidden, Mapping) or not hidden or not all(
                isinstance(v, Mapping) and v for v in hidden.values()):
            raise ProbeError("hidden: expected a non-empty dict layer -> language -> [n, T, d]")
        languages = list(next(iter(hidden.values())))
        language_set.select_languages(languages)
        labels = replay(games)
        parts = []
        for language in languages:
            encoded = language_set.encode(games, language)
            arrays = {}
            for layer, by_language in hidden.items():
                if list(by_language) != languages:
                    raise ProbeError(f"hidden[{layer!r}] has languages {list(by_language)}: "
                                     f"expected {languages} in every layer")
                array = by_language[language]
                array = _numpy(array) if isinstance(array, torch.Tensor) else number_array(
                    f"hidden[{layer!r}][{language!r}]", array, dtype=None, error=ProbeError)
                array = array.astype(np.float32, copy=False)
                if array.ndim != 3 or array.shape[0] != len(games) or 0 in array.shape \
                        or array.shape[1] > encoded.tokens.shape[1]:
                    raise ProbeError(f"hidden[{layer!r}][{language!r}] has shape "
                                     f"{array.shape}: expected [{len(games)}, T <= "
                                     f"{encoded.tokens.shape[1]}, d], a row per game")
                if not np.isfinite(array).all():
                    raise ProbeError(f"hidden[{layer!r}][{language!r}] holds NaN or infinity: "
                                     "expected finite hidden states")
                arrays[layer] = array
            rows, cols, moves = _move_end_positions(
                encoded, min(a.shape[1] for a in arrays.values()), max_moves)
            parts.append(_labelled(language, {layer: a[rows, cols]
                                              for layer, a in arrays.items()},
                                   labels, rows, moves))
        return _parallel(parts, [(layer, layer) for layer in hidden], games, language_set)

    @classmethod
    def concatenate(cls, parts: Sequence[ParallelActivations]) -> ParallelActivations:
        """The positions of `parts` (the same languages and layers) one after another."""
        if not parts or not all(isinstance(p, ParallelActivations) for p in parts):
            raise ProbeError("parts: expected a non-empty list of ParallelActivations")
        first = parts[0]
        for part in parts[1:]:
            if part.languages != first.languages or part.hooks != first.hooks:
                raise ProbeError(f"collections of languages {list(part.languages)} at "
                                 f"{part.hooks}: expected {list(first.languages)} at "
                                 f"{first.hooks}, as the first")
        hidden = {layer: {language: np.concatenate([p.hidden[layer][language] for p in parts])
                          for language in first.languages} for layer in first.hidden}
        return cls(first.languages, dict(first.hooks), hidden,
                   *(np.concatenate([getattr(p, f) for p in parts])
                     for f in PARALLEL_LABEL_FIELDS), language_set=first.language_set)

    def select(self, layers=None, languages=None) -> ParallelActivations:
        """The same positions at some `layers` (default all; see `match_layers`) in some
        `languages` (default all), sharing this collection's arrays."""
        chosen = list(self.hidden) if layers is None else match_layers(layers, self.hooks)
        if languages is None:
            names = self.languages
        else:
            if not isinstance(languages, (str, Sequence)):
                raise ProbeError(f"languages={languages!r}: expected a language name or a "
                                 "list of them")
            names = tuple([languages] if isinstance(languages, str) else languages)
            unknown = [n for n in names if n not in self.languages]
            if unknown or not names or len(set(names)) < len(names):
                raise ProbeError(f"languages={list(names)}: expected distinct languages, some "
                                 f"of {list(self.languages)}")
        return ParallelActivations(
            names, {layer: self.hooks[layer] for layer in chosen},
            {layer: {name: self.hidden[layer][name] for name in names} for layer in chosen},
            self.board, self.relative, self.game, self.move, self.square, self.language_set)

    def stacked(self, layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every language's rows of `layer` one after another: (``float32 [L*P, d]``,
        item ids ``int64 [L*P]`` (the position's row, the same in every language),
        language ids ``int64 [L*P]``), as `unification.unification_score` takes them."""
        if not isinstance(layer, (int, str, np.integer)) or layer not in self.hidden:
            raise ProbeError(f"layer {layer!r} not collected; collected: {self.layers}")
        x = np.concatenate([self.hidden[layer][name] for name in self.languages])
        n = len(self)
        return (x, np.tile(np.arange(n, dtype=np.int64), len(self.languages)),
                np.repeat(np.arange(len(self.languages), dtype=np.int64), n))

    def save(self, path, *, shard_positions: int = 1 << 16, progress: bool = False):
        """Write the collection to the directory `path` (safetensors shards of
        `shard_positions` positions and a JSON index; see `activation_store`) and return
        its `ParallelStore`. Saving the same collection again finds it written; a
        directory holding another collection is refused."""
        from .activation_store import PARALLEL_FORMAT, ParallelStore, write_store

        shard_positions = check_int("shard_positions", shard_positions, least=1,
                                    error=ProbeError)
        params = {"format": PARALLEL_FORMAT,
                  **_describe(self.languages, self.hooks, self.language_set),
                  "shard_positions": shard_positions, "content_sha256": self._digest()}

        def part(start: int, stop: int):
            return _parallel_tensors(self, slice(start, stop)), stop - start

        index = write_store(path, params, _chunks(len(self), shard_positions), part,
                            progress=progress, desc="saving activations", unit="position")
        return ParallelStore(Path(path), index)

    def _digest(self) -> str:
        digest = hashlib.sha256()
        for layer in self.hidden:
            for name in self.languages:
                digest.update(np.ascontiguousarray(self.hidden[layer][name]).tobytes())
        for field in PARALLEL_LABEL_FIELDS:
            digest.update(np.ascontiguousarray(getattr(self, field)).tobytes())
        return digest.hexdigest()


def _describe(languages, hooks: dict, language_set) -> dict:
    """The JSON fields naming what a collection on disk holds: its languages, its layers
    (label, hook name) and its language set. Layer labels must be integers or strings
    (JSON keeps no other kind as it is)."""
    bad = [layer for layer in hooks if not isinstance(layer, (int, str, np.integer))
           or isinstance(layer, bool)]
    if bad:
        raise ProbeError(f"layer labels {bad}: expected integers or strings to write the "
                         "collection to disk (use hook names)")
    return {"languages": list(languages),
            "layers": [[int(layer) if isinstance(layer, np.integer) else layer, hook]
                       for layer, hook in hooks.items()],
            "language_set": None if language_set is None else language_set.to_dict()}


def _parallel_tensors(collection: ParallelActivations, rows: slice) -> dict[str, torch.Tensor]:
    """The tensors of a shard of `collection`'s `rows`: ``hidden.<i>.<language>`` for the
    i-th layer, and the labels."""
    from .activation_store import shard_tensors

    hidden = {f"{i}.{language}": by_language[language][rows]
              for i, by_language in enumerate(collection.hidden.values())
              for language in collection.languages}
    return shard_tensors(hidden, {f: getattr(collection, f)[rows] for f in PARALLEL_LABEL_FIELDS})


def _common_positions(collections: Sequence[Activations]) -> list[np.ndarray]:
    """Row indices selecting, in every collection, the positions (game, move) they all have,
    in the same order."""
    keys = [c.game * 64 + c.move for c in collections]
    common = keys[0]
    for k in keys[1:]:
        common = np.intersect1d(common, k)
    return [np.searchsorted(k, common) if np.all(np.diff(k) > 0)
            else np.flatnonzero(np.isin(k, common)) for k in keys]


def _take(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]``, or `array` itself when rows are all of its rows in order (the usual
    case: every language has every position), without copying it (float32 [N, d] per
    layer and language: 1 GB for 9 layers of 1000 games at d_model 512)."""
    if len(rows) == len(array) and np.array_equal(rows, np.arange(len(array))):
        return array
    return array[rows]


def _parallel(collections: Sequence[Activations], pairs: Sequence[tuple], games: np.ndarray,
              language_set) -> ParallelActivations:
    """One language's `Activations` each (hidden keyed by the hooks of `pairs`, (layer,
    hook)) as a `ParallelActivations` of the positions they all have; games: the games
    array (int8 [n, 60]) their `game` indexes."""
    rows = _common_positions(collections)
    first, keep = collections[0], rows[0]
    game, move = _take(first.game, keep), _take(first.move, keep)
    return ParallelActivations(
        tuple(c.language for c in collections), dict(pairs),
        {layer: {c.language: _take(c.hidden[hook], r) for c, r in zip(collections, rows)}
         for layer, hook in pairs},
        _take(first.board, keep), _take(first.relative, keep), game, move,
        games[game, move].astype(np.int64), language_set)


def collect_parallel(model, language_set, games, *, languages: Sequence[str] | None = None,
                     layers: Sequence[int | str] | int | str = (6,), batch_size: int = 256,
                     max_moves: int | None = MAX_MOVES, progress: bool = True, out_dir=None,
                     shard_games: int = 4096):
    """`collect_activations` of `games` (int8 [n, 60]) in every language of `languages`
    (all input languages by default) at `layers`, kept at the positions every language
    has (a short context can cut a multi-token language's last moves), in the same order
    in every language. One forward pass per language and batch reads every layer.

    Returns a `ParallelActivations`, or with `out_dir` a `ParallelStore` written
    `shard_games` games a shard as they are collected (an interrupted collection resumes;
    ``.load()`` reads it back)."""
    games = check_games(games)
    languages = check_language_set(language_set).select_languages(languages)
    pairs = resolve_layers(model, layers)
    hooks = [hook for _, hook in pairs]
    shard_games = check_int("shard_games", shard_games, least=1, error=ProbeError)
    check_int("batch_size", batch_size, least=1, error=ProbeError)
    if max_moves is not None:
        check_int("max_moves", max_moves, least=1, error=ProbeError)
    language_set.check_model(unwrap(model))   # before anything is written

    def collect(start: int, stop: int, show: bool) -> ParallelActivations:
        collected = [collect_activations(model, language_set, games[start:stop],
                                         language=language, layers=hooks,
                                         batch_size=batch_size, progress=show,
                                         max_moves=max_moves)
                     for language in languages]
        for part in collected:
            part.game += start
        return _parallel(collected, pairs, games, language_set)

    if out_dir is None:
        return collect(0, len(games), progress)
    from .activation_store import PARALLEL_FORMAT, ParallelStore, write_store

    gpt = unwrap(model)
    params = {"format": PARALLEL_FORMAT, **_describe(languages, dict(pairs), language_set),
              "n_games": len(games),
              "shard_games": shard_games, "max_moves": max_moves,
              **_fingerprint(gpt, games, language_set)}

    def shard(start: int, stop: int):
        part = collect(start, stop, False)
        return _parallel_tensors(part, slice(None)), len(part)

    index = write_store(out_dir, params, _chunks(len(games), shard_games), shard,
                        progress=progress, desc="activations")
    return ParallelStore(Path(out_dir), index)
