"""Geometry of token embeddings across languages, after Wen-Yi & Mimno (2023).

Every analysis first L2-normalises the rows of the embedding matrices
(`normalize_rows`), so "nearest" means highest cosine similarity.

- `language_identification`: is a token's language linearly decodable from its
  embedding? One-vs-rest logistic regression per language, each balanced by
  undersampling the larger side, k-fold cross-validated accuracy (scikit-learn).
- `cross_lingual_neighbors`: mean number of distinct languages among each token's
  k nearest neighbours (the token itself excluded, or counted as the authors' code does).
- `translation_retrieval`: accuracy@k of finding a token's translation (same item,
  e.g. the same square) among its k nearest tokens of another language.
- `canonical_angles`: cosines of the principal angles between the column spaces of
  two embedding matrices over the same rows (orthonormal bases Q_A, Q_B of their
  column spaces, then the singular values of Q_A^T Q_B), with the spectrum of
  independent Gaussian matrices as a baseline. The paper's thin QR is replaced by a
  rank-revealing SVD basis, so rank-deficient matrices give min(rank) cosines.
- `row_paired_canonical_angles`: the paper's row-paired comparison made informative when
  the dimension exceeds the rows (60 squares, d_model 512): each matrix reduced to its
  top principal components first.
- `neighbor_overlap`: mean fraction of shared k nearest neighbours of each row in
  two embedding matrices over the same rows (e.g. two models).

>>> import numpy as np
>>> a = np.array([[1.0, 0.0], [0.0, 1.0]])     # items 0, 1 in language A
>>> b = np.array([[0.1, 1.0], [1.0, 0.1]])     # items 1, 0 in language B
>>> translation_retrieval(a, b, [0, 1], [1, 0])
1.0
>>> canonical_angles(a, b, baseline=False).cosines.round(6).tolist()
[1.0, 1.0]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConceptError, check_int, number_array

__all__ = ["normalize_rows", "nearest_neighbors", "LanguageIdentification",
           "language_identification", "cross_lingual_neighbors", "translation_retrieval",
           "CanonicalAngles", "canonical_angles", "row_paired_canonical_angles",
           "random_canonical_cosines", "neighbor_overlap"]


def _matrix(name: str, values, dtype=torch.float32) -> torch.Tensor:
    x = values.detach() if isinstance(values, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(number_array(name, values, error=ConceptError)))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ConceptError(f"{name} of shape {tuple(x.shape)}: expected a non-empty float "
                           "array [n_rows, n_features]")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(1).nonzero()[0])
        raise ConceptError(f"{name} row {bad} contains NaN or infinity: expected finite values")
    return x.to(dtype)


def _ids(name: str, values, n: int) -> np.ndarray:
    ids = np.asarray(values.cpu() if hasattr(values, "cpu") else values)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ConceptError(f"{name} of dtype {ids.dtype} and shape {ids.shape}: expected "
                           f"integers [{n}]")
    return ids.astype(np.int64)


def normalize_rows(embeddings) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a zero row stays zero). embeddings: float [n, d];
    returns float32 [n, d] on the input's device."""
    return _unit(_matrix("embeddings", embeddings))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


def nearest_neighbors(queries, candidates=None, *, k: int, exclude_self: bool = False,
                      chunk_size: int = 4096) -> np.ndarray:
    """Indices of the `k` candidates of highest cosine similarity to each query.

    queries: float [n, d]; candidates: float [m, d] (default: the queries; only then may
    `exclude_self` leave each row out of its own list). Returns int64 [n, k], best
    first. Computed `chunk_size` queries at a time.
    """
    if exclude_self and candidates is not None:
        raise ConceptError("exclude_self=True with candidates given: expected exclude_self "
                           "only when the queries are their own candidates (candidates=None)")
    q = normalize_rows(queries)
    c = q if candidates is None else normalize_rows(candidates).to(q.device)
    if c.shape[1] != q.shape[1]:
        raise ConceptError(f"candidates with {c.shape[1]} features: expected {q.shape[1]}")
    available = c.shape[0] - (1 if exclude_self else 0)
    k = check_int("k", k, least=1, most=available, error=ConceptError)
    chunk_size = check_int("chunk_size", chunk_size, least=1, error=ConceptError)
    out = []
    for s in range(0, q.shape[0], chunk_size):
        sim = q[s:s + chunk_size] @ c.T                              # (b, m)
        if exclude_self:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + s] = -torch.inf
        out.append(torch.topk(sim, k, dim=1).indices)
    return torch.cat(out).cpu().numpy().astype(np.int64)


