"""Token-embedding geometry against constructed embeddings, numpy and scipy oracles."""
import numpy as np
import pytest
import scipy.linalg
import torch

from mothello_fast.errors import ConceptError
from mothello_fast.geometry import (canonical_angles, cross_lingual_neighbors,
                                    language_identification, nearest_neighbors,
                                    neighbor_overlap, normalize_rows, random_canonical_cosines,
                                    translation_retrieval)

SQUARES = np.arange(60)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_normalize_rows_gives_unit_rows_in_the_same_directions():
    x = np.random.default_rng(0).normal(size=(10, 4))
    assert np.allclose(normalize_rows(x).numpy(), unit(x), atol=1e-6)


def test_nearest_neighbors_match_a_brute_force_cosine_ranking():
    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(30, 8)), rng.normal(size=(50, 8))
    expected = np.argsort(-(unit(q) @ unit(c).T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(nearest_neighbors(q, c, k=5, chunk_size=7), expected)


def test_nearest_neighbors_exclude_self():
    x = np.random.default_rng(2).normal(size=(40, 6))
    sim = unit(x) @ unit(x).T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :3]
    assert np.array_equal(nearest_neighbors(x, k=3, exclude_self=True, chunk_size=9), expected)


def test_identical_embeddings_give_retrieval_one():
    e = np.random.default_rng(3).normal(size=(60, 16))
    assert translation_retrieval(e, e.copy(), SQUARES, SQUARES) == 1.0


def test_independent_embeddings_give_chance_retrieval():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(60, 64)), rng.normal(size=(60, 64))
    # Chance at k=5 is 5/60; allow sampling noise.
    assert translation_retrieval(a, b, SQUARES, SQUARES, k=5) < 0.25


def test_retrieval_at_k_counts_the_translation_among_the_k_nearest():
    # Source 0 = [1, 0]; targets by cosine: item 7 ([1, .1]), then item 0 ([1, .5]).
    src = np.array([[1.0, 0.0]])
    tgt = np.array([[1.0, 0.1], [1.0, 0.5], [0.0, 1.0]])
    assert translation_retrieval(src, tgt, [0], [7, 0, 3], k=1) == 0.0
    assert translation_retrieval(src, tgt, [0], [7, 0, 3], k=2) == 1.0


def test_identical_embeddings_give_canonical_cosines_one():
    e = np.random.default_rng(5).normal(size=(60, 12))
    result = canonical_angles(e, e.copy(), baseline=False)
    assert np.allclose(result.cosines, 1.0, atol=1e-10)


def test_canonical_cosines_match_scipy_subspace_angles():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(100, 10)), rng.normal(size=(100, 7))
    expected = np.sort(np.cos(scipy.linalg.subspace_angles(unit(a), unit(b))))[::-1]
    got = canonical_angles(a, b, baseline=False).cosines
    assert np.allclose(got, expected, atol=1e-10)


def test_independent_random_embeddings_give_the_random_baseline():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(400, 20)), rng.normal(size=(400, 20))
    result = canonical_angles(a, b, seed=1, n_trials=10)
    assert result.mean == pytest.approx(result.baseline.mean(), abs=0.02)
    assert result.mean < 0.3


def test_random_baseline_matches_scipy_on_gaussian_matrices():
    gen = np.random.default_rng(8)
    runs = [np.cos(scipy.linalg.subspace_angles(gen.normal(size=(300, 10)),
                                                gen.normal(size=(300, 10)))).mean()
            for _ in range(20)]
    assert random_canonical_cosines(300, 10, 10, n_trials=20).mean() == pytest.approx(
        np.mean(runs), abs=0.01)


def _separated(n_per_language=60, n_languages=3, d=32, spread=0.3, seed=9):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_languages, d))
    langs = np.repeat(np.arange(n_languages), n_per_language)
    return centres[langs] + spread * rng.normal(size=(len(langs), d)), langs


def test_language_separated_embeddings_give_near_perfect_language_identification():
    e, langs = _separated()
    result = language_identification(e, langs, n_folds=5)
    assert result.accuracy > 0.98
    assert result.languages.tolist() == [0, 1, 2]


def test_random_embeddings_give_chance_language_identification():
    # each language against an equal sample of the others: chance is 1/2 (over 40 seeds of
    # random embeddings the accuracy stays within 0.43..0.57)
    e, langs = _separated()
    rng = np.random.default_rng(10)
    result = language_identification(rng.normal(size=e.shape), langs, n_folds=5)
    assert 0.4 < result.accuracy < 0.6
    assert ((result.per_language > 0.3) & (result.per_language < 0.7)).all()


def test_cross_lingual_neighbors_is_one_for_separated_languages():
    e, langs = _separated(spread=0.05)
    assert cross_lingual_neighbors(e, langs, k=10) == 1.0


def test_cross_lingual_neighbors_match_a_brute_force_count():
    rng = np.random.default_rng(11)
    e, langs = rng.normal(size=(50, 5)), rng.integers(0, 4, 50)
    sim = unit(e) @ unit(e).T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :6]
    expected = np.mean([len(set(langs[row].tolist())) for row in nearest])
    assert cross_lingual_neighbors(e, langs, k=6) == pytest.approx(expected)


def test_neighbor_overlap_is_one_under_a_rotation():
    rng = np.random.default_rng(12)
    e = rng.normal(size=(80, 16))
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert neighbor_overlap(e, e @ rotation, k=5) == 1.0


