"""Threads over chunks of games.

The compiled loops (generation, replay, encoding) release the GIL, so plain
Python threads run them in parallel. Work is cut into fixed chunks of games,
so which thread runs a chunk never changes the result.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .errors import ConfigError, check_int

__all__ = ["CHUNK_GAMES", "resolve_threads", "run_in_chunks"]

CHUNK_GAMES = 8192  # games per task handed to a thread


def resolve_threads(threads: int | None) -> int:
    """`threads`, or every core this process may use when it is None."""
    if threads is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
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
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=desc, unit="game")
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
