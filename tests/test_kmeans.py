"""KMeans (torch) against scikit-learn and numpy oracles."""
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from mothello_fast.errors import ConceptError
from mothello_fast.kmeans import KMeans, _add_to_clusters


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3000, 16)).astype(np.float32)


def _sq_dists(x, centers):
    return ((x[:, None, :].astype(np.float64) - centers[None].astype(np.float64)) ** 2).sum(-1)


def test_reaches_sklearn_inertia_from_the_same_initial_centres(points):
    init = points[np.random.default_rng(1).choice(len(points), 20, replace=False)]
    ours = KMeans(20, init=init, max_iter=100, tol=1e-4, device="cpu").fit(points)
    ref = SklearnKMeans(20, init=init, n_init=1, max_iter=100, tol=1e-4,
                        algorithm="lloyd").fit(points)
    assert abs(ours.inertia_ - ref.inertia_) <= 0.01 * ref.inertia_


def test_iteration_count_matches_sklearn_from_the_same_initial_centres():
    x, _ = make_blobs(3000, n_features=16, centers=30, cluster_std=2.0, random_state=1)
    init = x[np.random.default_rng(2).choice(len(x), 25, replace=False)]
    ours = KMeans(25, init=init, max_iter=300, device="cpu").fit(x)
    ref = SklearnKMeans(25, init=init, n_init=1, max_iter=300, algorithm="lloyd").fit(x)
    assert ours.n_iter_ == ref.n_iter_


def test_kmeans_plusplus_reaches_sklearn_inertia_on_blobs():
    x, _ = make_blobs(4000, n_features=8, centers=12, cluster_std=1.0, random_state=3)
    ours = KMeans(12, n_init=4, seed=0, device="cpu").fit(x)
    ref = SklearnKMeans(12, n_init=4, random_state=0).fit(x)
    assert abs(ours.inertia_ - ref.inertia_) <= 0.01 * ref.inertia_


def test_recovers_well_separated_blobs_exactly():
    x, truth = make_blobs(2000, n_features=5, centers=6, cluster_std=0.05,
                          center_box=(-50, 50), random_state=7)
    labels = KMeans(6, n_init=3, seed=4, device="cpu").fit_predict(x)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_same_seed_gives_the_same_clustering(points):
    a = KMeans(10, n_init=2, max_iter=30, seed=5, device="cpu").fit(points)
    b = KMeans(10, n_init=2, max_iter=30, seed=5, device="cpu").fit(points)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)


def test_inertia_is_the_sum_of_squared_distances_to_the_closest_centre(points):
    km = KMeans(8, max_iter=30, seed=0, device="cpu").fit(points)
    d = _sq_dists(points, km.cluster_centers_)
    assert km.inertia_ == pytest.approx(d.min(1).sum(), rel=1e-4)


def test_predict_gives_the_closest_centre(points):
    km = KMeans(8, seed=0, device="cpu").fit(points[:2000])
    new = points[2000:]
    d = _sq_dists(new, km.cluster_centers_)
    predicted = km.predict(new)
    assert np.allclose(d[np.arange(len(new)), predicted], d.min(1), rtol=1e-5, atol=1e-4)


def test_predict_and_score_use_the_cluster_centers_attribute(points):
    model = KMeans(3, seed=0, device="cpu").fit(points)
    model.cluster_centers_ = points[[5, 50, 150]].astype(np.float32)   # set by hand
    d2 = ((points[:, None, :] - model.cluster_centers_[None]) ** 2).sum(-1)
    assert np.array_equal(model.predict(points), d2.argmin(1))
    assert model.score(points) == pytest.approx(-d2.min(1).sum(), rel=1e-5)


def test_fitted_centres_are_the_means_of_their_clusters():
    x, _ = make_blobs(2000, n_features=8, centers=10, cluster_std=3.0, random_state=5)
    km = KMeans(6, seed=2, max_iter=500, tol=0.0, device="cpu").fit(x)
    means = np.stack([x[km.labels_ == c].mean(0) for c in range(6)])
    assert np.allclose(km.cluster_centers_, means, atol=1e-4)


def test_chunked_distances_give_the_same_result(points):
    whole = KMeans(7, max_iter=20, seed=3, device="cpu", chunk_size=100_000).fit(points)
    chunked = KMeans(7, max_iter=20, seed=3, device="cpu", chunk_size=97).fit(points)
    assert np.array_equal(whole.labels_, chunked.labels_)
    assert chunked.inertia_ == pytest.approx(whole.inertia_, rel=1e-5)


