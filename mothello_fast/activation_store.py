"""Activation collections on disk: safetensors shards and a JSON index, streamed.

A collection directory holds ``shard-NNNNN.safetensors`` files, each written atomically
with a ``shard-NNNNN.json`` record beside it, a ``params.json`` of what is being collected
(written first: a rerun of the same collection resumes after its last finished shard,
another collection into the same directory is refused) and ``index.json``, written last:
a collection without one is unfinished. Every shard's sha256 is in the index and
checked on load; the index names shards by plain file name only, so a store never reads
or hashes anything outside its directory.

Two formats share this layout:

- ``mothello-activations/1`` (`ActivationStore`): one language, hidden states keyed by
  hook name, with every label of `activations.Activations`;
- ``mothello-parallel-activations/1`` (`ParallelStore`): several languages over the same
  positions, hidden states per layer and language, the board labels, each position's
  (game, move, square) and the language set: the collection every analysis takes
  (`activations.ParallelActivations`), from a mOthello model or from any other.

`load_activations` opens either.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from .progress import progress_bar

from .activations import (LABEL_FIELDS, PARALLEL_LABEL_FIELDS, Activations, ParallelActivations,
                          match_layers)
from .errors import DatasetError
from .storage import (as_path, atomic_write_bytes, atomic_write_json, check_replaceable,
                      sha256_file)

__all__ = ["ActivationStore", "ParallelStore", "load_activations", "write_store",
           "shard_tensors", "INDEX", "PARAMS", "SINGLE_FORMAT", "PARALLEL_FORMAT"]

INDEX = "index.json"
PARAMS = "params.json"
SINGLE_FORMAT = "mothello-activations/1"
PARALLEL_FORMAT = "mothello-parallel-activations/1"


def _json(value):
    """`value` as JSON reads it back (tuples become lists), for comparing parameters."""
    return json.loads(json.dumps(value))


def shard_tensors(hidden: dict[str, np.ndarray], labels: dict[str, np.ndarray]
                  ) -> dict[str, torch.Tensor]:
    """The tensors of one shard: ``hidden.<key>`` for each hidden array, and each label
    (bool stored as uint8: safetensors' numpy side has no bool)."""
    tensors = {f"hidden.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in hidden.items()}
    for name, array in labels.items():
        tensors[name] = torch.from_numpy(np.ascontiguousarray(
            array.view(np.uint8) if array.dtype == np.bool_ else array))
    return tensors


def write_store(out_dir, params: dict, chunks: Sequence[tuple[int, int]],
                part: Callable[[int, int], tuple[dict[str, torch.Tensor], int]], *,
                extra: dict | None = None, progress: bool = True, desc: str = "activations",
                unit: str = "game") -> dict:
    """Write a collection shard by shard and return its index.

    params: what the collection is (its format, source fingerprints, layers...): the same
    params in the same directory resume it (finished shards are kept; a finished
    collection is returned as it is); other params there are refused. chunks: the
    ``(start, stop)`` ranges of the shards; part(start, stop) gives a shard's tensors
    and its number of positions. extra: fields added to the index.
    """
    out_dir = as_path(out_dir, "out_dir", error=DatasetError)
    params = _json(params)
    if not (out_dir / PARAMS).exists():   # not a collection (finished or not): must be free
        check_replaceable(out_dir, INDEX, "activation collection", error=DatasetError)
    if (out_dir / INDEX).exists():
        index = _read_index(out_dir)
        found = {k: index.get(k) for k in params}
        if found == params:
            return index
        raise DatasetError(f"{str(out_dir)!r} already holds another activation collection "
                           f"(its {_differing(found, params)} differ); expected an empty "
                           "directory or the same collection")
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / PARAMS).exists():
        try:
            found = json.loads((out_dir / PARAMS).read_text())
        except ValueError:
            found = {}
        if found != params:
            raise DatasetError(f"{str(out_dir)!r} holds an unfinished collection of another "
                               f"kind (its {_differing(found, params)} differ); expected an "
                               "empty directory or the same collection")
    atomic_write_json(out_dir / PARAMS, params)
    from safetensors.torch import save

    shards = []
    bar = progress_bar(progress, total=chunks[-1][1] - chunks[0][0] if chunks else 0,
                       desc=desc, unit=unit, leave=False)
    for number, (start, stop) in enumerate(chunks):
        file = out_dir / f"shard-{number:05d}.safetensors"
        record_file = out_dir / f"shard-{number:05d}.json"
        try:
            record = json.loads(record_file.read_text()) if record_file.exists() else None
        except ValueError:   # a record cut short: the shard is written again
            record = None
        if not (file.exists() and isinstance(record, dict)
                and record.get("range") == [start, stop]):
            tensors, n_positions = part(start, stop)
            data = save(tensors)
            atomic_write_bytes(file, data)
            record = {"file": file.name, "range": [start, stop], "n_positions": n_positions,
                      "sha256": hashlib.sha256(data).hexdigest()}
            atomic_write_json(record_file, record)
        shards.append(record)
        bar.update(stop - start)
    bar.close()
    index = {**params, **(extra or {}),
             "n_positions": sum(s["n_positions"] for s in shards), "shards": shards}
    atomic_write_json(out_dir / INDEX, index)
    return index


def _differing(found: dict, wanted: dict) -> str:
    """The names of the fields of `wanted` that `found` holds otherwise."""
    return ", ".join(sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k)))


