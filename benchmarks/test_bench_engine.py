"""Engine throughput against a pure-Python list-based generator (as othello_world's),
measured in the same run.

    python -m pytest benchmarks/test_bench_engine.py --benchmark-enable -q
"""
import random
import statistics
import time

import numpy as np
import pytest

import mothello_fast as mf
from conftest import median_seconds
from othello_oracle import random_game

N_GAMES = 200_000
N_REPLAY = 50_000


@pytest.fixture(scope="module")
def games():
    return mf.generate_games(N_GAMES, seed=0)


@pytest.fixture(scope="module")
def rates():
    return {}


def _median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture(scope="module")
def python_rate():
    """games/s of the pure-Python generator, measured once per module run, whichever test
    asks first (so that a ratio never depends on the baseline test having run)."""
    rng = random.Random(0)
    return 20 / _median_seconds(lambda: [random_game(rng) for _ in range(20)], rounds=3)


@pytest.fixture(scope="module")
def first_touch_rate():
    """games/s of writing, once, the fresh memory that one replay's label arrays need: the
    floor under a fresh replay."""
    per_game = 60 * 64 * 3 + 60 + 8
    return N_REPLAY / _median_seconds(lambda: np.ones(N_REPLAY * per_game, dtype=np.uint8),
                                      rounds=3)


def test_python_baseline(report, python_rate):
    report("generation", "pure-Python baseline games/s", python_rate)


@pytest.mark.parametrize("threads", [1, 2])
def test_generation(benchmark, report, rates, games, python_rate, threads):
    out = benchmark.pedantic(mf.generate_games, args=(N_GAMES,), kwargs=dict(seed=1, threads=threads),
                             rounds=5, iterations=1, warmup_rounds=1)
    seconds = median_seconds(benchmark)
    rates[threads] = report("generation", f"games/s, {threads} thread(s)", N_GAMES / seconds)
    report("generation", f"ns per ply, {threads} thread(s) (wall)", seconds / (out >= 0).sum() * 1e9)
    report("generation", f"ratio to pure Python, {threads} thread(s)", rates[threads] / python_rate)
    if threads == 2 and 1 in rates:
        report("generation", "2 threads / 1 thread", rates[2] / rates[1])


def test_replay_labels_fresh_arrays(benchmark, report, games, first_touch_rate):
    benchmark.pedantic(mf.replay, args=(games[:N_REPLAY],), kwargs=dict(threads=1), rounds=3,
                       iterations=1, warmup_rounds=1)
    rate = report("replay (1 thread)", "all labels, fresh arrays, games/s",
                  N_REPLAY / median_seconds(benchmark))
    report("replay (1 thread)", "fresh arrays / first touch of their memory",
           rate / first_touch_rate)


def test_replay_labels_reused_buffer(benchmark, report, games):
    buffer = mf.replay(games[:N_REPLAY])
    benchmark.pedantic(mf.replay, args=(games[:N_REPLAY],), kwargs=dict(threads=1, out=buffer),
                       rounds=5, iterations=1, warmup_rounds=1)
    seconds = median_seconds(benchmark)
    report("replay (1 thread)", "all labels, reused buffer, games/s", N_REPLAY / seconds)
    report("replay (1 thread)", "all labels, reused buffer, ns/ply",
           seconds / (games[:N_REPLAY] >= 0).sum() * 1e9)


def test_replay_bitboards(benchmark, report, games):
    benchmark.pedantic(mf.replay_bitboards, args=(games[:N_REPLAY],), kwargs=dict(threads=1),
                       rounds=5, iterations=1, warmup_rounds=1)
    report("replay (1 thread)", "bitboards, games/s", N_REPLAY / median_seconds(benchmark))


def test_first_touch_of_fresh_memory(report, first_touch_rate):
    """The memory that fresh label arrays need, written once: the floor under a fresh replay."""
    report("replay (1 thread)", "first touch of label-sized memory, games/s", first_touch_rate)


def test_perft(benchmark, report):
    leaves = benchmark.pedantic(mf.perft, args=(9,), rounds=3, iterations=1)
    report("perft", "perft(9) leaves/s", leaves / median_seconds(benchmark))