def test_an_empty_cluster_is_relocated(points):
    init = points[:5].copy()
    init[4] = 1e4  # no point is closest to this centre at first
    km = KMeans(5, init=init, device="cpu").fit(points)
    assert np.bincount(km.labels_, minlength=5).min() > 0


def test_accepts_torch_tensors_like_numpy_arrays(points):
    a = KMeans(4, seed=1, device="cpu").fit(points)
    b = KMeans(4, seed=1, device="cpu").fit(torch.from_numpy(points))
    assert np.array_equal(a.labels_, b.labels_)


def test_score_is_minus_the_inertia_of_the_points(points):
    km = KMeans(5, seed=1, device="cpu").fit(points)
    assert km.score(points) == pytest.approx(-km.inertia_, rel=1e-5)


def test_more_clusters_than_points_is_refused():
    with pytest.raises(ConceptError, match="n_clusters=5"):
        KMeans(5, device="cpu").fit(np.zeros((3, 2)))


def test_initial_centres_of_the_wrong_shape_are_refused(points):
    with pytest.raises(ConceptError, match="initial centres"):
        KMeans(3, init=points[:2], device="cpu").fit(points)


def test_points_far_from_the_origin_give_the_exact_inertia_and_labels():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2000, 8)) + 3000).astype(np.float32)
    init = x[rng.choice(len(x), 10, replace=False)]
    ours = KMeans(10, init=init, max_iter=100, device="cpu").fit(x)
    ref = SklearnKMeans(10, init=init, n_init=1, max_iter=100, algorithm="lloyd").fit(x)
    d = _sq_dists(x, ours.cluster_centers_)
    assert ours.inertia_ == pytest.approx(d[np.arange(len(x)), ours.labels_].sum(), rel=1e-4)
    assert np.allclose(d[np.arange(len(x)), ours.labels_], d.min(1), rtol=1e-4, atol=1e-2)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-3)


def test_empty_clusters_are_relocated_as_sklearn_does():
    # Two identical initial centres far away: both empty at first; each takes one of the
    # farthest points, which leaves its own cluster.
    x = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
    init = np.concatenate([x[:6], np.full((2, 4), 50, np.float32)])
    ours = KMeans(8, init=init, max_iter=300, device="cpu").fit(x)
    ref = SklearnKMeans(8, init=init, n_init=1, max_iter=300, algorithm="lloyd").fit(x)
    assert np.array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


def test_fits_a_tensor_that_requires_grad(points):
    tensor = torch.from_numpy(points[:200]).requires_grad_(True)
    a = KMeans(3, seed=0, device="cpu").fit(tensor)
    b = KMeans(3, seed=0, device="cpu").fit(points[:200])
    assert np.array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("bad, message", [(dict(seed=None), "seed=None"), (dict(tol=-1), "tol=-1"),
                                          (dict(tol=float("nan")), "tol=nan")])
def test_bad_parameters_are_refused(points, bad, message):
    with pytest.raises(ConceptError, match=message):
        KMeans(3, device="cpu", **bad).fit(points[:50])


def test_initial_centres_with_nan_are_named_as_init(points):
    init = points[:3].copy()
    init[1, 0] = np.nan
    with pytest.raises(ConceptError, match="init contain NaN"):
        KMeans(3, init=init, device="cpu").fit(points)


def test_predict_with_centres_set_by_hand_on_an_unfitted_model(points):
    model = KMeans(3, device="cpu")
    model.cluster_centers_ = points[[5, 50, 150]].astype(np.float32)
    d2 = ((points[:, None, :] - model.cluster_centers_[None]) ** 2).sum(-1)
    assert np.array_equal(model.predict(points), d2.argmin(1))


def test_predict_with_centres_of_other_features_set_by_hand_after_a_fit(points):
    model = KMeans(3, seed=0, device="cpu").fit(points)
    model.cluster_centers_ = np.eye(4, dtype=np.float32)[:2]
    new = points[:100, :4]
    d2 = ((new[:, None, :] - model.cluster_centers_[None]) ** 2).sum(-1)
    assert np.array_equal(model.predict(new), d2.argmin(1))


