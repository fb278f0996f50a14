"""Game datasets on disk: a directory of ``.npy`` shards and a ``manifest.json``.

A dataset directory appears only when it is complete: shards are written into
``DIR.partial/`` one at a time (each to a temporary name, fsynced, renamed), and
the whole directory is renamed to ``DIR`` after its manifest is written. An
interrupted `generate_dataset` resumes from the shards already in
``DIR.partial/``: game ``i`` depends only on ``(seed, i)``, so a resumed dataset
equals one generated in a single run. One process at a time writes ``DIR``: it holds
the lock ``DIR.lock`` (`storage.writer_lock`, released even when the process is
killed), and a second one refuses with `DatasetError`.

`load_games` memory-maps the shards and checks them against the manifest: a
missing, truncated or corrupted shard raises `DatasetError` naming it.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import tokenize
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import _engine
from .errors import DatasetError, check_float, check_int
from .othello import GAME_PLIES, Board, check_seed, generate_games, validate_games
from .parallel import check_fits_in_memory, resolve_threads
from .storage import (as_path, atomic_write_bytes, atomic_write_json, manifest_digest,
                      replace_directory, sha256_file, writer_lock)

__all__ = ["FORMAT_VERSION", "GameDataset", "generate_dataset", "write_games", "load_games",
           "split_games", "deduplicate"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"  # in DIR.partial/: parameters and finished shards
DEFAULT_SHARD_SIZE = 1_000_000
# Manifest keys that `write_games` writes itself; its `metadata` may not set them.
RESERVED_KEYS = frozenset({"format", "format_version", "n_games", "shard_size", "plies", "dtype",
                           "created", "shards", "generator", "games_sha256", "manifest_sha256"})
MANIFEST_DIGEST = "manifest_sha256"   # the manifest's own digest: an edited field is detected


def _write_shard(path: Path, games: np.ndarray) -> str:
    """Write one shard atomically; return its sha256."""
    buffer = io.BytesIO()
    np.save(buffer, games, allow_pickle=False)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def _check_metadata(metadata) -> dict:
    """`metadata` as a plain dict of JSON values whose keys are not `RESERVED_KEYS`."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise DatasetError(f"metadata={metadata!r}: expected a dict with str keys")
    reserved = sorted(RESERVED_KEYS.intersection(metadata))
    if reserved:
        raise DatasetError(f"metadata sets reserved manifest keys {reserved}; use other names")
    for key, value in metadata.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"metadata[{key!r}] = {value!r} is not JSON-serialisable ({exc}); "
                               "expected str, int, float, bool, None, list or dict "
                               "(e.g. int(x) for a numpy integer)") from None
    # as it reads back (tuples become lists, keys strings), so a resumed write compares equal
    return json.loads(json.dumps(metadata))


