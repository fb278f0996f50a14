"""Hidden states of a model after each move of a set of games, with the engine's labels.

`collect_activations` runs a model (in eval mode: dropout off) over games written
in one language and keeps the residual stream at the last sub-token of each move
(``Encoded.move_end``; the first 59 moves by default, see below), row by row aligned
with the labels of the position after that move: the board (absolute and relative),
the legal next moves and the player.

Layers are hook names (``"blocks.5.hook_resid_post"``), glob patterns of hook names
(``"blocks.*.hook_resid_post"``) or integers counted as in Othello-GPT's probe tables:
layer 0 is the embeddings (``blocks.0.hook_resid_pre``) and layer ``l >= 1`` the
residual stream after block ``l`` (``blocks.{l-1}.hook_resid_post``), so "layer 6" is
the output of the sixth block. `resolve_layers` turns them into (layer, hook name)
pairs, one per distinct hook; every function that takes `layers` goes through it.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .storage import atomic_write_bytes, atomic_write_json, sha256_file
from .errors import DatasetError, LanguageError, MothelloError, ProbeError, check_int
from .model import unwrap
from .othello import replay, validate_games

__all__ = ["Activations", "ActivationStore", "collect_activations", "load_activations",
           "ParallelActivations", "collect_parallel",
           "hook_name", "resolve_layers", "check_games", "check_label_kind", "LABEL_KINDS",
           "MAX_MOVES"]

INDEX = "index.json"
PARAMS = "params.json"
_FORMAT = "mothello-activations/1"
_LABELS = ("board", "relative", "legal_next", "player", "game", "move")
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
    """`layers` (one or a sequence of integers, hook names or glob patterns of hook names)
    as ``(layer, hook name)`` pairs of `model`, one per distinct hook, in the order given.

    A glob pattern gives one pair per matching hook, labelled with the hook name; a hook
    named twice (``[1, 1]``, ``[1, "blocks.0.hook_resid_post"]``) keeps its first label.
    Raises `ProbeError` for an empty list, an unknown hook name or a pattern that
    matches nothing.
    """
    from .model import HookPoint

    gpt = unwrap(model)
    points = [name for name, module in gpt.named_modules() if isinstance(module, HookPoint)]
    layers = [layers] if isinstance(layers, (int, str, np.integer)) else list(layers)
    if not layers:
        raise ProbeError("layers is empty: expected at least one layer or hook name")
    pairs: dict[str, int | str] = {}
    for layer in layers:
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
        if not parts:
            raise ProbeError("no activations to concatenate")
        hidden = {k: np.concatenate([p.hidden[k] for p in parts]) for k in parts[0].hidden}
        return cls(parts[0].language, hidden,
                   *(np.concatenate([getattr(p, f) for p in parts]) for f in _LABELS))


def _numpy(array) -> np.ndarray:
    return array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


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


def _shard_tensors(part: Activations) -> dict[str, torch.Tensor]:
    tensors = {f"hidden.{k}": torch.from_numpy(np.ascontiguousarray(v))
               for k, v in part.hidden.items()}
    for name in _LABELS:
        array = getattr(part, name)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(
            array.view(np.uint8) if array.dtype == np.bool_ else array))
    return tensors


def _read_shard(path: Path, language: str, layers: Sequence[str] | str) -> Activations:
    from safetensors.numpy import load_file

    data = load_file(str(path))
    hidden_keys = [k[len("hidden."):] for k in data if k.startswith("hidden.")]
    wanted = [layers] if isinstance(layers, str) else list(layers)
    missing = sorted(set(wanted) - set(hidden_keys))
    if missing:
        raise DatasetError(f"activation shard {str(path)!r} has no layer(s) {missing}; "
                           f"it holds {sorted(hidden_keys)}")
    labels = {name: data[name] for name in _LABELS}
    labels["legal_next"] = labels["legal_next"].view(np.bool_)
    return Activations(language, {k: data[f"hidden.{k}"] for k in wanted}, **labels)


class ActivationStore:
    """A collection written by ``collect_activations(..., out_dir=DIR)``: shards and an index.

    Iterating yields one `Activations` per shard; `load` concatenates them.
    """

    def __init__(self, path: Path, index: dict):
        self.path = Path(path)
        self.index = index

    @property
    def language(self) -> str:
        return self.index["language"]

    @property
    def layers(self) -> list[str]:
        return list(self.index["layers"])

    def __len__(self) -> int:
        return int(self.index["n_positions"])

    def __iter__(self) -> Iterator[Activations]:
        return (_read_shard(self.path / s["file"], self.language, self.layers)
                for s in self.index["shards"])

    def load(self, layers: Sequence[str] | str | None = None) -> Activations:
        """Every shard in memory, concatenated (optionally only some layers, hook names;
        by default every layer, in the order collected)."""
        layers = self.layers if layers is None else layers
        return Activations.concatenate([_read_shard(self.path / s["file"], self.language, layers)
                                        for s in self.index["shards"]])

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, language={self.language!r}, "
                f"positions={len(self)}, layers={self.layers})")


def load_activations(path, *, verify: bool = True) -> ActivationStore:
    """Open a collection written by `collect_activations` with ``out_dir``; with `verify`,
    every shard's sha256 is checked against the index."""
    path = Path(path)
    try:
        index = json.loads((path / INDEX).read_text())
    except FileNotFoundError:
        raise DatasetError(f"{str(path)!r} has no {INDEX}: not a finished activation "
                           "collection") from None
    if index.get("format") != _FORMAT:
        raise DatasetError(f"{str(path / INDEX)!r} has format {index.get('format')!r}; "
                           f"expected {_FORMAT!r}")
    shards = index.get("shards")
    if not isinstance(shards, list):
        raise DatasetError(f"{str(path / INDEX)!r} has no list of shards")
    for number, shard in enumerate(shards):
        name = shard.get("file") if isinstance(shard, dict) else None
        # a plain file name: the store reads and hashes nothing outside its own directory
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise DatasetError(f"{str(path / INDEX)!r}, shards[{number}]: file {name!r} is not "
                               "a plain file name in the collection's directory")
        if not isinstance(shard.get("sha256"), str):
            raise DatasetError(f"{str(path / INDEX)!r}, shards[{number}] ({name}) has no "
                               "sha256: every shard's digest is required")
    if verify:
        for shard in shards:
            file = path / shard["file"]
            if not file.exists() or sha256_file(file) != shard["sha256"]:
                raise DatasetError(f"activation shard {str(file)!r} is missing or corrupted "
                                   "(sha256 does not match the index)")
    return ActivationStore(path, index)


