"""Writing files so that nothing is ever half-written.

A file is written to a temporary name, fsynced and renamed over its target; a
directory (a dataset, a checkpoint) is built under ``NAME.partial`` and swapped
into place whole with `replace_directory`. Readers therefore see either the old
version or the complete new one, and a crash leaves at most a ``.partial``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_json", "sha256_file", "fsync_dir",
           "replace_directory"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def sha256_file(path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def replace_directory(partial: Path, path: Path) -> None:
    """Move the finished directory `partial` to `path`, replacing what is there.

    The old directory is renamed aside before the new one takes its name, so a
    crash in between leaves ``PATH.old`` and the complete ``partial``, never a
    mixture."""
    fsync_dir(partial)
    if path.exists():
        old = path.with_name(path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
        os.replace(partial, path)
        shutil.rmtree(old)
    else:
        os.replace(partial, path)
    fsync_dir(path.parent)
