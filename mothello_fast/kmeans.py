"""K-means in torch, with scikit-learn's interface: latent concepts of a layer.

`KMeans` runs Lloyd's algorithm on the GPU when there is one (on the CPU otherwise)
and follows ``sklearn.cluster.KMeans``: the points are centred on their mean first
(float32 distances ``|x|^2 - 2 x.c + |c|^2`` lose the small differences of points far
from the origin, as residual streams are), greedy k-means++ seeding with
``2 + int(ln K)`` local trials, `n_init` runs of which the lowest inertia wins (the
inertia summed exactly, in float64), a tolerance relative to the mean per-feature
variance of the points, sklearn's relocation of empty clusters (each takes one of the
points farthest from their centres, which leaves its old cluster), and labels
consistent with the final centres.

Cluster sums: on the CPU ``index_add_``, which adds the points of a cluster one after
the other in the points' order, whatever the thread count; elsewhere a one-hot matmul
(twice the work of the distances, cheap on a GPU), because CUDA's ``index_add_`` adds
floats with atomics, in an order that changes from run to run.

Memory beyond the float32 copy of the points: Lloyd steps work `chunk_size` points at
a time, with a distance block of ``chunk_size x n_clusters`` floats (and, off the CPU, a
one-hot block as big); k-means++ seeding holds ``(2 + int(ln K)) x n_points`` float32
distances (and a float64 copy while it sums them).

>>> import numpy as np
>>> points = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
>>> km = KMeans(2, seed=0, device="cpu").fit(points)
>>> sorted(km.cluster_centers_.tolist())
[[0.0, 0.5], [10.0, 0.5]]
>>> float(km.inertia_)
1.0
"""
from __future__ import annotations

import math

import numpy as np
import torch
from .progress import progress_bar

from .errors import ConceptError, check_float, check_int, number_array
from .devices import resolve_device

__all__ = ["KMeans"]