@torch.no_grad()
def collect_activations(model, language_set, games, *, language: str,
                        layers: Sequence[int | str] | int | str = (6,), batch_size: int = 256,
                        progress: bool = True, out_dir=None, shard_games: int = 4096,
                        max_moves: int | None = MAX_MOVES) -> Activations | ActivationStore:
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
                for s in tqdm(range(0, len(games), batch_size), desc=f"activations {language}",
                              disable=not progress, leave=False)])
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
                     progress, out_dir: Path, device, max_moves) -> ActivationStore:
    from safetensors.torch import save

    params = {"format": _FORMAT, "language": language, "layers": hooks, "n_games": len(games),
              "shard_games": shard_games, "max_moves": max_moves, **_fingerprint(gpt, games, language_set)}
    if (out_dir / INDEX).exists():
        store = load_activations(out_dir, verify=False)
        if {k: store.index.get(k) for k in params} == params:
            return store
        raise DatasetError(f"{str(out_dir)!r} already holds another activation collection; "
                           "expected an empty directory or the same collection")
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / PARAMS).exists() and json.loads((out_dir / PARAMS).read_text()) != params:
        raise DatasetError(f"{str(out_dir)!r} holds an unfinished collection of other games, "
                           "model, language set or layers; expected an empty directory or the same collection")
    atomic_write_json(out_dir / PARAMS, params)
    shards = []
    bar = tqdm(total=len(games), desc=f"activations {language}", unit="game",
               disable=not progress, leave=False)
    for number, start in enumerate(range(0, len(games), shard_games)):
        stop = min(start + shard_games, len(games))
        file = out_dir / f"shard-{number:05d}.safetensors"
        record_file = out_dir / f"shard-{number:05d}.json"
        if file.exists() and record_file.exists():
            record = json.loads(record_file.read_text())
        else:
            part = Activations.concatenate(
                [_collect_batch(gpt, language_set, games[s:min(s + batch_size, stop)], language,
                                hooks, s, device, max_moves)
                 for s in range(start, stop, batch_size)])
            data = save(_shard_tensors(part))
            atomic_write_bytes(file, data)
            record = {"file": file.name, "games": [start, stop], "n_positions": len(part),
                      "sha256": hashlib.sha256(data).hexdigest()}
            atomic_write_json(record_file, record)
        shards.append(record)
        bar.update(stop - start)
    bar.close()
    d_model = gpt.config.d_model
    index = {**params, "d_model": d_model, "n_positions": sum(s["n_positions"] for s in shards),
             "shards": shards}
    atomic_write_json(out_dir / INDEX, index)
    return ActivationStore(out_dir, index)


