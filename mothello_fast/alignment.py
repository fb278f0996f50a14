"""Cross-lingual alignment: does a board probe trained in one language read another?

The all-pairs matrix at a layer: entry ``[a, b]`` is the accuracy of a probe trained
on language a's hidden states and tested on language b's hidden states of the same
held-out positions (the same games, the same moves). The diagonal is the
in-distribution accuracy; the off-diagonal mean is the cross-lingual accuracy.
Positions are split 80/20 at random (seeded), the same split for every language.

`alignment_matrix` and `alignment_by_layer` take plain arrays, so they work on any
model's activations; `model_alignment` collects them from a mOthello model first.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .datasets import split_games
from .errors import ProbeError
from .probes import LinearProbe, MLPProbe

__all__ = ["PROBE_KINDS", "make_probe", "AlignmentMatrix", "LayerAlignment", "alignment_matrix",
           "alignment_by_layer", "model_alignment"]

PROBE_KINDS = {"linear": LinearProbe, "mlp": MLPProbe}


def make_probe(kind: str = "mlp", **params) -> LinearProbe | MLPProbe:
    """A fresh probe of `kind` ("linear" or "mlp") with constructor `params`."""
    if kind not in PROBE_KINDS:
        raise ProbeError(f"probe={kind!r}: expected one of {sorted(PROBE_KINDS)}")
    return PROBE_KINDS[kind](**params)


@dataclass(frozen=True)
class AlignmentMatrix:
    """accuracy: ``float64 [L, L]``, ``[a, b]`` = probe trained on a, tested on b;
    per_square: ``float64 [L, L, 64]``; n_train / n_test: positions in each part."""
    languages: tuple[str, ...]
    accuracy: np.ndarray
    per_square: np.ndarray
    n_train: int
    n_test: int

    @property
    def in_distribution(self) -> np.ndarray:
        """``float64 [L]``: each language's probe on its own test positions."""
        return np.diag(self.accuracy).copy()

    @property
    def cross_lingual(self) -> float:
        """Mean of the off-diagonal entries (nan for a single language)."""
        n = len(self.languages)
        if n < 2:
            return float("nan")
        return float(self.accuracy[~np.eye(n, dtype=bool)].mean())

    def __repr__(self) -> str:
        rows = "; ".join(f"{a}: " + " ".join(f"{v:.3f}" for v in row)
                         for a, row in zip(self.languages, self.accuracy))
        return (f"AlignmentMatrix(cross_lingual={self.cross_lingual:.3f}, accuracy "
                f"[trained on: tested on {' '.join(self.languages)}] {rows}, n_test={self.n_test})")

    def to_dict(self) -> dict:
        return {"languages": list(self.languages), "accuracy": self.accuracy.tolist(),
                "in_distribution": self.in_distribution.tolist(),
                "cross_lingual": self.cross_lingual, "n_train": self.n_train,
                "n_test": self.n_test}


@dataclass(frozen=True)
class LayerAlignment:
    """One `AlignmentMatrix` per layer, and the per-layer curves drawn from them:
    in_distribution ``float64 [n_layers, L]`` and cross_lingual ``float64 [n_layers]``."""
    layers: tuple
    matrices: tuple[AlignmentMatrix, ...]

    @property
    def in_distribution(self) -> np.ndarray:
        return np.stack([m.in_distribution for m in self.matrices])

    @property
    def cross_lingual(self) -> np.ndarray:
        return np.array([m.cross_lingual for m in self.matrices])

    def __getitem__(self, layer) -> AlignmentMatrix:
        try:
            return self.matrices[self.layers.index(layer)]
        except ValueError:
            raise KeyError(f"layer {layer!r} not computed; computed: {list(self.layers)}") from None

    def __repr__(self) -> str:
        curves = ", ".join(f"{layer}: {m.in_distribution.mean():.3f}/{m.cross_lingual:.3f}"
                           for layer, m in zip(self.layers, self.matrices))
        return f"LayerAlignment(layer: in-distribution/cross-lingual {curves})"

    def to_dict(self) -> dict:
        return {"layers": list(self.layers),
                "in_distribution": self.in_distribution.tolist(),
                "cross_lingual": self.cross_lingual.tolist(),
                "matrices": [m.to_dict() for m in self.matrices]}


