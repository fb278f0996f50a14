"""KMeans, nearest neighbours and unification on CUDA against scikit-learn and the CPU path.

    python -m pytest tests/gpu/test_concepts_gpu.py -q
"""
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from mothello_fast.geometry import nearest_neighbors
from mothello_fast.kmeans import KMeans
from mothello_fast.unification import unification_score

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(0).normal(size=(50_000, 64)).astype(np.float32)


def test_cuda_kmeans_reaches_sklearn_inertia_from_the_same_initial_centres(points):
    init = points[np.random.default_rng(1).choice(len(points), 100, replace=False)]
    ours = KMeans(100, init=init, max_iter=100, device="cuda").fit(points)
    ref = SklearnKMeans(100, init=init, n_init=1, max_iter=100, algorithm="lloyd").fit(points)
    assert abs(ours.inertia_ - ref.inertia_) <= 0.01 * ref.inertia_


def test_cuda_kmeans_is_reproducible_for_a_seed(points):
    a = KMeans(50, n_init=2, seed=3, device="cuda").fit(points)
    b = KMeans(50, n_init=2, seed=3, device="cuda").fit(points)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)


def test_cuda_kmeans_recovers_well_separated_blobs_exactly():
    x, truth = make_blobs(20_000, n_features=16, centers=20, cluster_std=0.05,
                          center_box=(-50, 50), random_state=7)
    labels = KMeans(20, n_init=3, seed=0, device="cuda").fit_predict(x)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_cuda_kmeans_on_a_million_points_in_small_chunks():
    x = torch.randn(1_000_000, 32, device="cuda")
    km = KMeans(64, max_iter=5, seed=0, device="cuda", chunk_size=65_536).fit(x)
    assert np.bincount(km.labels_, minlength=64).min() > 0
    assert km.inertia_ == pytest.approx(-km.score(x), rel=1e-4)


def test_cuda_nearest_neighbors_match_cpu():
    x = torch.randn(3000, 48, generator=torch.Generator().manual_seed(0))
    cpu = nearest_neighbors(x, k=5, exclude_self=True)
    gpu = nearest_neighbors(x.cuda(), k=5, exclude_self=True)
    assert (cpu == gpu).mean() > 0.999   # ties at float32 rounding may swap


def test_cuda_unification_matches_cpu():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(2000, 32))
    items, langs = rng.integers(0, 100, 2000), rng.integers(0, 3, 2000)
    cpu = unification_score(acts, items, langs).score
    gpu = unification_score(torch.from_numpy(acts).cuda(), items, langs).score
    assert gpu == pytest.approx(cpu, abs=1e-9)
