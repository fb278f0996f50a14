"""Unification score and similarity matrix on constructed activations."""
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from mothello_fast.errors import ConceptError
from mothello_fast.unification import (plot_similarity_matrix, similarity_matrix,
                                       unification_score)

D = 64


def rows(n_items=30, n_languages=3, repeats=2):
    """Item and language ids of every row: each (language, item) seen `repeats` times."""
    items = np.tile(np.repeat(np.arange(n_items), repeats), n_languages)
    langs = np.repeat(np.arange(n_languages), n_items * repeats)
    return items, langs


def activations(items, langs, item_weight, language_weight, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    item_vecs = rng.normal(size=(items.max() + 1, D))
    lang_vecs = rng.normal(size=(langs.max() + 1, D)) * 3
    offset = rng.normal(size=D) * 10   # a direction shared by every row
    return (item_weight * item_vecs[items] + language_weight * lang_vecs[langs] + offset
            + noise * rng.normal(size=(len(items), D)))


def _oracle(acts, items, langs, center=True):
    """Score from the definition: cell means, centring, and an explicit loop over pairs."""
    keys = sorted(set(zip(langs.tolist(), items.tolist())))
    cells = np.stack([acts[(langs == l) & (items == i)].mean(0) for l, i in keys])
    if center:
        cells = cells - cells.mean(0)
    cells = cells / np.linalg.norm(cells, axis=1, keepdims=True)
    cross, within = [], []
    for a, b in combinations(range(len(keys)), 2):
        (la, ia), (lb, ib) = keys[a], keys[b]
        if ia == ib and la != lb:
            cross.append(cells[a] @ cells[b])
        if la == lb and ia != ib:
            within.append(cells[a] @ cells[b])
    return np.mean(cross) - np.mean(within)


def test_shared_item_vectors_score_high():
    items, langs = rows()
    result = unification_score(activations(items, langs, 1.0, 0.0), items, langs)
    assert result.score > 0.9
    assert result.cross > 0.95


def test_language_only_activations_score_low():
    items, langs = rows()
    result = unification_score(activations(items, langs, 0.0, 1.0), items, langs)
    assert result.score < -0.5
    assert result.within > 0.9


def test_score_matches_a_pairwise_oracle():
    items, langs = rows(n_items=12, n_languages=3)
    acts = activations(items, langs, 1.0, 0.5, seed=3, noise=0.5)
    for center in (True, False):
        got = unification_score(torch.from_numpy(acts), items, langs, center=center).score
        assert got == pytest.approx(_oracle(acts, items, langs, center), abs=1e-9)


def test_missing_cells_are_left_out_of_both_means():
    items, langs = rows(n_items=10, n_languages=2, repeats=1)
    keep = ~((langs == 1) & (items >= 7))      # language 1 lacks items 7..9
    acts = activations(items, langs, 1.0, 0.7, seed=4, noise=0.3)[keep]
    got = unification_score(acts, items[keep], langs[keep]).score
    assert got == pytest.approx(_oracle(acts, items[keep], langs[keep]), abs=1e-9)


def test_a_single_language_is_refused():
    items = np.arange(5)
    with pytest.raises(ConceptError, match="two languages"):
        unification_score(np.eye(5), items, np.zeros(5, dtype=np.int64))


def test_similarity_matrix_is_ordered_by_language_then_item():
    items, langs = rows(n_items=5, n_languages=2)
    order = np.random.default_rng(5).permutation(len(items))
    sim = similarity_matrix(activations(items, langs, 1.0, 0.0)[order], items[order],
                            langs[order])
    assert sim.languages.tolist() == [0] * 5 + [1] * 5
    assert sim.items.tolist() == list(range(5)) * 2


def test_similarity_matrix_shows_the_item_diagonal_for_shared_vectors():
    items, langs = rows(n_items=8, n_languages=2)
    sim = similarity_matrix(activations(items, langs, 1.0, 0.0), items, langs).matrix
    cross_block = sim[:8, 8:]
    assert np.all(np.diag(cross_block) > 0.95)
    assert np.all(cross_block[~np.eye(8, dtype=bool)] < 0.7)


def test_similarity_matrix_is_a_checkerboard_for_language_only_activations():
    items, langs = rows(n_items=8, n_languages=2)
    sim = similarity_matrix(activations(items, langs, 0.0, 1.0), items, langs).matrix
    assert sim[:8, :8].min() > 0.9 and sim[8:, 8:].min() > 0.9
    assert sim[:8, 8:].max() < -0.9


def test_similarity_matrix_keeps_at_most_max_items():
    items, langs = rows(n_items=40, n_languages=2)
    sim = similarity_matrix(activations(items, langs, 1.0, 0.0), items, langs, max_items=10)
    assert sim.matrix.shape == (20, 20)
    assert len(np.unique(sim.items)) == 10


def test_plot_writes_a_png(tmp_path):
    items, langs = rows(n_items=6, n_languages=2)
    sim = similarity_matrix(activations(items, langs, 1.0, 0.0), items, langs)
    path = plot_similarity_matrix(sim, tmp_path / "sim.png", language_names=["A", "B"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_activations_with_nan_are_refused():
    items, langs = rows(n_items=5, n_languages=2)
    acts = activations(items, langs, 1.0, 0.0)
    acts[3, 2] = np.nan
    with pytest.raises(ConceptError, match="row 3 contains NaN"):
        unification_score(acts, items, langs)


def test_a_reversed_view_of_the_activations_gives_the_score_of_its_copy():
    items, langs = rows(n_items=6, n_languages=2)
    acts = activations(items, langs, 1.0, 0.5, seed=6, noise=0.3)[::-1]
    got = unification_score(acts, items[::-1], langs[::-1]).score
    assert got == pytest.approx(unification_score(acts.copy(), items[::-1], langs[::-1]).score)


def test_activations_without_features_are_refused():
    items, langs = rows(n_items=4, n_languages=2)
    with pytest.raises(ConceptError, match=r"shape \(16, 0\)"):
        unification_score(np.zeros((len(items), 0)), items, langs)


@pytest.mark.parametrize("max_items", [0, -1, 2.5])
def test_similarity_matrix_refuses_max_items_below_one(max_items):
    items, langs = rows(n_items=5, n_languages=2)
    with pytest.raises(ConceptError, match=f"max_items={max_items}"):
        similarity_matrix(activations(items, langs, 1.0, 0.0), items, langs, max_items=max_items)


def test_plot_leaves_the_old_file_whole_when_saving_fails(tmp_path, monkeypatch):
    import matplotlib.figure

    items, langs = rows(n_items=6, n_languages=2)
    sim = similarity_matrix(activations(items, langs, 1.0, 0.0), items, langs)
    path = tmp_path / "sim.png"
    path.write_bytes(b"old")

    def broken_savefig(self, target, **kwargs):   # writes part of the image, then fails
        if hasattr(target, "write"):
            target.write(b"half")
        else:
            Path(target).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_similarity_matrix(sim, path)
    assert path.read_bytes() == b"old"


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"),
                                           (".pdf", b"%PDF")])
def test_plot_is_saved_in_the_format_its_suffix_names(tmp_path, suffix, magic):
    items, langs = rows(n_items=6, n_languages=2)
    sim = similarity_matrix(activations(items, langs, 1.0, 0.0), items, langs)
    path = plot_similarity_matrix(sim, tmp_path / f"sim{suffix}")
    assert path.read_bytes().startswith(magic)