def _read_index(path: Path) -> dict:
    """The index of a finished collection, its shard entries checked (plain file names in
    the directory, a sha256 each); `DatasetError` otherwise."""
    try:
        index = json.loads((path / INDEX).read_text())
    except FileNotFoundError:
        raise DatasetError(f"{str(path)!r} has no {INDEX}: not a finished activation "
                           "collection") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{str(path / INDEX)!r} is not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") not in (SINGLE_FORMAT, PARALLEL_FORMAT):
        found = index.get("format") if isinstance(index, dict) else None
        raise DatasetError(f"{str(path / INDEX)!r} has format {found!r}; expected "
                           f"{SINGLE_FORMAT!r} or {PARALLEL_FORMAT!r}")
    shards = index.get("shards")
    if not isinstance(shards, list):
        raise DatasetError(f"{str(path / INDEX)!r} has no list of shards")
    fields = {"n_positions": int, "layers": list} | (
        {"languages": list} if index["format"] == PARALLEL_FORMAT else {"language": str})
    for field, kind in fields.items():
        if not isinstance(index.get(field), kind) or isinstance(index.get(field), bool):
            raise DatasetError(f"{str(path / INDEX)!r} has {field}={index.get(field)!r}: "
                               f"expected a {kind.__name__}; not a finished collection")
    if index["format"] == PARALLEL_FORMAT and not all(
            isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (int, str))
            and isinstance(pair[1], str) for pair in index["layers"]):
        raise DatasetError(f"{str(path / INDEX)!r} has layers {index['layers']!r}: expected "
                           "[label, hook name] pairs")
    for number, shard in enumerate(shards):
        name = shard.get("file") if isinstance(shard, dict) else None
        # a plain file name: the store reads and hashes nothing outside its own directory
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise DatasetError(f"{str(path / INDEX)!r}, shards[{number}]: file {name!r} is not "
                               "a plain file name in the collection's directory")
        if not isinstance(shard.get("sha256"), str):
            raise DatasetError(f"{str(path / INDEX)!r}, shards[{number}] ({name}) has no "
                               "sha256: every shard's digest is required")
    return index


