"""Engine throughput against a pure-Python list-based generator (as othello_world's),
measured in the same run.

    python -m pytest benchmarks/test_bench_engine.py --benchmark-enable -q
"""
import random

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


def test_python_baseline(benchmark, report, rates):
    rng = random.Random(0)
    benchmark.pedantic(lambda: [random_game(rng) for _ in range(20)], rounds=3, iterations=1)
    rates["python"] = report("generation", "pure-Python baseline games/s", 20 / median_seconds(benchmark))


@pytest.mark.parametrize("threads", [1, 2])
def test_generation(benchmark, report, rates, games, threads):
    out = benchmark.pedantic(mf.generate_games, args=(N_GAMES,), kwargs=dict(seed=1, threads=threads),
                             rounds=5, iterations=1, warmup_rounds=1)
    seconds = median_seconds(benchmark)
    rates[threads] = report("generation", f"games/s, {threads} thread(s)", N_GAMES / seconds)
    report("generation", f"ns per ply, {threads} thread(s) (wall)", seconds / (out >= 0).sum() * 1e9)
    if "python" in rates:
        report("generation", f"ratio to pure Python, {threads} thread(s)", rates[threads] / rates["python"])
    if threads == 2 and 1 in rates:
        report("generation", "2 threads / 1 thread", rates[2] / rates[1])


def test_replay_labels_fresh_arrays(benchmark, report, games):
    benchmark.pedantic(mf.replay, args=(games[:N_REPLAY],), kwargs=dict(threads=1), rounds=3,
                       iterations=1, warmup_rounds=1)
    report("replay (1 thread)", "all labels, fresh arrays, games/s", N_REPLAY / median_seconds(benchmark))


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


def test_first_touch_of_fresh_memory(benchmark, report):
    """The memory that fresh label arrays need, written once: the floor under a fresh replay."""
    per_game = 60 * 64 * 3 + 60 + 8

    def touch():
        np.ones(N_REPLAY * per_game, dtype=np.uint8)

    benchmark.pedantic(touch, rounds=3, iterations=1)
    report("replay (1 thread)", "first touch of label-sized memory, games/s",
           N_REPLAY / median_seconds(benchmark))


def test_perft(benchmark, report):
    leaves = benchmark.pedantic(mf.perft, args=(9,), rounds=3, iterations=1)
    report("perft", "perft(9) leaves/s", leaves / median_seconds(benchmark))