class KMeans:
    """K-means clustering (Lloyd) in torch.

    n_clusters: K. init: "k-means++", "random" (K distinct points) or an array
    ``float [K, d]`` of initial centres (then a single run, whatever `n_init`).
    n_init: runs from different seeds; the lowest inertia wins (default 1, as
    scikit-learn's "auto" for k-means++; the CALIGN/COLAP protocol asks for several,
    which `concept_report` uses). max_iter: Lloyd
    iterations per run. tol (finite, >= 0): a run stops when the squared shift of the centres sums
    to at most ``tol * mean(var(points, axis=0))`` (or the labels stop changing).
    seed (int): the same seed on the same device gives the same clustering. device: where
    to compute (default CUDA when present). chunk_size: points per distance block.

    Fitted attributes: ``cluster_centers_`` float32 [K, d], ``labels_`` int64 [n],
    ``inertia_`` (sum of squared distances to the centre of each point's label, summed
    exactly in float64),
    ``n_iter_`` (Lloyd iterations of the winning run).
    """

    def __init__(self, n_clusters: int = 8, *, init="k-means++", n_init: int = 1,
                 max_iter: int = 300, tol: float = 1e-4, seed: int = 0, device=None,
                 chunk_size: int = 65536, progress: bool = False):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.device = device
        self.chunk_size = chunk_size
        self.progress = progress

    # -- parameters (scikit-learn's contract: `sklearn.base.clone` copies a KMeans) --------
    _PARAMS = ("n_clusters", "init", "n_init", "max_iter", "tol", "seed", "device",
               "chunk_size", "progress")

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> KMeans:
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ConceptError(f"{name!r} is not a parameter of KMeans; expected one of "
                                   f"{list(self._PARAMS)}")
            setattr(self, name, value)
        return self

    def check_params(self) -> tuple[int, int, int, float, int]:
        """(n_clusters, n_init, max_iter, tol, seed), checked: a ConceptError names the bad
        one. `concepts.concept_report` calls this before collecting any activation."""
        k = check_int("n_clusters", self.n_clusters, least=1, error=ConceptError)
        n_init = 1 if not isinstance(self.init, str) \
            else check_int("n_init", self.n_init, least=1, error=ConceptError)
        max_iter = check_int("max_iter", self.max_iter, least=1, error=ConceptError)
        check_int("chunk_size", self.chunk_size, least=1, error=ConceptError)
        seed = check_int("seed", self.seed, least=0, error=ConceptError)
        if isinstance(self.init, str) and self.init not in ("k-means++", "random"):
            raise ConceptError(f"init={self.init!r}: expected 'k-means++', 'random' or an "
                               "array of initial centres")
        tol = check_float("tol", self.tol, low=0, error=ConceptError)
        return k, n_init, max_iter, tol, seed

    # -- helpers -------------------------------------------------------------------------
    def _points(self, points, device: torch.device, name: str = "points") -> torch.Tensor:
        """points: float [n, d] (numpy or torch) -> float32 contiguous tensor on `device`."""
        x = points.detach() if isinstance(points, torch.Tensor) else torch.from_numpy(
            np.ascontiguousarray(number_array(name, points, dtype=np.float32,
                                              error=ConceptError)))
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ConceptError(f"{name} of shape {tuple(x.shape)}: expected a non-empty "
                               "float array [n_points, n_features]")
        x = x.to(device=device, dtype=torch.float32).contiguous()
        if not bool(torch.isfinite(x).all()):
            raise ConceptError(f"{name} contain NaN or infinity: expected finite values")
        return x

    def _inertia(self, x: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> float:
        """Exact sum of ||x - c_label||^2 in float64, `chunk_size` points at a time."""
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        centers = centers.double()
        for s in range(0, x.shape[0], self.chunk_size):
            rows = slice(s, s + self.chunk_size)
            diff = x[rows].double().sub_(centers[labels[rows]])           # (b, d), in place
            total += diff.square_().sum()
        return float(total)

    def _assign(self, x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor,
                accumulate: bool = False):
        """Closest centre of every point, chunk by chunk.

        Returns labels int64 [n], squared distances float32 [n] and, with `accumulate`,
        per-cluster sums float32 [K, d] and counts float32 [K] of the points.
        """
        n, k = x.shape[0], centers.shape[0]
        c_sq = (centers * centers).sum(1)
        labels = torch.empty(n, dtype=torch.int64, device=x.device)
        dist = torch.empty(n, dtype=torch.float32, device=x.device)
        sums = torch.zeros_like(centers) if accumulate else None
        counts = torch.zeros(k, dtype=torch.float32, device=x.device) if accumulate else None
        chunk = self.chunk_size
        for s in range(0, n, chunk):
            xb = x[s:s + chunk]                                     # (b, d)
            d = torch.addmm(c_sq, xb, centers.T, alpha=-2.0)        # (b, K): |c|^2 - 2 x.c
            best, idx = d.min(1)
            labels[s:s + chunk] = idx
            dist[s:s + chunk] = best + x_sq[s:s + chunk]
            if accumulate:
                _add_to_clusters(sums, counts, idx, xb)
        return labels, dist.clamp_(min=0.0), sums, counts

    def _kmeans_plusplus(self, x: torch.Tensor, x_sq: torch.Tensor,
                         gen: torch.Generator) -> torch.Tensor:
        """Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's variant): each new centre
        is the best of ``2 + int(ln K)`` candidates drawn with probability ~ D(x)^2.

        Distances stay float32 (their minimum is exact in any precision); the potentials
        and the cumulative sum that the draws search are summed in float64.
        """
        n, k = x.shape[0], self.n_clusters
        trials = 2 + int(math.log(k))
        first = int(torch.randint(n, (1,), generator=gen, device=x.device))
        ids = [first]

        zero = torch.zeros((), device=x.device)

        def sq_dist(rows: torch.Tensor, out: torch.Tensor, cap=None) -> torch.Tensor:
            """float32 [r, n] into `out`: min(max(0, |x_r - x_j|^2), cap_j)."""
            torch.addmm(x_sq[None, :], x[rows], x.T, alpha=-2.0, out=out)
            return torch.clamp(out.add_(x_sq[rows, None]), zero, cap, out=out)

        closest = sq_dist(torch.tensor([first], device=x.device),
                          torch.empty(1, n, device=x.device))[0]        # (n,)
        potential = closest.sum(dtype=torch.float64)
        block = torch.empty(trials, n, device=x.device)                 # (trials, n)
        for _ in range(1, k):
            cum = torch.cumsum(closest, 0, dtype=torch.float64)
            draws = torch.rand(trials, generator=gen, device=x.device, dtype=torch.float64)
            cand = torch.searchsorted(cum, draws * potential).clamp_(max=n - 1)
            cand_closest = sq_dist(cand, block, closest[None, :])         # (trials, n)
            pots = cand_closest.sum(1, dtype=torch.float64)
            best = int(torch.argmin(pots))
            ids.append(int(cand[best]))
            closest, potential = cand_closest[best].clone(), pots[best]
        return x[torch.tensor(ids, device=x.device)].clone()

    def _initial_centers(self, x, x_sq, gen) -> torch.Tensor:
        n, k = x.shape
        if isinstance(self.init, str):
            if self.init == "k-means++":
                return self._kmeans_plusplus(x, x_sq, gen)
            chosen = torch.randperm(n, generator=gen, device=x.device)[:self.n_clusters]
            return x[chosen].clone()
        return self._init_array(x.device, k) - self._mean

    def _init_array(self, device, n_features: int) -> torch.Tensor:
        """The `init` array as float32 [n_clusters, n_features] on `device`, checked."""
        centers = self._points(self.init, device, name="init")
        if centers.shape != (self.n_clusters, n_features):
            raise ConceptError(f"init of shape {tuple(centers.shape)}: expected initial centres "
                               f"[n_clusters={self.n_clusters}, n_features={n_features}]")
        return centers

    def _lloyd(self, x, x_sq, centers, tol_abs, max_iter):
        """One run from `centers`: (centers, labels, n_iter)."""
        labels_prev = None
        for it in range(max_iter):
            labels, dist, sums, counts = self._assign(x, x_sq, centers, accumulate=True)
            if labels_prev is not None and torch.equal(labels, labels_prev):
                return centers, labels, it + 1  # centres are already these means
            empty = counts == 0
            if bool(empty.any()):
                # as sklearn: the farthest points move to the empty clusters, leaving their own
                far = torch.topk(dist, int(empty.sum())).indices
                _add_to_clusters(sums, counts, labels[far], x[far], sign=-1.0)
                empty_ids = empty.nonzero()[:, 0]
                sums[empty_ids], counts[empty_ids] = x[far], 1.0
            new = sums / counts.clamp(min=1.0)[:, None]
            shift = float(((new - centers) ** 2).sum())
            centers, labels_prev = new, labels
            if shift <= tol_abs:
                break
        labels, _, _, _ = self._assign(x, x_sq, centers)
        return centers, labels, it + 1

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    # -- estimator -----------------------------------------------------------------------
    def fit(self, points, y=None) -> KMeans:
        """points: float [n_points, n_features] (numpy or torch, any device)."""
        k, n_init, max_iter, tol, seed = self.check_params()
        device = self._device()
        x = self._points(points, device)
        if k > x.shape[0]:
            raise ConceptError(f"n_clusters={k}: expected at most n_points={x.shape[0]}")
        if not isinstance(self.init, str):
            self._init_array(device, x.shape[1])           # checked before any work
        self._mean = x.mean(0, dtype=torch.float64).float()    # (d,)
        x = x - self._mean
        x_sq = (x * x).sum(1)
        tol_abs = tol * float(x.var(0, unbiased=False).double().mean())
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        best = None
        for _ in progress_bar(self.progress, range(n_init), desc="k-means", leave=False):
            centers = self._initial_centers(x, x_sq, gen)
            centers, labels, n_iter = self._lloyd(x, x_sq, centers, tol_abs, max_iter)
            inertia = self._inertia(x, centers, labels)
            if best is None or inertia < best[0]:
                best = (inertia, centers, labels, n_iter)
        self.inertia_, centers, labels, self.n_iter_ = best
        self.cluster_centers_ = (centers + self._mean).cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise ConceptError("this KMeans is not fitted: call fit(points) first")

    def _predict(self, points):
        self._check_fitted()
        device = self._device()
        x = self._points(points, device)
        if x.shape[1] != self.cluster_centers_.shape[1]:
            raise ConceptError(f"points with {x.shape[1]} features: expected "
                               f"{self.cluster_centers_.shape[1]} as in fit")
        # any origin gives the same closest centres; the fit's mean keeps the float32
        # distance expansion precise for points far from zero (centres set by hand, without
        # a fit of their features: their own mean)
        centers = torch.as_tensor(self.cluster_centers_, device=device).double()
        mean = getattr(self, "_mean", None)
        mean = centers.mean(0).float() if mean is None or mean.shape != centers.shape[1:] \
            else mean.to(device)
        x = x - mean
        centers = (centers - mean.double()).float()
        labels, _, _, _ = self._assign(x, (x * x).sum(1), centers)
        return labels.cpu().numpy(), self._inertia(x, centers, labels)

    def predict(self, points) -> np.ndarray:
        """Closest centre: int64 [n_points]. points: float [n_points, n_features]."""
        return self._predict(points)[0]

    def fit_predict(self, points, y=None) -> np.ndarray:
        """`fit` then ``labels_``: int64 [n_points]."""
        return self.fit(points).labels_

    def score(self, points, y=None) -> float:
        """Minus the inertia of `points` (float [n, d]) against the fitted centres."""
        return -self._predict(points)[1]

    def __repr__(self) -> str:
        return f"KMeans(n_clusters={self.n_clusters}, n_init={self.n_init}, seed={self.seed})"


def _add_to_clusters(sums: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                     points: torch.Tensor, sign: float = 1.0,
                     one_hot: bool | None = None) -> None:
    """Add (sign +1) or take away (-1) points float32 [b, d] to the sums float32 [K, d] and
    counts float32 [K] of their clusters (labels int64 [b]), in place, deterministically.

    The CPU's ``index_add_`` adds each cluster's points one after the other in their order,
    whatever the thread count, and reads the points once; CUDA's adds with float atomics,
    in an order that changes from run to run, so there (`one_hot` None: off the CPU) a
    one-hot matmul does it.
    """
    if one_hot is None:
        one_hot = points.device.type != "cpu"
    if not one_hot:
        # int32 labels take index_add_'s plain loop (no threads); int64 ones, with alpha 1,
        # go to scatter_add_'s threaded kernel: the same sums, but 10x slower on a busy
        # 2-core machine, where each parallel region waits for a core
        sums.index_add_(0, labels.int(), points, alpha=sign)
        counts.add_(torch.bincount(labels, minlength=len(counts)), alpha=sign)
        return
    onehot = torch.zeros(len(labels), len(counts), device=points.device)
    onehot.scatter_(1, labels[:, None], 1.0)                          # (b, K)
    sums.addmm_(onehot.T, points, alpha=sign)
    counts.add_(onehot.sum(0), alpha=sign)
