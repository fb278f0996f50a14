"""Cross-lingual alignment: does a board probe trained in one language read another?

The all-pairs matrix at a layer: entry ``[a, b]`` is the accuracy of a probe trained
on language a's hidden states and tested on language b's hidden states of the same
test positions (the same games, the same moves). The diagonal is the
in-distribution accuracy; the off-diagonal mean is the cross-lingual accuracy.
The test positions are those of separate test games when given (mOthello's protocol:
probes trained on the probe games, tested on 100 fresh games); otherwise the positions
are split 80/20 at random (seeded), the same split for every language.

`align` takes a collection (`activations.ParallelActivations`, from any model: see
`ParallelActivations.from_sequences`); `alignment_matrix` and `alignment_by_layer` take
plain arrays; `model_alignment` collects a mOthello model's activations, then aligns.
The probe is an estimator, cloned for every fit (``probe=MLPProbe(hidden=512)``), or a
kind name ("mlp", "linear": a default probe of that kind seeded with `seed`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from .progress import progress_bar

from .errors import ProbeError
from .probes import check_test_fraction, fresh_probe, split_positions

__all__ = ["AlignmentMatrix", "LayerAlignment", "alignment_matrix", "alignment_by_layer",
           "align", "model_alignment"]


def _json_number(value: float) -> float | None:
    """`value`, or None for nan (strict JSON has no NaN)."""
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True)
class AlignmentMatrix:
    """accuracy: ``float64 [L, L]``, ``[a, b]`` = probe trained on a, tested on b;
    per_square: ``float64 [L, L, 64]``; n_train / n_test: positions in each part;
    per_position: ``float64 [L, L, n_test]``, the fraction of squares read right at each
    test position (for intervals over test games; not in `to_dict`, for its size)."""
    languages: tuple[str, ...]
    accuracy: np.ndarray
    per_square: np.ndarray
    n_train: int
    n_test: int
    per_position: np.ndarray | None = None

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
        """JSON-ready; ``cross_lingual`` is None for a single language."""
        return {"languages": list(self.languages), "accuracy": self.accuracy.tolist(),
                "per_square": self.per_square.tolist(),
                "in_distribution": self.in_distribution.tolist(),
                "cross_lingual": _json_number(self.cross_lingual), "n_train": self.n_train,
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
                "cross_lingual": [_json_number(c) for c in self.cross_lingual],
                "matrices": [m.to_dict() for m in self.matrices]}


def _check_positions(hidden: Mapping[str, np.ndarray], labels, what: str) -> np.ndarray:
    """labels as an array ``[N, 64]``, checked against every language's ``[N, d]``."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ProbeError(f"{what}labels has shape {labels.shape}: expected "
                         "[n_positions, 64]")
    for language, X in hidden.items():
        if np.ndim(X) != 2 or np.shape(X)[0] != labels.shape[0]:
            raise ProbeError(f"{what}hidden[{language!r}] has shape {np.shape(X)} but "
                             f"{what}labels has {labels.shape[0]} positions: expected "
                             "[n_positions, d], the same positions in every language")
    return labels


def alignment_matrix(hidden: Mapping[str, np.ndarray], labels, *, probe="mlp",
                     test_fraction: float = 0.2, seed: int = 0,
                     test_hidden: Mapping[str, np.ndarray] | None = None,
                     test_labels=None, progress: bool = False) -> AlignmentMatrix:
    """All-pairs cross-lingual probe accuracy at one layer.

    hidden: language -> float ``[N, d]``, row i of every language being the same
    position (game, move); labels: int ``[N, 64]`` (classes 0..2) of those positions.
    With `test_hidden` (language -> float ``[M, d]``, the same languages) and
    `test_labels` (int ``[M, 64]``), probes train on every position of `hidden` and are
    scored on the test positions; without them, on a seeded random split of `hidden`
    with `test_fraction` of the positions held out.
    probe: an estimator cloned for every fit, or a kind name ("mlp", "linear") seeded
    with `seed` (`probes.fresh_probe`).
    """
    for name, value in (("hidden", hidden), ("test_hidden", test_hidden)):
        if (value is not None or name == "hidden") and not isinstance(value, Mapping):
            raise ProbeError(f"{name}={type(value).__name__}: expected a dict language -> "
                             "float [N, d]")
    languages = tuple(hidden)   # a mapping's keys: each once
    if not languages:
        raise ProbeError("hidden is empty: expected the activations of at least one language")
    fresh_probe(probe, seed=seed)
    labels = _check_positions(hidden, labels, "")
    if (test_hidden is None) != (test_labels is None):
        raise ProbeError("test_hidden and test_labels: expected both or neither")
    if test_hidden is None:
        train, test = split_positions(len(labels), test_fraction, seed)
        train_x = {k: np.asarray(X)[train] for k, X in hidden.items()}
        test_x = {k: np.asarray(X)[test] for k, X in hidden.items()}
        train_y, test_y = labels[train], labels[test]
    else:
        if set(test_hidden) != set(languages):
            raise ProbeError(f"test_hidden has languages {list(test_hidden)}: expected the "
                             f"languages of hidden, {list(languages)}")
        train_x, train_y = hidden, labels
        test_x, test_y = test_hidden, _check_positions(test_hidden, test_labels, "test_")
        if len(train_y) == 0 or len(test_y) == 0:
            raise ProbeError(f"{len(train_y)} training and {len(test_y)} test positions: "
                             "expected at least one of each")
    test_y = np.asarray(test_y)
    if not np.issubdtype(test_y.dtype, np.integer) or (test_y.size and not (
            0 <= test_y.min() and test_y.max() <= 2)):
        raise ProbeError(f"test labels of dtype {test_y.dtype}: expected integer classes 0..2")
    per_square = np.empty((len(languages), len(languages), labels.shape[1]))
    per_position = np.empty((len(languages), len(languages), len(test_y)))
    for a, source in enumerate(progress_bar(progress, languages, desc="alignment",
                                            leave=False)):
        fitted = fresh_probe(probe, seed=seed).fit(np.asarray(train_x[source]), train_y)
        for b, target in enumerate(languages):
            right = fitted.predict(np.asarray(test_x[target])) == test_y   # bool [M, 64]
            per_square[a, b], per_position[a, b] = right.mean(0), right.mean(1)
    return AlignmentMatrix(languages, per_square.mean(-1), per_square, len(train_y),
                           len(test_y), per_position)


