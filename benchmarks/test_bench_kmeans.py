"""KMeans (torch, CUDA when present) against scikit-learn's KMeans on the same points,
with the same n_init, max_iter and tol, measured in the same run.

Full size (the default with CUDA): 200,000 x 512 points, K = 500.

    python -m pytest benchmarks/test_bench_kmeans.py --benchmark-enable -q -s

Without CUDA the default is 20,000 x 128, K = 100 (a few minutes on two cores).
Sizes are set with environment variables:

    KMEANS_BENCH_N=50000 KMEANS_BENCH_D=256 KMEANS_BENCH_K=200 \\
    KMEANS_BENCH_N_INIT=1 KMEANS_BENCH_MAX_ITER=100 \\
    python -m pytest benchmarks/test_bench_kmeans.py --benchmark-enable -q -s

On the CPU, the Lloyd step's cluster sums are also timed both ways, alternately:
``index_add_`` (the CPU path) against the one-hot matmul (the CUDA path).
"""
import os
import statistics
import time

import numpy as np
import pytest
import torch

from conftest import median_seconds
from mothello_fast.devices import resolve_device
from mothello_fast.kmeans import KMeans, _add_to_clusters

_FULL = torch.cuda.is_available()
N = int(os.environ.get("KMEANS_BENCH_N", 200_000 if _FULL else 20_000))
D = int(os.environ.get("KMEANS_BENCH_D", 512 if _FULL else 128))
K = int(os.environ.get("KMEANS_BENCH_K", 500 if _FULL else 100))
N_INIT = int(os.environ.get("KMEANS_BENCH_N_INIT", 1))
MAX_ITER = int(os.environ.get("KMEANS_BENCH_MAX_ITER", 100))
SECTION = f"k-means {N}x{D} K={K}"


@pytest.fixture(scope="module")
def points():
    """Gaussian clusters around 2K random centres (so K-means has structure to find)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2 * K, D)).astype(np.float32)  # overlapping: many iterations
    which = rng.integers(0, 2 * K, N)
    return centres[which] + rng.normal(size=(N, D)).astype(np.float32)


@pytest.fixture(scope="module")
def results():
    return {}


def test_sklearn_kmeans(benchmark, report, points, results):
    from sklearn.cluster import KMeans as SklearnKMeans

    model = SklearnKMeans(K, n_init=N_INIT, max_iter=MAX_ITER, tol=1e-4, random_state=0)
    fitted = benchmark.pedantic(model.fit, args=(points,), rounds=1, iterations=1)
    results["sklearn"] = (median_seconds(benchmark), fitted.inertia_)
    report(SECTION, "scikit-learn seconds", results["sklearn"][0], "s")
    report(SECTION, "scikit-learn inertia", fitted.inertia_)
    report(SECTION, "scikit-learn iterations", fitted.n_iter_)


def test_torch_kmeans(benchmark, report, points, results):
    device = resolve_device()
    x = torch.from_numpy(points).to(device)
    KMeans(K, n_init=1, max_iter=2, seed=1, device=device).fit(x[:10 * K])  # warm-up
    model = KMeans(K, n_init=N_INIT, max_iter=MAX_ITER, tol=1e-4, seed=0, device=device)
    fitted = benchmark.pedantic(model.fit, args=(x,), rounds=1, iterations=1)
    seconds = median_seconds(benchmark)
    report(SECTION, f"mothello KMeans seconds ({device.type})", seconds, "s")
    report(SECTION, "mothello KMeans inertia", fitted.inertia_)
    report(SECTION, "mothello KMeans iterations", fitted.n_iter_)
    if "sklearn" in results:
        sk_seconds, sk_inertia = results["sklearn"]
        report(SECTION, "speed-up (scikit-learn s / ours s)", sk_seconds / seconds, "x")
        report(SECTION, "inertia ours / scikit-learn", fitted.inertia_ / sk_inertia)
        assert abs(fitted.inertia_ / sk_inertia - 1) <= 0.01


def test_cluster_sums_index_add_against_one_hot(report, points):
    """One Lloyd step's cluster sums of all the points, both ways in 9 alternating rounds
    (after a warm-up pair): the median of the ratios of adjacent pairs. The two add in
    different orders: the counts are equal, the sums close."""
    if resolve_device().type != "cpu":
        pytest.skip("times the CPU path")
    x = torch.from_numpy(points)
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, K, N))
    times, sums = {True: [], False: []}, {}
    for r in range(10):
        for one_hot in ((True, False) if r % 2 else (False, True)):
            sums[one_hot] = torch.zeros(K, D), torch.zeros(K)
            start = time.perf_counter()
            _add_to_clusters(*sums[one_hot], labels, x, one_hot=one_hot)
            times[one_hot].append(time.perf_counter() - start)
    one_hot_s, index_add_s = times[True][1:], times[False][1:]
    report(SECTION, "cluster sums, one-hot matmul", statistics.median(one_hot_s) * 1e3, "ms")
    report(SECTION, "cluster sums, index_add_", statistics.median(index_add_s) * 1e3, "ms")
    report(SECTION, "cluster sums speed-up (one-hot / index_add_)",
           statistics.median(a / b for a, b in zip(one_hot_s, index_add_s)), "x")
    assert torch.equal(sums[True][1], sums[False][1])
    assert torch.allclose(sums[True][0], sums[False][0], rtol=1e-4, atol=1e-3)