def _resume_record(partial: Path, params: dict) -> tuple[dict, list] | None:
    """``(parameters, finished shard entries)`` of the interrupted run in `partial`: from
    its progress file, or, for a run that died after writing its final manifest (whose
    shards are then all finished), from that manifest. None when neither is readable."""
    for name in (PROGRESS, MANIFEST):
        try:
            record = json.loads((partial / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("shards"), list):
            continue
        if name == MANIFEST:   # the parameters are among the manifest's keys
            return {k: record.get(k) for k in params}, record["shards"]
        if isinstance(record.get("params"), dict):
            return record["params"], record["shards"]
    return None


def _check_shard_entry(meta, where: str) -> tuple[str, int, str]:
    """``(file, n_games, sha256)`` of a manifest's shard entry; `DatasetError` naming the
    entry unless ``file`` is a plain file name (inside the dataset directory)."""
    ok = isinstance(meta, dict) and isinstance(meta.get("file"), str) \
        and isinstance(meta.get("n_games"), int) and not isinstance(meta.get("n_games"), bool) \
        and meta["n_games"] >= 0 and isinstance(meta.get("sha256"), str)
    if not ok:
        raise DatasetError(f"{where}: {meta!r} is not a valid shard entry; expected "
                           "{'file': str, 'n_games': int >= 0, 'sha256': str}")
    name = meta["file"]
    if name in ("", ".", "..") or "/" in name or "\\" in name or Path(name).name != name:
        raise DatasetError(f"{where}: shard file {name!r} is not a plain file name inside the "
                           "dataset directory")
    return name, meta["n_games"], meta["sha256"]


def _prepare_partial(out: Path, params: dict, overwrite: bool) -> tuple[Path, list[dict]]:
    """Create or reopen ``out.partial``; return it and the shards already finished there."""
    if (out / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"dataset {str(out)!r} already exists; pass overwrite=True "
                           "(--overwrite) to replace it")
    if out.is_dir() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise DatasetError(f"{str(out)!r} is a non-empty directory that holds no {MANIFEST} "
                           "(not a dataset); refusing to replace it, even with overwrite=True: "
                           "remove it or choose another path")
    if out.exists() and not (out / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"{str(out)!r} exists and is not a dataset; pass overwrite=True "
                           "(--overwrite) to replace it")
    partial = out.with_name(out.name + ".partial")
    done: list[dict] = []
    if partial.exists():
        record = _resume_record(partial, params)
        if record is not None and record[0] == params:
            for index, shard in enumerate(record[1]):  # keep the verified prefix of finished shards
                try:
                    name, _, sha = _check_shard_entry(shard, str(partial))
                except DatasetError:
                    break
                path = partial / name
                if name != _shard_name(index) or not path.is_file() or sha256_file(path) != sha:
                    break
                done.append(shard)
        elif record is not None and not overwrite:
            raise DatasetError(f"an interrupted generation with other parameters is in "
                               f"{str(partial)!r} ({record[0]}); pass overwrite=True "
                               "(--overwrite) to discard it")
        if not done:
            if partial.is_dir():
                shutil.rmtree(partial)
            else:
                partial.unlink()
        else:
            # What a killed run left half-done (temporaries, shards it did not record) goes;
            # safe because the lock says that no other writer is using them.
            keep = {s["file"] for s in done} | {PROGRESS, MANIFEST}
            for entry in partial.iterdir():
                if entry.name in keep:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    partial.mkdir(parents=True, exist_ok=True)
    return partial, done


def _finish(out: Path, partial: Path, manifest: dict) -> None:
    """Write the manifest (with its own digest) and move the finished directory into place."""
    manifest = {**manifest, MANIFEST_DIGEST: manifest_digest(manifest, MANIFEST_DIGEST)}
    atomic_write_json(partial / MANIFEST, manifest)
    (partial / PROGRESS).unlink(missing_ok=True)
    replace_directory(partial, out)


def _manifest(n_games: int, shards: list[dict], shard_size: int, extra: dict) -> dict:
    return {"format": "mothello-games", "format_version": FORMAT_VERSION,
            "n_games": n_games, "shard_size": shard_size, "plies": GAME_PLIES, "dtype": "int8",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **extra, "shards": shards}


def _write_sharded(out, n_games: int, shard_size: int, make_shard, params: dict,
                   overwrite: bool, progress: bool) -> Path:
    out = as_path(out, "out", error=DatasetError)
    if out.name in ("", ".."):   # its .partial and .lock go beside it, under its name
        raise DatasetError(f"out={str(out)!r}: expected a path that names the dataset directory "
                           "(such as 'games'), not '.', '..' or '/'")
    out.parent.mkdir(parents=True, exist_ok=True)   # where the lock file goes
    free = shutil.disk_usage(out.parent).free
    if n_games * GAME_PLIES > free:   # 60 bytes a game (int8 moves)
        raise DatasetError(f"{n_games:,} games need about {n_games * GAME_PLIES / 2**30:,.1f} "
                           f"GiB; {str(out.parent)!r} has {free / 2**30:,.1f} GiB free")
    with writer_lock(out, error=DatasetError, what="dataset"):
        _write_locked(out, n_games, shard_size, make_shard, params, overwrite, progress)
    return out


def _write_locked(out: Path, n_games: int, shard_size: int, make_shard, params: dict,
                  overwrite: bool, progress: bool) -> None:
    """`_write_sharded` under its lock: nothing else writes `out` or ``out.partial``."""
    partial, done = _prepare_partial(out, params, overwrite)
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(True, total=n_games, initial=sum(s["n_games"] for s in done),
                           unit="game", desc=f"writing {out.name}")
    shards = list(done)
    try:
        for index in range(len(done), -(-n_games // shard_size)):
            start = index * shard_size
            games = make_shard(start, min(start + shard_size, n_games))
            name = _shard_name(index)
            shards.append({"file": name, "n_games": int(len(games)),
                           "sha256": _write_shard(partial / name, games)})
            atomic_write_json(partial / PROGRESS, {"params": params, "shards": shards})
            if bar is not None:
                bar.update(len(games))
    finally:
        if bar is not None:
            bar.close()
    _finish(out, partial, _manifest(n_games, shards, shard_size, params))


def generate_dataset(out, *, n_games: int, seed: int, threads: int | None = None,
                     shard_size: int = DEFAULT_SHARD_SIZE,
                     prefix: str | Iterable[str | int] | None = None,
                     overwrite: bool = False, progress: bool = True) -> GameDataset:
    """Generate `n_games` random games (see `generate_games`) into the dataset directory
    `out`, resuming an interrupted run of the same parameters, and return it loaded."""
    n_games = check_int("n_games", n_games, least=1, error=DatasetError)
    shard_size = check_int("shard_size", shard_size, least=1, error=DatasetError)
    seed = check_seed(seed)
    resolve_threads(threads)
    opening = Board.from_moves(prefix).moves if prefix is not None else []
    params = {"generator": "uniform-random-legal", "seed": seed, "prefix": opening,
              "n_games": n_games, "shard_size": shard_size}

    def make_shard(start: int, stop: int) -> np.ndarray:
        return generate_games(stop - start, seed=seed, threads=threads, prefix=opening,
                              first_game=start)

    return load_games(_write_sharded(out, n_games, shard_size, make_shard, params, overwrite,
                                     progress))


def write_games(games, out, *, shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False,
                metadata: dict | None = None, progress: bool = False) -> GameDataset:
    """Write an existing ``int8 [n, 60]`` games array as a dataset directory (atomically).

    `metadata`: JSON-serialisable values stored in the manifest under keys other than
    `RESERVED_KEYS`. The manifest records the sha256 of the games' bytes
    (``games_sha256``), so an interrupted write resumes only for the same games."""
    games = validate_games(games)
    shard_size = check_int("shard_size", shard_size, least=1, error=DatasetError)
    metadata = _check_metadata(metadata)
    if len(games) == 0:
        raise DatasetError("cannot write a dataset of 0 games")
    params = {"generator": "array", "n_games": int(len(games)), "shard_size": shard_size,
              "games_sha256": hashlib.sha256(games).hexdigest(), **metadata}
    return load_games(_write_sharded(out, len(games), shard_size,
                                     lambda a, b: games[a:b], params, overwrite, progress))


class GameDataset:
    """A loaded dataset: memory-mapped shards behaving as one ``int8 [n, 60]`` array.

    Indexing works as on that array, whatever the number of shards: ``ds[i]``,
    ``ds[a:b]``, ``ds[index_array]``, ``ds[bool_mask]`` and tuples such as ``ds[:, 0]``
    or ``ds[3, 2]`` (the first index picks games, the rest applies to the games
    picked). The result is always a new, writable in-memory array (or a numpy
    scalar), never a view of the files. ``np.asarray(ds)`` is a read-only memory-mapped
    view for a one-shard dataset and a copy for several (``copy=False`` then raises
    ``ValueError``); ``np.array(ds)`` is always a writable copy. ``ds.manifest`` holds
    the metadata (seed, prefix, counts).
    """

    def __init__(self, path: Path, manifest: dict, shards: list[np.ndarray]):
        self.path = Path(path)
        self.manifest = manifest
        self.shards = shards
        self._offsets = np.cumsum([0] + [len(s) for s in shards])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def seed(self):
        return self.manifest.get("seed")

    def __getitem__(self, index):
        key = index if isinstance(index, tuple) else (index,)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if first is Ellipsis or first is None or \
                (isinstance(first, np.ndarray) and first.dtype == bool and first.ndim > 1):
            return self._gather(np.arange(len(self)))[index]   # not a pick of games: apply whole
        if isinstance(first, slice):
            games = self._slice(first)
            return games[(slice(None), *rest)] if rest else games
        rows = self._rows(first)
        if rows.ndim == 0:
            game = self._gather(rows[None])[0]
            return game[rest] if rest else game
        # indexing the gathered games with their positions and the rest keeps numpy's rules
        # for combined advanced indices
        games = self._gather(rows.ravel())
        if not rest:
            return games.reshape(*rows.shape, GAME_PLIES)
        return games[(np.arange(rows.size).reshape(rows.shape), *rest)]

    def _slice(self, index: slice) -> np.ndarray:
        """``int8 [m, 60]``: a copy of the games `index` picks, shard by shard."""
        start, stop, step = index.indices(len(self))
        if step != 1:
            return self._gather(np.arange(start, stop, step))
        pieces = [shard[max(start - lo, 0):max(stop - lo, 0)]
                  for shard, lo in zip(self.shards, self._offsets[:-1])]
        return np.concatenate([np.empty((0, GAME_PLIES), np.int8)] + pieces)

    def _rows(self, first) -> np.ndarray:
        """The game numbers (``int64``, any shape) that an int, an integer array or a bool
        mask over games picks, without an index of every game."""
        n = len(self)
        if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            if not -n <= first < n:
                raise IndexError(f"index {first} is out of bounds for a dataset of {n} games")
            return np.asarray(first % n)
        rows = np.asarray(first)
        if rows.dtype == bool and rows.ndim == 1:
            if rows.shape != (n,):
                raise IndexError(f"boolean index of shape {rows.shape} does not match a dataset "
                                 f"of {n} games")
            return np.flatnonzero(rows)
        if rows.dtype.kind in "iu" and rows.ndim >= 1:
            if rows.size and (rows.min() < -n or rows.max() >= n):
                raise IndexError(f"index out of range for a dataset of {n} games")
            return rows.astype(np.int64) % max(n, 1)
        return np.arange(n)[first]   # anything else, with numpy's own errors

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Games at `rows` (``int [m]``, negative counts from the end): ``int8 [m, 60]``."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.shards) == 1:   # numpy's fancy index: a copy, bounds checked
            return np.asarray(self.shards[0][rows])
        rows = np.where(rows < 0, rows + len(self), rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} games")
        shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
        out = np.empty((len(rows), GAME_PLIES), dtype=np.int8)
        for s in np.unique(shard_of):
            sel = shard_of == s
            out[sel] = self.shards[s][rows[sel] - self._offsets[s]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        same_dtype = dtype is None or np.dtype(dtype) == np.int8
        if len(self.shards) == 1 and not copy and same_dtype:
            return np.asarray(self.shards[0])
        if copy is False:
            raise ValueError(f"a copy is needed for np.asarray(dataset, copy=False) "
                             f"({len(self.shards)} shards, dtype {dtype}); use copy=None")
        if len(self.shards) == 1:
            return np.array(self.shards[0], dtype=dtype)
        return np.concatenate(self.shards).astype(dtype or np.int8, copy=False)

    def split(self, *, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Seeded random ``(train, val)`` games arrays (see `split_games`)."""
        train_idx, val_idx = split_games(len(self), val_fraction=val_fraction, seed=seed)
        return self._gather(train_idx), self._gather(val_idx)

    def __repr__(self) -> str:
        return (f"GameDataset({str(self.path)!r}, n_games={len(self)}, "
                f"shards={len(self.shards)}, seed={self.seed})")


def _npy_data_offset(path: Path) -> tuple[tuple, int, np.dtype]:
    """``(shape, offset of the data in bytes, dtype)`` from an ``.npy`` file's header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
        return shape, f.tell(), dtype


def load_games(path, *, verify: bool = True) -> GameDataset:
    """Open the dataset directory `path`, memory-mapping its shards.

    Every shard must exist with the size and shape the manifest gives; with
    `verify` (the default) its sha256 is checked too. Any mismatch raises
    `DatasetError` naming the shard.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise DatasetError(f"path={path!r}: expected a dataset directory (a str or Path)")
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        partial = path.with_name(path.name + ".partial") if path.name else None   # not for '.'
        hint = (f"; an unfinished generation is in {str(partial)!r} (run the same command "
                "again to resume it)") if partial is not None and partial.exists() else ""
        raise DatasetError(f"no dataset at {str(path)!r}: {MANIFEST} is missing{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
        shards_meta = manifest["shards"]
        version = manifest["format_version"]
        if not isinstance(shards_meta, list):
            raise TypeError(f"'shards' is a {type(shards_meta).__name__}, expected a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"manifest {str(manifest_path)!r} is not a valid dataset manifest "
                           f"({exc})") from None
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise DatasetError(f"dataset {str(path)!r} has format version {version!r}; this version "
                           f"of mothello-fast reads version {FORMAT_VERSION}")
    if MANIFEST_DIGEST not in manifest:
        warnings.warn(f"manifest {str(manifest_path)!r} has no {MANIFEST_DIGEST} (written "
                      "before manifests carried one): its fields (seed, prefix, counts) are "
                      "taken as they are", stacklevel=2)
    elif manifest[MANIFEST_DIGEST] != manifest_digest(manifest, MANIFEST_DIGEST):
        raise DatasetError(f"manifest {str(manifest_path)!r} was edited or is corrupted: its "
                           f"contents do not match its {MANIFEST_DIGEST}")
    shards = []
    for index, meta in enumerate(shards_meta):
        name, n_games, sha = _check_shard_entry(meta, f"manifest {str(manifest_path)!r}, "
                                                      f"shards[{index}]")
        if name != _shard_name(index):   # as written: each shard once, in the order of its games
            raise DatasetError(f"manifest {str(manifest_path)!r}, shards[{index}]: file {name!r}; "
                               f"expected {_shard_name(index)!r} (shards listed out of order or "
                               "twice)")
        shard_path = path / name
        if not shard_path.is_file():
            raise DatasetError(f"shard {name!r} of dataset {str(path)!r} is missing")
        expected = (n_games, GAME_PLIES)
        try:
            shape, offset, dtype = _npy_data_offset(shard_path)
        # numpy's header parser also raises these for a garbled header
        except (ValueError, OSError, SyntaxError, tokenize.TokenError) as exc:
            raise DatasetError(f"shard {name!r} of dataset {str(path)!r} is corrupted: "
                               f"unreadable header ({exc})") from None
        size = shard_path.stat().st_size
        if tuple(shape) != expected or dtype != np.int8 or size < offset + expected[0] * GAME_PLIES:
            raise DatasetError(f"shard {name!r} of dataset {str(path)!r} is truncated or "
                               f"corrupted: {size} bytes, shape {tuple(shape)} {dtype}; expected "
                               f"shape {expected} int8 ({offset + expected[0] * GAME_PLIES} bytes)")
        if verify and sha256_file(shard_path) != sha:
            raise DatasetError(f"shard {name!r} of dataset {str(path)!r} is corrupted: "
                               "its sha256 does not match the manifest")
        shards.append(np.load(shard_path, mmap_mode="r"))
    if sum(len(s) for s in shards) != manifest.get("n_games"):
        raise DatasetError(f"dataset {str(path)!r}: shards hold {sum(len(s) for s in shards)} "
                           f"games; the manifest says {manifest.get('n_games')!r}")
    return GameDataset(path, manifest, shards)


def split_games(n_games: int, *, val_fraction: float = 0.1, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n_games)``: sorted ``int64`` index arrays
    ``(train, val)`` with ``round(val_fraction * n_games)`` validation games."""
    n_games = check_int("n_games", n_games, least=0, error=DatasetError)
    val_fraction = check_float("val_fraction", val_fraction, low=0, high=1, error=DatasetError)
    seed = check_int("seed", seed, least=0, error=DatasetError)   # None would not be seeded
    check_fits_in_memory(f"a split of n_games={n_games:,}", 24 * n_games, error=DatasetError)
    order = np.random.default_rng(seed).permutation(n_games)
    n_val = int(round(val_fraction * n_games))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def deduplicate(games, *, return_index: bool = False):
    """Drop repeated games, keeping first occurrences in order, in O(n) expected time.

    games: ``int8 [n, 60]`` -> ``int8 [m, 60]`` (and the kept row indices ``int64 [m]``
    with `return_index`).
    """
    games = validate_games(games)
    keep = _engine.dedup_first_indices(games)
    return (games[keep], keep) if return_index else games[keep]