def test_neighbor_overlap_matches_a_brute_force_count():
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(40, 4)), rng.normal(size=(40, 6))

    def knn(x):
        sim = unit(x) @ unit(x).T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :5]

    expected = np.mean([len(set(r) & set(s)) / 5 for r, s in zip(knn(a), knn(b))])
    assert neighbor_overlap(torch.from_numpy(a), b, k=5) == pytest.approx(expected)


def test_rows_that_differ_in_number_are_refused():
    with pytest.raises(ConceptError, match="same rows"):
        canonical_angles(np.ones((4, 2)), np.ones((5, 2)))


def _square_vectors(row_tokens, column_tokens):
    """Compositional squares: each of 60 squares is the mean of its row and column token
    vectors, so the 60 vectors span at most 15 dimensions. Returns float [60, d]."""
    rows, columns = np.divmod(SQUARES, 8)
    return unit((row_tokens[rows] + column_tokens[columns]) / 2)


def test_canonical_cosines_match_scipy_on_rank_deficient_inputs():
    rng = np.random.default_rng(14)
    rows, columns = rng.normal(size=(8, 128)), rng.normal(size=(8, 128))
    a = _square_vectors(rows, columns).T                             # [128, 60], rank 15
    b = _square_vectors(rows + 0.05 * rng.normal(size=rows.shape),
                        columns + 0.05 * rng.normal(size=columns.shape)).T
    expected = np.sort(np.cos(scipy.linalg.subspace_angles(a, b)))[::-1]
    got = canonical_angles(a, b, normalize=False, baseline=False).cosines
    assert len(expected) == 15
    assert np.allclose(got, expected, atol=1e-8)


def test_random_baseline_has_as_many_cosines_as_the_smaller_rank():
    rng = np.random.default_rng(15)
    a = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 10))          # rank 3
    b = rng.normal(size=(50, 6))
    result = canonical_angles(a, b, normalize=False, seed=2)
    assert len(result.cosines) == 3
    assert np.allclose(result.baseline, random_canonical_cosines(50, 3, 6, seed=2))


def test_nearest_neighbors_refuse_exclude_self_with_other_candidates():
    x = np.random.default_rng(16).normal(size=(10, 4))
    with pytest.raises(ConceptError, match="exclude_self=True with candidates"):
        nearest_neighbors(x[:3], x[5:], k=2, exclude_self=True)


def test_embeddings_with_nan_are_refused():
    x = np.random.default_rng(17).normal(size=(20, 4))
    x[3, 1] = np.nan
    with pytest.raises(ConceptError, match="row 3 contains NaN"):
        cross_lingual_neighbors(x, np.arange(20) % 2, k=3)


def test_language_identification_with_one_fold_is_refused():
    e, langs = _separated()
    with pytest.raises(ConceptError, match="n_folds=1"):
        language_identification(e, langs, n_folds=1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_inputs_keep_their_rank(dtype):
    gen = torch.Generator().manual_seed(19)
    low = torch.randn(128, 5, generator=gen, dtype=torch.float64) @ torch.randn(
        5, 20, generator=gen, dtype=torch.float64)                         # rank 5
    full = torch.randn(128, 20, generator=gen, dtype=torch.float64)       # rank 20
    dt = getattr(torch, dtype)
    assert len(canonical_angles(low.to(dt), full.to(dt), baseline=False).cosines) == 5
    assert len(canonical_angles(full.to(dt), full.to(dt), baseline=False).cosines) == 20


def test_float32_inputs_use_the_float32_rank_cutoff_as_scipy():
    rng = np.random.default_rng(18)
    rows, columns = rng.normal(size=(8, 64)), rng.normal(size=(8, 64))
    a = _square_vectors(rows, columns).T.astype(np.float32)          # rank 15 + rounding
    b = _square_vectors(rows + 0.1 * rng.normal(size=rows.shape), columns).T.astype(np.float32)
    expected = np.sort(np.cos(scipy.linalg.subspace_angles(a, b)))[::-1]
    got = canonical_angles(a, b, normalize=False, baseline=False).cosines
    assert len(got) == len(expected) == 15
    assert np.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("n_trials", [0, -1])
def test_a_baseline_of_no_trials_is_refused(n_trials):
    a = np.random.default_rng(20).normal(size=(30, 4))
    with pytest.raises(ConceptError, match=f"n_trials={n_trials}"):
        canonical_angles(a, a[:, :3], n_trials=n_trials)


@pytest.mark.parametrize("args, seed, message", [((0, 3, 4), 0, "n_rows=0"),
                                                ((20, 0, 4), 0, "d_a=0"),
                                                ((20, 3, 4), 1.5, "seed=1.5")])
def test_bad_random_baseline_parameters_are_refused(args, seed, message):
    with pytest.raises(ConceptError, match=message):
        random_canonical_cosines(*args, seed=seed)


def test_random_baseline_has_as_many_cosines_as_the_rows_allow():
    assert len(random_canonical_cosines(4, 6, 8)) == 4       # rank min(n_rows, d_a, d_b)


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_nearest_neighbors_refuse_a_chunk_size_below_one(chunk_size):
    x = np.random.default_rng(21).normal(size=(10, 4))
    with pytest.raises(ConceptError, match=f"chunk_size={chunk_size}"):
        nearest_neighbors(x, k=2, chunk_size=chunk_size)
