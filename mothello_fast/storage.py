"""Writing files so that nothing is ever half-written.

A file is written to a temporary file of its own (a unique name beside the
target, so concurrent writers never share one), fsynced and renamed over its
target; a directory (a dataset, a checkpoint) is built under ``NAME.partial``
and swapped into place whole with `replace_directory`. Readers therefore see
either the old version or the complete new one, and a crash leaves at most a
``.partial`` (or a ``.swap-*.old`` directory holding the replaced version).
`writer_lock` keeps a second process from building the same ``NAME.partial`` at once.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_json", "sha256_file", "fsync_dir",
           "replace_directory", "writer_lock", "manifest_digest", "as_path",
           "check_replaceable"]


def as_path(value, name: str, *, error: type[Exception] = ValueError) -> Path:
    """`value` (a non-empty str or os.PathLike) as a `Path`, else `error` naming `name`."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise error(f"{name}={value!r}: expected a path (a non-empty str or os.PathLike)")
    return Path(value)


def check_replaceable(path: Path, marker: str, what: str, *,
                      error: type[Exception] = ValueError) -> None:
    """`error` unless `path` is free to be replaced by a new `what`: absent, an empty
    directory, or a directory holding `marker` (a `what` already). Anything else (a
    file, another kind of directory) is kept: nothing is replaced that is not ours."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and ((path / marker).exists()
                                                    or not any(path.iterdir())):
        return
    kind = "a file" if path.is_file() else "a directory that holds no " + marker
    raise error(f"{str(path)!r} is {kind}, not a {what}: refusing to replace it; remove it "
                "or choose another path")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either the old file or the whole new one.

    The data goes to a unique temporary file in the same directory, removed again if
    anything fails, so concurrent writers of one path never corrupt each other (the
    last rename wins)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: the name is this writer's alone; mode 0666 & ~umask, as open() would give
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def manifest_digest(manifest: dict, key: str) -> str:
    """sha256 of `manifest` as canonical JSON (sorted keys), its own digest `key` left out:
    stored under `key`, it tells an edited or damaged manifest from the one written."""
    body = {k: v for k, v in manifest.items() if k != key}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sha256_file(path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def replace_directory(partial: Path, path: Path) -> None:
    """Move the finished directory `partial` to `path`, replacing what is there (a
    directory or a file).

    The old version is first moved into a fresh directory ``PATH.swap-XXXXXXXX.old`` (a
    name no other swap uses), so a crash in between leaves that directory and the
    complete `partial`, never a mixture; if the second rename fails, the old version
    is put back. Such leftovers of earlier crashed swaps are removed by the next one."""
    partial, path = Path(partial), Path(path)
    fsync_dir(partial)
    if path.exists() or path.is_symlink():
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".swap-",
                                      suffix=".old"))
        os.replace(path, aside / path.name)
        try:
            os.replace(partial, path)
        except BaseException:
            os.replace(aside / path.name, path)
            aside.rmdir()
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(partial, path)
    fsync_dir(path.parent)
    leftover = re.compile(re.escape(path.name) + r"\.swap-[^.]{8}\.old")   # mkdtemp's 8 characters
    for stale in path.parent.iterdir():
        if stale.is_dir() and leftover.fullmatch(stale.name):
            shutil.rmtree(stale, ignore_errors=True)


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file now at `path`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def writer_lock(path, *, lock=None, error: type[Exception] = OSError, what: str = "directory"
                ) -> Iterator[Path]:
    """Hold the lock file `lock` (default ``PATH.lock``, beside `path`, so never inside
    what is built) while this process writes `path` and its ``PATH.partial``; yield the
    lock's path.

    While another process holds it, raise `error` at once, naming `path` (`what`: how
    to call it), the lock and the holder's pid and host. The lock file is removed on
    release; a process that is killed leaves it behind, unlocked, for the next one.

    `fcntl.flock` rather than creating the file with O_EXCL: an O_EXCL lock is the
    file's existence, so a run killed by SIGKILL, a crash or a power cut would leave a
    lock that blocks resuming it until someone deletes it by hand (and deleting it by
    hand is how two writers end up sharing a directory); the kernel drops a flock
    when its process ends, however it ends. (POSIX only, as is fcntl.) On a file system
    that takes no flock (some NFS and Lustre mounts) this warns and writes unlocked, as
    before there was a lock."""
    import fcntl

    path = Path(path)
    if lock is None:
        base = Path(os.path.abspath(path)) if path.name in ("", "..") else path   # ".": cwd
        lock = base.with_name(base.name + ".lock")
    lock = Path(lock)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "pid unknown"
            os.close(fd)
            raise error(f"another process ({holder}) is writing {what} {str(path)!r}: it holds "
                        f"the lock {str(lock)!r}. Wait for it to finish, or stop it and run the "
                        "same command again to resume its work; the lock goes with its process "
                        "(even one killed), so if that process is dead, just run the command "
                        "again (do not delete the lock file while it runs)") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            warnings.warn(f"cannot lock {str(lock)!r} ({exc.strerror}: the file system takes "
                          f"no flock); writing {what} {str(path)!r} unlocked: run one writer "
                          "at a time", RuntimeWarning, stacklevel=3)
            break
        except BaseException:
            os.close(fd)
            raise
        # A holder that finished between our open and our flock has removed the file we
        # locked; lock the one at that name now instead.
        if _same_file(fd, lock):
            break
        os.close(fd)
    owner = os.getpid()
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {owner} on {socket.gethostname()}\n".encode())
        yield lock
    finally:
        # (a child forked inside the block that leaves it shares the lock: not its to remove)
        if os.getpid() == owner and _same_file(fd, lock):
            lock.unlink()   # still locked: a process that opened it now sees it is gone
        os.close(fd)
