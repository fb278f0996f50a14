"""Threads: over chunks of games, and for torch.

The compiled loops (generation, replay, encoding) release the GIL, so plain
Python threads run them in parallel. Work is cut into fixed chunks of games,
so which thread runs a chunk never changes the result.

`torch_threads` sets torch's intra-op threads for a block of work (a training run,
a study cell): on a small machine shared by several processes, more torch threads
than cores can make every one of them several times slower.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from .errors import ConfigError, MothelloError, check_int

__all__ = ["CHUNK_GAMES", "resolve_threads", "run_in_chunks", "torch_threads", "cpu_count",
           "physical_memory", "check_fits_in_memory"]

CHUNK_GAMES = 8192  # games per task handed to a thread


def cpu_count() -> int:
    """The cores this process may use (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def physical_memory() -> int:
    """This machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):   # no sysconf (not POSIX)
        return 0


def check_fits_in_memory(what: str, n_bytes: int, *, total: int | None = None,
                         place: str = "this machine", hint: str = "",
                         error: type[MothelloError] = MothelloError) -> None:
    """`error` naming `what` when `n_bytes` exceed `total` bytes (default: this machine's
    physical memory; 0, unknown, passes): a request that would end in an allocator error,
    or with the system killing the process while numpy fills a lazily allocated array."""
    total = physical_memory() if total is None else total
    if total and n_bytes > total:
        raise error(f"{what}: needs about {n_bytes / 2**30:,.1f} GiB, more than the "
                    f"{total / 2**30:,.1f} GiB of {place}{hint}")


def resolve_threads(threads: int | None) -> int:
    """`threads`, or every core this process may use when it is None."""
    if threads is None:
        return cpu_count()
    try:
        return check_int("threads", threads, least=1, error=ConfigError)
    except ConfigError as exc:
        raise ConfigError(f"{exc} or None (every core)") from None


def run_in_chunks(n: int, threads: int, work: Callable[[int, int], None], progress: bool = False,
                  desc: str = "") -> None:
    """Call ``work(start, stop)`` over chunks of ``range(n)`` on `threads` threads, with a
    progress bar counted in games when `progress`."""
    chunks = [(s, min(s + CHUNK_GAMES, n)) for s in range(0, n, CHUNK_GAMES)]
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(True, total=n, desc=desc, unit="game")
    try:
        if threads == 1 or len(chunks) <= 1:
            for start, stop in chunks:
                work(start, stop)
                if bar is not None:
                    bar.update(stop - start)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                futures = [pool.submit(work, start, stop) for start, stop in chunks]
                try:
                    for future, (start, stop) in zip(futures, chunks):
                        future.result()
                        if bar is not None:
                            bar.update(stop - start)
                except BaseException:   # a failed chunk, Ctrl-C: the chunks not started never run
                    pool.shutdown(cancel_futures=True)
                    raise
    finally:
        if bar is not None:
            bar.close()


@contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)`` (None: leave torch's setting),
    and restore the previous number afterwards."""
    if threads is None:
        yield
        return
    import torch

    threads = resolve_threads(threads)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