def alignment_matrix(hidden: Mapping[str, np.ndarray], labels, *, probe: str = "mlp",
                     probe_params: Mapping | None = None, test_fraction: float = 0.2,
                     seed: int = 0, progress: bool = False) -> AlignmentMatrix:
    """All-pairs cross-lingual probe accuracy at one layer.

    hidden: language -> float ``[N, d]``, row i of every language being the same
    position (game, move); labels: int ``[N, 64]`` (classes 0..2) of those positions.
    probe: "linear" or "mlp", built with `probe_params` (its `seed` defaults to `seed`).
    """
    languages = tuple(hidden)
    if not languages:
        raise ProbeError("hidden is empty: expected activations of at least one language")
    labels = np.asarray(labels)
    n = labels.shape[0] if labels.ndim else 0
    for language, X in hidden.items():
        if np.shape(X)[0] != n:
            raise ProbeError(f"language {language!r} has {np.shape(X)[0]} positions but labels "
                             f"has {n}: expected the same positions in every language")
    train, test = split_games(n, val_fraction=test_fraction, seed=seed)
    if len(train) == 0 or len(test) == 0:
        raise ProbeError(f"{n} positions with test_fraction={test_fraction}: expected both "
                         "a training and a test part")
    params = {"seed": seed, **(probe_params or {})}
    per_square = np.empty((len(languages), len(languages), labels.shape[1]))
    for a, source in enumerate(tqdm(languages, desc="alignment", disable=not progress,
                                    leave=False)):
        fitted = make_probe(probe, **params).fit(np.asarray(hidden[source])[train], labels[train])
        for b, target in enumerate(languages):
            per_square[a, b] = fitted.per_square_accuracy(np.asarray(hidden[target])[test],
                                                          labels[test])
    return AlignmentMatrix(languages, per_square.mean(-1), per_square, len(train), len(test))


def alignment_by_layer(hidden: Mapping[object, Mapping[str, np.ndarray]], labels,
                       **kwargs) -> LayerAlignment:
    """`alignment_matrix` at every layer: hidden maps layer -> language -> float ``[N, d]``;
    keyword arguments as `alignment_matrix`."""
    layers = tuple(hidden)
    return LayerAlignment(layers, tuple(alignment_matrix(hidden[layer], labels, **kwargs)
                                        for layer in layers))


def _common_positions(collections: Sequence) -> list[np.ndarray]:
    """Row indices selecting, in every collection, the positions (game, move) they all have,
    in the same order."""
    keys = [c.game * 64 + c.move for c in collections]
    common = keys[0]
    for k in keys[1:]:
        common = np.intersect1d(common, k)
    return [np.searchsorted(k, common) if np.all(np.diff(k) > 0)
            else np.flatnonzero(np.isin(k, common)) for k in keys]


def model_alignment(model, language_set, games, *, languages: Sequence[str] | None = None,
                    layers: Sequence[int | str] = (6,), labels: str = "absolute",
                    probe: str = "mlp", probe_params: Mapping | None = None,
                    test_fraction: float = 0.2, seed: int = 0, batch_size: int = 256,
                    progress: bool = True) -> LayerAlignment:
    """Collect `model`'s hidden states on `games` (int8 [n, 60]) in every language (all
    input languages by default) at `layers`, and compute `alignment_by_layer` with
    "absolute" or "relative" board labels."""
    from .activations import collect_activations

    if languages is None:
        languages = list(language_set.names)
    collected = [collect_activations(model, language_set, games, language=language,
                                     layers=layers, batch_size=batch_size, progress=progress)
                 for language in languages]
    rows = _common_positions(collected)
    hooks = collected[0].layers
    hidden = {layer: {language: c.hidden[hook][r]
                      for language, c, r in zip(languages, collected, rows)}
              for layer, hook in zip(layers, hooks)}
    return alignment_by_layer(hidden, collected[0].labels(labels)[rows[0]], probe=probe,
                              probe_params=probe_params, test_fraction=test_fraction, seed=seed,
                              progress=progress)
