"""Threads over chunks of games: a chunk that fails, or Ctrl-C, stops the work."""
import signal
import threading
import time

import numpy as np
import pytest

import mothello_fast as mf
from mothello_fast.parallel import CHUNK_GAMES, run_in_chunks

N_CHUNKS = 64


def test_every_game_is_in_exactly_one_chunk_whatever_the_threads():
    for n in (0, 1, CHUNK_GAMES - 1, CHUNK_GAMES, CHUNK_GAMES + 1, 3 * CHUNK_GAMES):
        for threads in (1, 2, 4):
            seen = np.zeros(n, dtype=np.int64)

            def count(start, stop):
                seen[start:stop] += 1

            run_in_chunks(n, threads, count)
            assert (seen == 1).all()


def test_games_across_chunk_boundaries_do_not_depend_on_the_threads():
    n = 2 * CHUNK_GAMES + 3
    one = mf.generate_games(n, seed=3, threads=1)
    for threads in (2, 3):
        assert np.array_equal(mf.generate_games(n, seed=3, threads=threads), one)


def test_a_failing_chunk_stops_the_chunks_not_yet_started():
    started = []

    def work(start, stop):
        started.append(start)
        if start == 0:
            raise RuntimeError("chunk 0 failed")
        time.sleep(0.01)

    with pytest.raises(RuntimeError, match="chunk 0 failed"):
        run_in_chunks(N_CHUNKS * CHUNK_GAMES, 2, work)
    assert len(started) < N_CHUNKS // 4   # not all of them before the error shows


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_stops_the_chunks_not_yet_started():
    started, main = [], threading.main_thread().ident

    def work(start, stop):
        started.append(start)
        if start == 2 * CHUNK_GAMES:
            signal.pthread_kill(main, signal.SIGINT)   # as Ctrl-C does, in the waiting thread
        time.sleep(0.01)

    with pytest.raises(KeyboardInterrupt):
        run_in_chunks(N_CHUNKS * CHUNK_GAMES, 2, work)
    assert len(started) < N_CHUNKS // 4