@dataclass
class ParallelActivations(_PositionRows):
    """The same positions (game, move) written in several languages, row-aligned across
    languages and layers: what alignment, unification and the study's controls read.

    hidden: layer -> language -> ``float32 [P, d_model]`` (layers labelled as given to
    `collect_parallel`, see `resolve_layers`); hooks: layer -> hook name; board,
    relative: ``int8 [P, 64]``; game, move: ``int64 [P]`` (row in the games array, ply).
    """
    languages: tuple[str, ...]
    hooks: dict
    hidden: dict
    board: np.ndarray
    relative: np.ndarray
    game: np.ndarray
    move: np.ndarray

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
        if not hidden:
            raise ProbeError("hidden is empty: expected layer -> language -> [n, T, d]")
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
                array = _numpy(by_language[language]).astype(np.float32, copy=False)
                if array.ndim != 3 or array.shape[0] != len(games) \
                        or array.shape[1] > encoded.tokens.shape[1]:
                    raise ProbeError(f"hidden[{layer!r}][{language!r}] has shape "
                                     f"{array.shape}: expected [{len(games)}, T <= "
                                     f"{encoded.tokens.shape[1]}, d], a row per game")
                arrays[layer] = array
            rows, cols, moves = _move_end_positions(
                encoded, min(a.shape[1] for a in arrays.values()), max_moves)
            parts.append(_labelled(language, {layer: a[rows, cols]
                                              for layer, a in arrays.items()},
                                   labels, rows, moves))
        keep = _common_positions(parts)
        first = parts[0]
        return cls(tuple(languages), {layer: layer for layer in hidden},
                   {layer: {p.language: _take(p.hidden[layer], r) for p, r in zip(parts, keep)}
                    for layer in hidden},
                   _take(first.board, keep[0]), _take(first.relative, keep[0]),
                   _take(first.game, keep[0]), _take(first.move, keep[0]))

    def stacked(self, layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every language's rows of `layer` one after another: (``float32 [L*P, d]``,
        item ids ``int64 [L*P]`` (the position's row, the same in every language),
        language ids ``int64 [L*P]``), as `unification.unification_score` takes them."""
        if layer not in self.hidden:
            raise ProbeError(f"layer {layer!r} not collected; collected: {self.layers}")
        x = np.concatenate([self.hidden[layer][name] for name in self.languages])
        n = len(self)
        return (x, np.tile(np.arange(n, dtype=np.int64), len(self.languages)),
                np.repeat(np.arange(len(self.languages), dtype=np.int64), n))


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


def collect_parallel(model, language_set, games, *, languages: Sequence[str] | None = None,
                     layers: Sequence[int | str] | int | str = (6,), batch_size: int = 256,
                     max_moves: int | None = MAX_MOVES, progress: bool = True
                     ) -> ParallelActivations:
    """`collect_activations` of `games` (int8 [n, 60]) in every language of `languages`
    (all input languages by default) at `layers`, kept at the positions every language
    has (a short context can cut a multi-token language's last moves), in the same order
    in every language. One forward pass per language and batch reads every layer."""
    games = check_games(games)
    languages = language_set.select_languages(languages)
    pairs = resolve_layers(model, layers)
    hooks = [hook for _, hook in pairs]
    collected = [collect_activations(model, language_set, games, language=language,
                                     layers=hooks, batch_size=batch_size, progress=progress,
                                     max_moves=max_moves)
                 for language in languages]
    rows = _common_positions(collected)
    hidden = {layer: {language: _take(c.hidden[hook], r)
                      for language, c, r in zip(languages, collected, rows)}
              for layer, hook in pairs}
    first = collected[0]
    return ParallelActivations(tuple(languages), dict(pairs), hidden,
                               _take(first.board, rows[0]), _take(first.relative, rows[0]),
                               _take(first.game, rows[0]), _take(first.move, rows[0]))