@dataclass
class LanguageIdentification:
    """Cross-validated accuracy of one-vs-rest language classifiers: `accuracy` is the
    mean over languages of `per_language` (float64 [n_languages], in `languages` order)."""
    accuracy: float
    per_language: np.ndarray
    languages: np.ndarray

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_language": self.per_language.tolist(),
                "languages": self.languages.tolist()}


def language_identification(embeddings, languages, *, n_folds: int = 10, C: float = 1.0,
                            seed: int = 0, max_iter: int = 1000) -> LanguageIdentification:
    """Is a token's language linearly decodable from its normalised embedding?

    embeddings: float [n_tokens, d]; languages: int [n_tokens]. For each language l:
    the tokens of l against those of the others, the larger side undersampled (seeded) to
    the size of the smaller, L2 logistic regression (`C`), `n_folds`-fold stratified
    cross-validated accuracy.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n_folds = check_int("n_folds", n_folds, least=2, error=ConceptError)
    x = normalize_rows(embeddings).cpu().double().numpy()
    langs = _ids("languages", languages, len(x))
    present = np.unique(langs)
    if len(present) < 2:
        raise ConceptError(f"languages has {len(present)} distinct value(s): expected at least 2")
    rng = np.random.default_rng(seed)
    scores = []
    for lang in present:
        pos, neg = np.nonzero(langs == lang)[0], np.nonzero(langs != lang)[0]
        n = min(len(pos), len(neg))
        if n < n_folds:
            raise ConceptError(f"language {lang} leaves {n} tokens per class after balancing: "
                               f"expected at least n_folds={n_folds}")
        rows = np.concatenate([rng.choice(pos, n, replace=False),
                               rng.choice(neg, n, replace=False)])
        y = np.concatenate([np.ones(n), np.zeros(n)])
        folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        clf = LogisticRegression(C=C, max_iter=max_iter)
        scores.append(cross_val_score(clf, x[rows], y, cv=folds).mean())
    per = np.asarray(scores, dtype=np.float64)
    return LanguageIdentification(float(per.mean()), per, present)


def cross_lingual_neighbors(embeddings, languages, *, k: int = 50,
                            include_self: bool = False) -> float:
    """Mean number of distinct languages among each token's `k` nearest neighbours (cosine).
    embeddings: float [n, d]; languages: int [n]. include_self: count the token itself
    among its k (so its own language always counts), as the authors' code does
    (``topk(100)`` with the token first, ranks up to 50 kept); by default it is excluded."""
    x = _matrix("embeddings", embeddings)
    langs = _ids("languages", languages, x.shape[0])
    if not isinstance(include_self, (bool, np.bool_)):
        raise ConceptError(f"include_self={include_self!r}: expected True or False")
    neighbours = langs[nearest_neighbors(x, k=k, exclude_self=not include_self)]   # (n, k)
    ordered = np.sort(neighbours, axis=1)
    distinct = 1 + (np.diff(ordered, axis=1) != 0).sum(1)
    return float(distinct.mean())


def translation_retrieval(source, target, source_items, target_items, *, k: int = 1) -> float:
    """Accuracy@k: the fraction of source rows whose `k` nearest target rows (cosine) include
    one of the same item.

    source: float [n, d] (e.g. the tokens of language A); target: float [m, d] (those of
    language B); source_items: int [n], target_items: int [m] (e.g. the square of each
    token). Source rows whose item no target row has are left out.
    """
    s, t = _matrix("source", source), _matrix("target", target)
    s_items = _ids("source_items", source_items, s.shape[0])
    t_items = _ids("target_items", target_items, t.shape[0])
    has = np.isin(s_items, t_items)
    if not has.any():
        raise ConceptError("no source item occurs among the target items: nothing to retrieve")
    found = t_items[nearest_neighbors(s[torch.from_numpy(has)], t, k=k)]   # (n', k)
    return float((found == s_items[has][:, None]).any(1).mean())


@dataclass
class CanonicalAngles:
    """Cosines of the principal angles, descending: `cosines` float64
    [min(rank(a), rank(b))]; `baseline` the same for independent Gaussian matrices
    [n, rank(a)] and [n, rank(b)] (mean over trials), or None."""
    cosines: np.ndarray
    baseline: np.ndarray | None

    @property
    def mean(self) -> float:
        return float(self.cosines.mean())

    def to_dict(self) -> dict:
        return {"mean": self.mean, "cosines": self.cosines.tolist(),
                "baseline_mean": None if self.baseline is None else float(self.baseline.mean()),
                "baseline": None if self.baseline is None else self.baseline.tolist()}


def _eps(values) -> float:
    """Machine epsilon of the input's float dtype (float64's for anything else)."""
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return float(torch.finfo(dtype).eps)
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return float(np.finfo(dtype).eps)
    return float(torch.finfo(torch.float64).eps)


_EPS32 = float(torch.finfo(torch.float32).eps)


def _orthonormal_basis(a: torch.Tensor, eps: float = float(torch.finfo(torch.float64).eps)
                       ) -> torch.Tensor:
    """Orthonormal basis float64 [n, rank] of the column space of a (float [n, d]): the
    left singular vectors whose singular value exceeds a cutoff for rounding noise, eps
    that of the input's precision. For 32- and 64-bit inputs the cutoff is
    scipy.linalg.orth's ``max(n, d) * eps * s_max``; 16-bit inputs (eps up to 8e-3) would
    lose real directions to it, so theirs is the bound on what rounding each entry to
    relative precision eps can add, ``||E||_2 <= eps * ||a||_F``, twice over. A thin QR
    would keep d columns, and for a rank-deficient `a` the extra ones are rounding noise
    that would enter the angles."""
    u, s, _ = torch.linalg.svd(a.double(), full_matrices=False)
    if not len(s):
        return u
    if eps <= _EPS32:
        cutoff = max(a.shape) * eps * float(s[0])
    else:
        cutoff = 2 * eps * float(s.square().sum().sqrt())
    return u[:, :int((s > cutoff).sum())]


def _principal_cosines(qa: torch.Tensor, qb: torch.Tensor) -> np.ndarray:
    """qa: float64 [n, r_a], qb: float64 [n, r_b], orthonormal columns -> float64
    [min(r_a, r_b)], descending."""
    return torch.linalg.svdvals(qa.T @ qb).clamp(max=1.0).cpu().numpy()


def random_canonical_cosines(n_rows: int, d_a: int, d_b: int, *, seed: int = 0,
                             n_trials: int = 5) -> np.ndarray:
    """Mean principal-angle cosines (float64 [min(n_rows, d_a, d_b)], descending) of two
    independent standard Gaussian matrices [n_rows, d_a] and [n_rows, d_b]."""
    n_rows, d_a, d_b, n_trials = (check_int(name, value, least=1, error=ConceptError)
                                  for name, value in (("n_rows", n_rows), ("d_a", d_a),
                                                      ("d_b", d_b), ("n_trials", n_trials)))
    gen = torch.Generator().manual_seed(check_int("seed", seed, least=0, most=2**63 - 1,
                                                  error=ConceptError))
    runs = [_principal_cosines(
                _orthonormal_basis(torch.randn(n_rows, d_a, generator=gen, dtype=torch.float64)),
                _orthonormal_basis(torch.randn(n_rows, d_b, generator=gen, dtype=torch.float64)))
            for _ in range(n_trials)]
    return np.mean(runs, axis=0)


def canonical_angles(a, b, *, normalize: bool = True, baseline: bool = True, seed: int = 0,
                     n_trials: int = 5) -> CanonicalAngles:
    """Principal angles between the column spaces of `a` and `b` (rows L2-normalised first).

    a: float [n, d_a], b: float [n, d_b], the same n rows (e.g. the tokens of the same
    squares in two languages, or the same tokens in two models). Each column space gets
    a rank-revealing orthonormal basis (as ``scipy.linalg.subspace_angles``), so there are
    min(rank(a), rank(b)) cosines, and the random baseline uses Gaussian matrices of those
    ranks; the rank cutoff uses the epsilon of the inputs' dtype (float32 inputs carry
    float32 rounding, bfloat16 inputs bfloat16's). With n <= d the column spaces span
    everything and every cosine is 1; the angles say most when n >> d.
    """
    x, y = _matrix("a", a, torch.float64), _matrix("b", b, torch.float64)
    if x.shape[0] != y.shape[0]:
        raise ConceptError(f"a has {x.shape[0]} rows and b {y.shape[0]}: expected the same rows")
    if normalize:
        x, y = _unit(x), _unit(y)
    qa, qb = _orthonormal_basis(x, _eps(a)), _orthonormal_basis(y, _eps(b))
    for name, q in (("a", qa), ("b", qb)):
        if q.shape[1] == 0:
            raise ConceptError(f"{name} is all zeros: expected a matrix of rank at least 1")
    base = random_canonical_cosines(x.shape[0], qa.shape[1], qb.shape[1], seed=seed,
                                    n_trials=n_trials) if baseline else None
    return CanonicalAngles(_principal_cosines(qa, qb), base)


def row_paired_canonical_angles(a, b, *, n_components: int | None = None,
                                baseline: bool = True, seed: int = 0,
                                n_trials: int = 5) -> CanonicalAngles:
    """The paper's comparison of two embedding matrices over the same rows, informative
    when the dimension is not below the number of rows.

    a: float [n, d_a], b: float [n, d_b]; row i of each is the same item (the same square
    in two languages). Rows are L2-normalised and each matrix is reduced to its top
    `n_components` principal components (default n // 4), [n, k]; then `canonical_angles`
    of the two [n, k] matrices: the principal angles between the row-paired subspaces.
    Without the reduction, n <= d makes both column spaces all of R^n and every cosine 1.
    Shuffling the rows of one matrix lowers the cosines to the random baseline's (that is
    what "the same item sits in the same place" means); `canonical_angles(a.T, b.T)`
    compares the subspaces of the model space instead, which a shuffle does not change.
    """
    x, y = _matrix("a", a, torch.float64), _matrix("b", b, torch.float64)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ConceptError(f"a has {n} rows and b {y.shape[0]}: expected the same rows")
    if n < 2:
        raise ConceptError(f"a and b have {n} row(s): expected at least 2 paired rows")
    k = max(1, n // 4) if n_components is None else check_int(
        "n_components", n_components, least=1, most=min(n - 1, x.shape[1], y.shape[1]),
        error=ConceptError)

    def top_components(m: torch.Tensor) -> torch.Tensor:
        m = _unit(m)
        u, s, _ = torch.linalg.svd(m - m.mean(0), full_matrices=False)
        return u[:, :k] * s[:k]   # [n, k]: the rows in the first k principal directions

    return canonical_angles(top_components(x), top_components(y), normalize=False,
                            baseline=baseline, seed=seed, n_trials=n_trials)


def neighbor_overlap(a, b, *, k: int = 10) -> float:
    """Mean over rows of |kNN_a(i) & kNN_b(i)| / k, cosine, each row excluded from its own
    list. a: float [n, d_a], b: float [n, d_b] over the same rows (e.g. two models)."""
    x, y = _matrix("a", a), _matrix("b", b)
    if x.shape[0] != y.shape[0]:
        raise ConceptError(f"a has {x.shape[0]} rows and b {y.shape[0]}: expected the same rows")
    na = nearest_neighbors(x, k=k, exclude_self=True)
    nb = nearest_neighbors(y, k=k, exclude_self=True)
    shared = (na[:, :, None] == nb[:, None, :]).any(2).sum(1)
    return float((shared / k).mean())
