"""Unification of equivalent inputs across languages, after Blum et al. (2025).

An *item* is a thing that several languages express (in mOthello: the position
after a given move of a given game, written in each language). From activations
``float [n, d]`` with an item id and a language id per row:

1. Cells: the mean activation of each (language, item) pair present.
2. With ``center=True`` (default) the mean of all cells is subtracted, so a
   direction shared by every row (large in residual streams) does not make
   everything look alike.
3. Each cell vector is L2-normalised: u_{l,i}.
4. ``cross = mean cos(u_{l,i}, u_{l',i})`` over all pairs of cells with the same
   item and different languages; ``within = mean cos(u_{l,i}, u_{l,j})`` over all
   pairs of cells with the same language and different items (pooled means over
   pairs; both computed from sums in O(n d), without the n x n matrix).
5. ``score = cross - within``, in [-2, 2]: about +1 when the representation is the
   item's whatever the language (cross ~ 1, within ~ 0), about 0 when language and
   item contribute equally, and negative when it mostly encodes the language (with
   two languages and centring, a language-only representation gives -2).

`similarity_matrix` returns the cosine matrix of the cells ordered by (language,
item); separated representations show as a checkerboard of language blocks, and
unified ones as a bright diagonal in every block. `plot_similarity_matrix` draws it.

>>> import numpy as np
>>> items = np.array([0, 1, 0, 1]); langs = np.array([0, 0, 1, 1])
>>> shared = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
>>> unification_score(shared, items, langs, center=False).score
1.0
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConceptError, check_int, number_array
from .plots import new_figure, save_figure

__all__ = ["Unification", "unification_score", "SimilarityMatrix", "similarity_matrix",
           "plot_similarity_matrix"]


@dataclass
class Unification:
    """score = cross - within (see the module docstring); n_cells (language, item) pairs."""
    score: float
    cross: float
    within: float
    n_items: int
    n_languages: int
    n_cells: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _cells(activations, items, languages, center: bool):
    """Unit cell vectors float64 [n_cells, d] with their language and item ids int64
    [n_cells], ordered by (language, item)."""
    x = activations.detach() if isinstance(activations, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(number_array("activations", activations, dtype=None,
                                          error=ConceptError)))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ConceptError(f"activations of shape {tuple(x.shape)}: expected float [n, d_model]")
    x = x.double()
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(1).nonzero()[0])
        raise ConceptError(f"activations row {bad} contains NaN or infinity: expected finite "
                           "values")
    ids = []
    for name, values in (("items", items), ("languages", languages)):
        v = np.asarray(values.cpu() if hasattr(values, "cpu") else values)
        if v.shape != (x.shape[0],) or not np.issubdtype(v.dtype, np.integer):
            raise ConceptError(f"{name} of dtype {v.dtype} and shape {v.shape}: expected "
                               f"integers [{x.shape[0]}]")
        ids.append(v.astype(np.int64))
    pairs, inverse = np.unique(np.stack([ids[1], ids[0]], 1), axis=0, return_inverse=True)
    inv = torch.from_numpy(inverse.ravel()).to(x.device)
    sums = torch.zeros(len(pairs), x.shape[1], dtype=torch.float64, device=x.device)
    sums.index_add_(0, inv, x)
    cells = sums / torch.bincount(inv, minlength=len(pairs)).double()[:, None]
    if center:
        cells = cells - cells.mean(0, keepdim=True)
    cells = cells / cells.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return cells, pairs[:, 0], pairs[:, 1]


def _mean_pair_similarity(u: torch.Tensor, groups: np.ndarray) -> float:
    """Mean of u_a . u_b over pairs a != b within the same group (NaN if no pair)."""
    g = torch.from_numpy(np.unique(groups, return_inverse=True)[1].ravel()).to(u.device)
    n_groups = int(g.max()) + 1
    totals = torch.zeros(n_groups, u.shape[1], dtype=u.dtype, device=u.device).index_add_(0, g, u)
    counts = torch.bincount(g, minlength=n_groups).double()
    pair_sum = ((totals ** 2).sum() - (u ** 2).sum()) / 2
    n_pairs = float((counts * (counts - 1) / 2).sum())
    return float(pair_sum) / n_pairs if n_pairs else float("nan")


def unification_score(activations, items, languages, *, center: bool = True) -> Unification:
    """Unification score of one layer (formula in the module docstring).

    activations: float [n, d]; items: int [n]; languages: int [n]. Needs an item in at
    least two languages and a language with at least two items.
    """
    u, cell_lang, cell_item = _cells(activations, items, languages, center)
    cross = _mean_pair_similarity(u, cell_item)
    within = _mean_pair_similarity(u, cell_lang)
    if np.isnan(cross) or np.isnan(within):
        raise ConceptError("unification needs an item present in two languages and a language "
                           "with two items: got "
                           f"{len(np.unique(cell_item))} item(s), {len(np.unique(cell_lang))} "
                           "language(s)")
    return Unification(cross - within, cross, within, len(np.unique(cell_item)),
                       len(np.unique(cell_lang)), len(u))


@dataclass
class SimilarityMatrix:
    """Cosine similarity of (language, item) cells: `matrix` float64 [n_cells, n_cells];
    `languages`, `items` int64 [n_cells], rows ordered by (language, item)."""
    matrix: np.ndarray
    languages: np.ndarray
    items: np.ndarray


def similarity_matrix(activations, items, languages, *, center: bool = True,
                      max_items: int | None = 64, seed: int = 0) -> SimilarityMatrix:
    """The (language, item)-ordered cosine matrix of the cells (see the module docstring).

    activations: float [n, d]; items, languages: int [n]. At most `max_items` items are
    kept (a seeded random choice among them; None: all), so the matrix stays small;
    centring uses every cell.
    """
    if max_items is not None:
        check_int("max_items", max_items, least=1, error=ConceptError)
    check_int("seed", seed, least=0, error=ConceptError)
    u, cell_lang, cell_item = _cells(activations, items, languages, center)
    keep = np.ones(len(u), dtype=bool)
    unique_items = np.unique(cell_item)
    if max_items is not None and len(unique_items) > max_items:
        chosen = np.random.default_rng(seed).choice(unique_items, max_items, replace=False)
        keep = np.isin(cell_item, chosen)
    u = u[torch.from_numpy(keep).to(u.device)]
    return SimilarityMatrix((u @ u.T).cpu().numpy(), cell_lang[keep], cell_item[keep])


def plot_similarity_matrix(similarity: SimilarityMatrix, path, *, title: str = "",
                           language_names=None) -> Path:
    """Draw `similarity` as a heat map (blocks by language) and save it to `path` (in the
    format of its suffix, PNG, SVG, PDF, ...; written atomically)."""
    if not isinstance(similarity, SimilarityMatrix):
        raise ConceptError(f"similarity={type(similarity).__name__}: expected the "
                           "SimilarityMatrix that similarity_matrix returns")
    if language_names is not None and len(language_names) <= int(similarity.languages.max()):
        raise ConceptError(f"language_names={list(language_names)}: expected a name for each "
                           f"of the {int(similarity.languages.max()) + 1} languages")
    fig, ax = new_figure(figsize=(6, 5), dpi=120)
    image = ax.imshow(similarity.matrix, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
    starts = np.nonzero(np.r_[True, np.diff(similarity.languages) != 0])[0]
    for s in starts[1:]:
        ax.axhline(s - 0.5, color="k", lw=0.5)
        ax.axvline(s - 0.5, color="k", lw=0.5)
    langs = similarity.languages[starts]
    names = [str(language_names[l]) if language_names is not None else f"language {l}"
             for l in langs]
    centres = (starts + np.r_[starts[1:], len(similarity.languages)]) / 2 - 0.5
    ax.set_xticks(centres, names, rotation=45, ha="right")
    ax.set_yticks(centres, names)
    ax.set_title(title or "cosine similarity of (language, item) cells")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)