def _load_shard(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of a shard, refusing one that lacks any of `keys`."""
    from safetensors.numpy import load_file

    if path.is_symlink() or not path.is_file():
        raise DatasetError(f"activation shard {str(path)!r} is missing or not a plain file of "
                           "the collection")
    from safetensors import SafetensorError

    try:
        data = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DatasetError(f"activation shard {str(path)!r} is not readable ({exc})") from None
    missing = sorted(set(keys) - set(data))
    if missing:
        raise DatasetError(f"activation shard {str(path)!r} has no {missing}; it holds "
                           f"{sorted(data)}")
    return data


class _Store:
    """A finished collection on disk: its directory and index."""

    def __init__(self, path: Path, index: dict):
        self.path = Path(path)
        self.index = index

    def __len__(self) -> int:
        return int(self.index["n_positions"])

    def _files(self) -> list[Path]:
        return [self.path / s["file"] for s in self.index["shards"]]


class ActivationStore(_Store):
    """One language's collection (``collect_activations(..., out_dir=DIR)``): iterating
    yields one `Activations` per shard; `load` concatenates them."""

    @property
    def language(self) -> str:
        return self.index["language"]

    @property
    def layers(self) -> list[str]:
        return list(self.index["layers"])

    def _read(self, file: Path, layers: Sequence[str]) -> Activations:
        missing = sorted(set(layers) - set(self.layers))
        if missing:
            raise DatasetError(f"activation collection {str(self.path)!r} has no layer(s) "
                               f"{missing}; it holds {self.layers}")
        data = _load_shard(file, [f"hidden.{k}" for k in layers] + list(LABEL_FIELDS))
        labels = {name: data[name] for name in LABEL_FIELDS}
        labels["legal_next"] = labels["legal_next"].view(np.bool_)
        return Activations(self.language, {k: data[f"hidden.{k}"] for k in layers}, **labels)

    def __iter__(self) -> Iterator[Activations]:
        return (self._read(file, self.layers) for file in self._files())

    def load(self, layers: Sequence[str] | str | None = None) -> Activations:
        """Every shard in memory, concatenated (optionally only some layers, hook names;
        by default every layer, in the order collected)."""
        layers = self.layers if layers is None else [layers] if isinstance(layers, str) \
            else list(layers)
        return Activations.concatenate([self._read(file, layers) for file in self._files()])

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, language={self.language!r}, "
                f"positions={len(self)}, layers={self.layers})")


class ParallelStore(_Store):
    """Several languages over the same positions (``collect_parallel(..., out_dir=DIR)``,
    ``ParallelActivations.save(DIR)``): iterating yields one `ParallelActivations` per
    shard; `load` concatenates them."""

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.index["languages"])

    @property
    def hooks(self) -> dict:
        """layer -> hook name (the layer labels as collected)."""
        return {layer: hook for layer, hook in self.index["layers"]}

    @property
    def layers(self) -> list:
        return list(self.hooks)

    @property
    def language_set(self):
        """The `LanguageSet` the games were written in, or None when not recorded."""
        from .languages import LanguageSet

        data = self.index.get("language_set")
        return None if data is None else LanguageSet.from_dict(data)

    def _read(self, file: Path, layers: Sequence, language_set) -> ParallelActivations:
        number = {layer: i for i, layer in enumerate(self.layers)}
        keys = [f"hidden.{number[layer]}.{language}" for layer in layers
                for language in self.languages]
        data = _load_shard(file, keys + list(PARALLEL_LABEL_FIELDS))
        hidden = {layer: {language: data[f"hidden.{number[layer]}.{language}"]
                          for language in self.languages} for layer in layers}
        return ParallelActivations(self.languages, {layer: self.hooks[layer] for layer in layers},
                                   hidden, **{name: data[name] for name in PARALLEL_LABEL_FIELDS},
                                   language_set=language_set)

    def __iter__(self) -> Iterator[ParallelActivations]:
        language_set = self.language_set
        return (self._read(file, self.layers, language_set) for file in self._files())

    def load(self, layers=None) -> ParallelActivations:
        """Every shard in memory, concatenated: optionally only some `layers` (labels as
        collected, their hook names, or integers and TransformerLens keys naming the same
        hooks: `activations.match_layers`)."""
        layers = self.layers if layers is None else match_layers(layers, self.hooks)
        language_set = self.language_set
        return ParallelActivations.concatenate([self._read(file, layers, language_set)
                                                for file in self._files()])

    def __repr__(self) -> str:
        return (f"ParallelStore({str(self.path)!r}, languages={list(self.languages)}, "
                f"positions={len(self)}, layers={self.layers})")


def load_activations(path, *, verify: bool = True) -> ActivationStore | ParallelStore:
    """Open a collection written by `collect_activations` / `collect_parallel` with
    ``out_dir`` or by `ParallelActivations.save`: an `ActivationStore` (one language) or
    a `ParallelStore`. With `verify`, every shard's sha256 is checked against the index
    (`DatasetError` naming the shard)."""
    path = as_path(path, "path", error=DatasetError)
    index = _read_index(path)
    if verify:
        for shard in index["shards"]:
            file = path / shard["file"]
            if file.is_symlink() or not file.is_file() or sha256_file(file) != shard["sha256"]:
                raise DatasetError(f"activation shard {str(file)!r} is missing or corrupted "
                                   "(sha256 does not match the index)")
    store = ParallelStore if index["format"] == PARALLEL_FORMAT else ActivationStore
    return store(path, index)
