"""Game datasets on disk: a directory of ``.npy`` shards and a ``manifest.json``.

A dataset directory appears only when it is complete: shards are written into
``DIR.partial/`` one at a time (each to a temporary name, fsynced, renamed), and
the whole directory is renamed to ``DIR`` after its manifest is written. An
interrupted `generate_dataset` resumes from the shards already in
``DIR.partial/``: game ``i`` depends only on ``(seed, i)``, so a resumed dataset
equals one generated in a single run.

`load_games` memory-maps the shards and checks them against the manifest: a
missing, truncated or corrupted shard raises `DatasetError` naming it.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import _engine
from .errors import DatasetError
from .othello import GAME_PLIES, Board, generate_games, validate_games
from .storage import atomic_write_bytes, atomic_write_json, replace_directory, sha256_file

__all__ = ["FORMAT_VERSION", "GameDataset", "generate_dataset", "write_games", "load_games",
           "split_games", "deduplicate"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"  # in DIR.partial/: parameters and finished shards
DEFAULT_SHARD_SIZE = 1_000_000


def _write_shard(path: Path, games: np.ndarray) -> str:
    """Write one shard atomically; return its sha256."""
    buffer = io.BytesIO()
    np.save(buffer, games, allow_pickle=False)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def _prepare_partial(out: Path, params: dict, overwrite: bool) -> tuple[Path, list[dict]]:
    """Create or reopen ``out.partial``; return it and the shards already finished there."""
    if (out / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"dataset {str(out)!r} already exists; pass overwrite=True "
                           "(--overwrite) to replace it")
    if out.exists() and not (out / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"{str(out)!r} exists and is not a dataset; pass overwrite=True "
                           "(--overwrite) to replace it")
    partial = out.with_name(out.name + ".partial")
    done: list[dict] = []
    if partial.exists():
        try:
            progress = json.loads((partial / PROGRESS).read_text())
        except (OSError, ValueError):
            progress = None
        if progress is not None and progress.get("params") == params:
            for shard in progress["shards"]:  # keep the verified prefix of finished shards
                path = partial / shard["file"]
                if not path.exists() or sha256_file(path) != shard["sha256"]:
                    break
                done.append(shard)
        elif progress is not None and not overwrite:
            raise DatasetError(f"an interrupted generation with other parameters is in "
                               f"{str(partial)!r} ({progress.get('params')}); pass overwrite=True "
                               "(--overwrite) to discard it")
        if not done:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    return partial, done


def _finish(out: Path, partial: Path, manifest: dict) -> None:
    """Write the manifest and move the finished directory into place."""
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
    out = Path(out)
    partial, done = _prepare_partial(out, params, overwrite)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_games, initial=sum(s["n_games"] for s in done), unit="game",
                   desc=f"writing {out.name}")
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
    return out


def generate_dataset(out, *, n_games: int, seed: int, threads: int | None = None,
                     shard_size: int = DEFAULT_SHARD_SIZE,
                     prefix: str | Iterable[str | int] | None = None,
                     overwrite: bool = False, progress: bool = True) -> GameDataset:
    """Generate `n_games` random games (see `generate_games`) into the dataset directory
    `out`, resuming an interrupted run of the same parameters, and return it loaded."""
    n_games = _check_positive("n_games", n_games)
    shard_size = _check_positive("shard_size", shard_size)
    opening = Board.from_moves(prefix).moves if prefix is not None else []
    params = {"generator": "uniform-random-legal", "seed": int(seed), "prefix": opening,
              "n_games": n_games, "shard_size": shard_size}

    def make_shard(start: int, stop: int) -> np.ndarray:
        return generate_games(stop - start, seed=seed, threads=threads, prefix=opening,
                              first_game=start)

    return load_games(_write_sharded(out, n_games, shard_size, make_shard, params, overwrite,
                                     progress))


def write_games(games, out, *, shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False,
                metadata: dict | None = None, progress: bool = False) -> GameDataset:
    """Write an existing ``int8 [n, 60]`` games array as a dataset directory (atomically)."""
    games = validate_games(games)
    shard_size = _check_positive("shard_size", shard_size)
    params = {"generator": "array", "n_games": int(len(games)), "shard_size": shard_size,
              **(metadata or {})}
    if len(games) == 0:
        raise DatasetError("cannot write a dataset of 0 games")
    return load_games(_write_sharded(out, len(games), shard_size,
                                     lambda a, b: games[a:b], params, overwrite, progress))


class GameDataset:
    """A loaded dataset: memory-mapped shards behaving as one ``int8 [n, 60]`` array.

    ``len(ds)``, ``ds[i]``, ``ds[a:b]``, ``ds[index_array]`` and ``np.asarray(ds)`` work
    across shards; ``ds.manifest`` holds the metadata (seed, prefix, counts).
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

    def __getitem__(self, index) -> np.ndarray:
        if len(self.shards) == 1:
            return self.shards[0][index]
        if isinstance(index, (int, np.integer)):
            rows = self._gather(np.array([index]))
            return rows[0]
        return self._gather(np.arange(len(self))[index])

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
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
        games = self.shards[0] if len(self.shards) == 1 else np.concatenate(self.shards)
        return np.asarray(games, dtype=dtype)

    def split(self, *, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Seeded random ``(train, val)`` games arrays (see `split_games`)."""
        train_idx, val_idx = split_games(len(self), val_fraction=val_fraction, seed=seed)
        return self._gather(train_idx), self._gather(val_idx)

    def __repr__(self) -> str:
        return (f"GameDataset({str(self.path)!r}, n_games={len(self)}, "
                f"shards={len(self.shards)}, seed={self.seed})")


def _npy_data_offset(path: Path) -> tuple[tuple, int]:
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
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        partial = path.with_name(path.name + ".partial")
        hint = (f"; an unfinished generation is in {str(partial)!r} (run the same command "
                "again to resume it)") if partial.exists() else ""
        raise DatasetError(f"no dataset at {str(path)!r}: {MANIFEST} is missing{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
        shards_meta = manifest["shards"]
        version = manifest["format_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"manifest {str(manifest_path)!r} is not a valid dataset manifest "
                           f"({exc})") from None
    if version != FORMAT_VERSION:
        raise DatasetError(f"dataset {str(path)!r} has format version {version}; this version "
                           f"of mothello-fast reads version {FORMAT_VERSION}")
    shards = []
    for meta in shards_meta:
        shard_path = path / meta["file"]
        if not shard_path.exists():
            raise DatasetError(f"shard {meta['file']!r} of dataset {str(path)!r} is missing")
        expected = (meta["n_games"], GAME_PLIES)
        try:
            shape, offset, dtype = _npy_data_offset(shard_path)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"shard {meta['file']!r} of dataset {str(path)!r} is corrupted: "
                               f"unreadable header ({exc})") from None
        size = shard_path.stat().st_size
        if tuple(shape) != expected or dtype != np.int8 or size < offset + expected[0] * GAME_PLIES:
            raise DatasetError(f"shard {meta['file']!r} of dataset {str(path)!r} is truncated or "
                               f"corrupted: {size} bytes, shape {tuple(shape)} {dtype}; expected "
                               f"shape {expected} int8 ({offset + expected[0] * GAME_PLIES} bytes)")
        if verify and sha256_file(shard_path) != meta["sha256"]:
            raise DatasetError(f"shard {meta['file']!r} of dataset {str(path)!r} is corrupted: "
                               "its sha256 does not match the manifest")
        shards.append(np.load(shard_path, mmap_mode="r"))
    if sum(len(s) for s in shards) != manifest.get("n_games"):
        raise DatasetError(f"dataset {str(path)!r}: shards hold {sum(len(s) for s in shards)} "
                           f"games; the manifest says {manifest.get('n_games')}")
    return GameDataset(path, manifest, shards)


def split_games(n_games: int, *, val_fraction: float = 0.1, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n_games)``: sorted ``int64`` index arrays
    ``(train, val)`` with ``round(val_fraction * n_games)`` validation games."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}: expected a fraction in [0, 1]")
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