def _sequential_cluster_sums(points, labels, k, sign=1.0):
    """Oracle: float32 sums and counts, adding the points one by one in their order."""
    sums, counts = torch.zeros(k, points.shape[1]), torch.zeros(k)
    for point, label in zip(points, labels.tolist()):
        sums[label] += sign * point
        counts[label] += sign
    return sums, counts


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_cluster_sums_add_each_clusters_points_in_order_whatever_the_threads(threads):
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(5000, 64, generator=gen) * 100
    labels = torch.randint(7, (5000,), generator=gen)
    sums, counts = torch.zeros(7, 64), torch.zeros(7)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _add_to_clusters(sums, counts, labels, points)
    finally:
        torch.set_num_threads(before)
    expected_sums, expected_counts = _sequential_cluster_sums(points, labels, 7)
    assert torch.equal(sums, expected_sums)
    assert torch.equal(counts, expected_counts)


def test_points_taken_away_from_their_clusters_are_subtracted_in_order():
    gen = torch.Generator().manual_seed(1)
    points, labels = torch.randn(40, 8, generator=gen), torch.tensor([2, 0, 2, 2] * 10)
    sums, counts = torch.zeros(3, 8), torch.zeros(3)
    _add_to_clusters(sums, counts, labels, points, sign=-1.0)
    expected_sums, expected_counts = _sequential_cluster_sums(points, labels, 3, sign=-1.0)
    assert torch.equal(sums, expected_sums)
    assert torch.equal(counts, expected_counts)


def test_one_hot_cluster_sums_of_the_cuda_path_agree_with_the_cpu_path():
    gen = torch.Generator().manual_seed(2)
    points, labels = torch.randn(3000, 32, generator=gen), torch.randint(9, (3000,), generator=gen)
    by_index = torch.zeros(9, 32), torch.zeros(9)
    by_matmul = torch.zeros(9, 32), torch.zeros(9)
    _add_to_clusters(*by_index, labels, points)
    _add_to_clusters(*by_matmul, labels, points, one_hot=True)
    assert torch.equal(by_matmul[1], by_index[1])
    assert torch.allclose(by_matmul[0], by_index[0], rtol=1e-5, atol=1e-4)


def _float64_kmeans_plusplus(x, x_sq, k, gen):
    """Oracle: the greedy k-means++ seeding with every distance block in float64."""
    n, trials = x.shape[0], 2 + int(np.log(k))

    def sq_dist(rows):
        d = torch.addmm(x_sq[None, :], x[rows], x.T, alpha=-2.0) + x_sq[rows, None]
        return d.clamp_(min=0.0).double()

    ids = [int(torch.randint(n, (1,), generator=gen))]
    closest = sq_dist(torch.tensor(ids))[0]
    potential = closest.sum()
    for _ in range(1, k):
        draws = torch.rand(trials, generator=gen, dtype=torch.float64)
        cand = torch.searchsorted(torch.cumsum(closest, 0), draws * potential).clamp_(max=n - 1)
        cand_closest = torch.minimum(closest[None, :], sq_dist(cand))
        pots = cand_closest.sum(1)
        best = int(torch.argmin(pots))
        ids.append(int(cand[best]))
        closest, potential = cand_closest[best], pots[best]
    return ids


@pytest.mark.parametrize("seed", range(4))
def test_kmeans_plusplus_picks_the_same_centres_as_float64_distances(seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(3000, 24)).astype(np.float32) * 10 ** seed)
    x[:500] = x[0]                                  # duplicate points: zero distances, ties
    x_sq = (x * x).sum(1)
    ours = KMeans(30, seed=seed, device="cpu")._kmeans_plusplus(
        x, x_sq, torch.Generator().manual_seed(seed))
    expected = _float64_kmeans_plusplus(x, x_sq, 30, torch.Generator().manual_seed(seed))
    assert torch.equal(ours, x[expected])


@pytest.mark.parametrize("seed", range(5))
def test_labels_and_iterations_match_sklearn_from_the_same_initial_centres(seed):
    x, _ = make_blobs(3000, n_features=16, centers=30, cluster_std=2.0, random_state=10 + seed)
    init = x[np.random.default_rng(seed).choice(len(x), 25, replace=False)]
    ours = KMeans(25, init=init, max_iter=300, device="cpu").fit(x)
    ref = SklearnKMeans(25, init=init, n_init=1, max_iter=300, algorithm="lloyd").fit(x)
    assert np.array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_empty_cluster_relocation_matches_sklearn_on_several_seeds(seed):
    x = np.random.default_rng(50 + seed).normal(size=(500, 4)).astype(np.float32)
    init = np.concatenate([x[:5], np.full((3, 4), 50, np.float32)])    # three empty at first
    ours = KMeans(8, init=init, max_iter=300, device="cpu").fit(x)
    ref = SklearnKMeans(8, init=init, n_init=1, max_iter=300, algorithm="lloyd").fit(x)
    assert np.array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