def alignment_by_layer(hidden: Mapping[object, Mapping[str, np.ndarray]], labels, *,
                       test_hidden: Mapping[object, Mapping[str, np.ndarray]] | None = None,
                       test_labels=None, **kwargs) -> LayerAlignment:
    """`alignment_matrix` at every layer: hidden (and `test_hidden`, if given) map
    layer -> language -> float ``[N, d]``; keyword arguments as `alignment_matrix`."""
    for name, value in (("hidden", hidden), ("test_hidden", test_hidden)):
        if (value is not None or name == "hidden") and not isinstance(value, Mapping):
            raise ProbeError(f"{name}={type(value).__name__}: expected a dict layer -> "
                             "language -> float [N, d]")
    layers = tuple(hidden)
    if test_hidden is not None and set(test_hidden) != set(layers):
        raise ProbeError(f"test_hidden has layers {list(test_hidden)}: expected the layers "
                         f"of hidden, {list(layers)}")
    return LayerAlignment(layers, tuple(
        alignment_matrix(hidden[layer], labels, test_labels=test_labels,
                         test_hidden=None if test_hidden is None else test_hidden[layer],
                         **kwargs)
        for layer in layers))


def align(train, test=None, *, labels: str = "absolute", layers=None, languages=None,
          probe="mlp", test_fraction: float = 0.2, seed: int = 0,
          progress: bool = False) -> LayerAlignment:
    """`alignment_by_layer` of a collection (`activations.ParallelActivations`, from any
    model) at `layers` (default: all collected) in `languages` (default: all), with
    "absolute" or "relative" board labels. With `test` (a collection of other games: the
    same languages and layers), probes train on every position of `train` and are tested
    on `test`'s (mOthello's protocol); without, on a `test_fraction` split of `train`."""
    from .activations import check_collection, check_label_kind

    check_label_kind(labels)
    train = check_collection(train, "train").select(layers, languages)
    if test is not None:
        check_collection(test, "test")
    if test is not None:
        test = test.select(list(train.hooks.values()), train.languages)
    else:
        check_test_fraction(test_fraction)
    return alignment_by_layer(train.hidden, train.labels(labels),
                              test_hidden=None if test is None else dict(
                                  zip(train.layers, test.hidden.values())),
                              test_labels=None if test is None else test.labels(labels),
                              probe=probe, test_fraction=test_fraction, seed=seed,
                              progress=progress)


def model_alignment(model, language_set, games, *, languages: Sequence[str] | None = None,
                    layers: Sequence[int | str] | int | str = (6,), labels: str = "absolute",
                    probe="mlp", test_games=None, test_fraction: float = 0.2, seed: int = 0,
                    batch_size: int = 256, progress: bool = True) -> LayerAlignment:
    """Collect `model`'s hidden states on `games` (int8 [n, 60]) in every language (all
    input languages by default) at `layers` (see `activations.resolve_layers`; the
    result has one entry per distinct hook), then `align` them. With `test_games`
    (int8 [m, 60], fresh games: mOthello's protocol), probes train on every position of
    `games` and are tested on those of `test_games`; without, on a `test_fraction` split
    of the positions of `games`. Every argument is checked before anything is collected."""
    from .activations import check_games, check_label_kind, collect_parallel, resolve_layers

    games = check_games(games)
    if test_games is not None:
        test_games = check_games(test_games, "test_games")
    from .languages import check_language_set

    languages = check_language_set(language_set).select_languages(languages)
    check_label_kind(labels)
    fresh_probe(probe, seed=seed)
    if test_games is None:
        check_test_fraction(test_fraction)
    resolve_layers(model, layers)
    train, test = (None if g is None else collect_parallel(
        model, language_set, g, languages=languages, layers=layers, batch_size=batch_size,
        progress=progress) for g in (games, test_games))
    return align(train, test, labels=labels, probe=probe, test_fraction=test_fraction,
                 seed=seed, progress=progress)
