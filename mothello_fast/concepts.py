"""Latent-concept alignment (CALIGN) and overlap (COLAP), after Mousi et al. (2024).

A latent concept is a cluster of the token representations of one layer (`KMeans`);
the metrics take the cluster labels, so they work on any model's clusters.

**Types.** Each clustered point (one occurrence of a token in context) carries a
type id: the word it is an occurrence of. In mOthello the natural type is the
square of the move (the same in every language, so the dictionary is the identity
``np.arange(64)[:, None]``); with token ids as types, `dictionary_from_translation_table`
or `dictionary_from_token_square` give the exact dictionary. A cluster's size is its
number of distinct types, as in the paper's code.

**CALIGN** (source clusters C_s of language s, target clusters C_t of language t,
D_N(w) the top-N translations of type w)::

    m(C_s, C_t) = |{w in C_s : D_N(w) meets C_t}| / |C_s|
    C_s ~ C_t  iff  m(C_s, C_t) > theta_a                          (strict)
                and |C_s| > min_types                               (strict)
                and min(|C_s|, |C_t|) / max(|C_s|, |C_t|) >= size_ratio   (inclusive)
    CALIGN = |{C_s : C_s ~ C_t for some C_t}| / |{non-empty C_s}|

Ratios are compared as the double nearest to the exact fraction (``3 / 10 >= 0.3``
holds), never by multiplying the threshold. Direction "t->s" swaps the roles, with
`reverse_dictionary` (default: the transpose of the top-N dictionary); "both"
reports the two directions and scores their mean.

**COLAP** (one clustering of the points of all languages together)::

    share_l(C) = members of C from language l / members of C        (token level)
               = distinct types of l in C / distinct (language, type) pairs in C   (type level)
    C overlapping iff size(C) >= min_cluster_size and share_l(C) >= theta_o for every l
    COLAP = overlapping clusters / n_clusters   (empty clusters count in n_clusters)

Both thresholds are fractions in [0, 1] (never percentages). Unlike the public
code, the aligned count includes only aligned clusters, and thresholds are
compared as numbers.

>>> import numpy as np
>>> r = calign([0, 0, 1, 1], [0, 1, 2, 3], [5, 5, 7, 7], [0, 1, 2, 3],
...            np.arange(4)[:, None], theta_a=0.5)
>>> r.score, [(p.source, p.target, p.match) for p in r.pairs]
(1.0, [(0, 5, 1.0), (1, 7, 1.0)])
>>> colap([0, 0, 1, 1], [0, 1, 0, 0], theta_o=0.5).score
0.5
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConceptError, MothelloError, check_float, check_int, number_array
from .plots import new_figure, save_figure

__all__ = ["AlignedPair", "CalignResult", "ColapResult", "calign", "colap",
           "dictionary_from_translation_table", "dictionary_from_token_square",
           "PairOverlap", "LayerConcepts", "ConceptReport", "concept_metrics", "concept_report",
           "embedding_geometry", "default_kmeans", "check_report_params", "cap_per_type",
           "compare_reports", "SIZE_RULES"]

DIRECTIONS = ("s->t", "t->s", "both")


def _check_fraction(name: str, value) -> float:
    """`value` as a float, or a ConceptError if it is not a number in [0, 1]."""
    try:
        return check_float(name, value, low=0, high=1, error=ConceptError)
    except ConceptError as exc:
        raise ConceptError(f"{exc} (a fraction, not a percentage)") from None


def _check_top_n(top_n) -> int | None:
    return None if top_n is None else check_int("top_n", top_n, least=1, error=ConceptError)


def _int_array(name: str, values, ndim: int = 1) -> np.ndarray:
    array = values.cpu().numpy() if hasattr(values, "cpu") else values
    array = number_array(name, array, dtype=None, error=ConceptError)
    if array.ndim != ndim or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ConceptError(f"{name} of dtype {array.dtype} and shape {array.shape}: "
                           f"expected a {ndim}-d integer array")
    return array.astype(np.int64, copy=False)


def _check_cluster_count(k: int, n_points: int) -> None:
    """A `ConceptError` when `k` cluster ids (the largest label + 1) would need tables past
    memory: labels are ids 0..K-1 of a clustering, not arbitrary numbers."""
    from .parallel import check_fits_in_memory

    check_fits_in_memory(f"{k:,} cluster ids for {n_points:,} points", 64 * k,
                         error=ConceptError,
                         hint=": expected cluster labels 0..K-1 (relabel with np.unique)")


def _labels_types(labels, types, side: str) -> tuple[np.ndarray, np.ndarray]:
    labels = _int_array(f"{side}_labels", labels)
    types = _int_array(f"{side}_types", types)
    if labels.shape != types.shape or labels.size == 0:
        raise ConceptError(f"{side}_labels {labels.shape} and {side}_types {types.shape}: "
                           "expected two non-empty arrays of the same length")
    if labels.min() < 0 or types.min() < 0:
        raise ConceptError(f"{side} labels or types contain a negative id: expected ids >= 0")
    _check_cluster_count(int(labels.max()) + 1, len(labels))
    return labels, types


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs, sorted by a then b."""
    if len(a) == 0:
        return a, b
    base = int(b.max()) + 1
    keys = np.unique(a * base + b)          # ids are small enough: clusters x types
    return keys // base, keys % base


def _expand(keys: np.ndarray, values: np.ndarray, query: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """For each query q, every value whose key is q: (index of the query, value), as two
    int64 arrays. keys: sorted int64 [m], values: int64 [m], query: int64 [n]."""
    start = np.searchsorted(keys, query, "left")
    counts = np.searchsorted(keys, query, "right") - start
    which = np.repeat(np.arange(len(query)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return which, values[np.repeat(start, counts) + offsets]


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """bool [n]: where a run of equal key tuples begins (keys sorted; empty keys give [])."""
    starts = np.ones(len(keys[0]), dtype=bool)
    if len(starts):
        starts[1:] = np.any([np.diff(k) != 0 for k in keys], axis=0)
    return starts


def _type_id(value) -> int:
    """An integer type id of a dictionary, else a `ConceptError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConceptError(f"dictionary entry {value!r}: expected an integer type id")
    return int(value)


def _dictionary_edges(dictionary, top_n: int | None) -> tuple[np.ndarray, ...]:
    """(source type, target type, rank) int64 arrays of the top-`top_n` translations,
    sorted by source type then rank."""
    top_n = _check_top_n(top_n)
    if isinstance(dictionary, Mapping):
        try:
            rows = [(_type_id(w), _type_id(t), r) for w, ts in dictionary.items()
                    for r, t in enumerate(ts)]
        except TypeError:
            raise ConceptError(f"dictionary {dictionary!r}: expected type -> a list of "
                               "integer types") from None
        edges = np.array(rows, dtype=np.int64).reshape(-1, 3)
    else:
        array = _int_array("dictionary", dictionary, ndim=2)
        w, r = np.nonzero(array >= 0)
        edges = np.stack([w, array[w, r], r], 1)
    if top_n is not None:
        edges = edges[edges[:, 2] < top_n]
    edges = edges[(edges[:, 0] >= 0) & (edges[:, 1] >= 0)]
    edges = edges[np.lexsort((edges[:, 2], edges[:, 0]))]
    return edges[:, 0], edges[:, 1], edges[:, 2]


@dataclass
class AlignedPair:
    """A source cluster aligned to a target cluster: `match` = m(C_s, C_t); `matched_types`
    int64 [m]: the source types with a translation in the target cluster, and
    `translations` int64 [m]: for each, its best-ranked translation found there."""
    source: int
    target: int
    match: float
    matched_types: np.ndarray
    translations: np.ndarray

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "match": self.match,
                "matched_types": self.matched_types.tolist(),
                "translations": self.translations.tolist()}


@dataclass
class CalignResult:
    """CALIGN in one direction (or both: `reverse` holds t->s and `score` is the mean).

    aligned_clusters: int64, the source clusters aligned to at least one target cluster.
    source_sizes / target_sizes: int64 [K], distinct types per cluster (0 = empty).
    pairs: every aligned (source, target) pair with its match fraction and types.
    """
    score: float
    direction: str
    aligned_clusters: np.ndarray
    n_source_clusters: int
    pairs: list[AlignedPair]
    source_sizes: np.ndarray
    target_sizes: np.ndarray
    params: dict = field(default_factory=dict)
    reverse: CalignResult | None = None

    def to_dict(self) -> dict:
        out = {"score": self.score, "direction": self.direction,
               "n_aligned": len(self.aligned_clusters),
               "n_source_clusters": self.n_source_clusters,
               "aligned_clusters": self.aligned_clusters.tolist(),
               "pairs": [p.to_dict() for p in self.pairs], "params": self.params}
        if self.reverse is not None:
            out["reverse"] = self.reverse.to_dict()
        return out


def _calign_one_way(src_labels, src_types, tgt_labels, tgt_types, edges, theta_a: float,
                    size_ratio: float, min_types: int, size_rule: str, direction: str,
                    params: dict) -> CalignResult:
    edge_w, edge_t, edge_rank = edges
    s_c, s_w = _unique_pairs(src_labels, src_types)                # source (cluster, type)
    t_c, t_w = _unique_pairs(tgt_labels, tgt_types)                # target (cluster, type)
    src_sizes = np.bincount(s_c, minlength=int(src_labels.max()) + 1)
    tgt_sizes = np.bincount(t_c, minlength=int(tgt_labels.max()) + 1)
    by_type = np.lexsort((t_c, t_w))
    edge, t_cluster = _expand(t_w[by_type], t_c[by_type], edge_t)  # edge's t is in C_t
    pair, hit = _expand(edge_w[edge], np.arange(len(edge)), s_w)   # ... and its w in C_s
    edge, cs, ct = edge[hit], s_c[pair], t_cluster[hit]
    w = edge_w[edge]
    order = np.lexsort((edge_t[edge], edge_rank[edge], w, ct, cs))
    edge, cs, ct, w = edge[order], cs[order], ct[order], w[order]
    first = _group_starts(cs, ct, w)
    edge, cs, ct = edge[first], cs[first], ct[first]               # one per (C_s, C_t, w)
    k_s, k_t = len(src_sizes), len(tgt_sizes)
    matched = np.bincount(cs * k_t + ct, minlength=k_s * k_t).reshape(k_s, k_t)  # matched types
    with np.errstate(divide="ignore", invalid="ignore"):
        match = matched / src_sizes[:, None]
        if size_rule == "two-sided":   # sizes differ by at most 1 - size_ratio of the larger
            sizes_fit = (np.minimum.outer(src_sizes, tgt_sizes)
                         / np.maximum.outer(src_sizes, tgt_sizes)) >= size_ratio
        else:                          # the public code: len(Cs) / len(Ct) > threshold
            sizes_fit = np.divide.outer(src_sizes, tgt_sizes) > size_ratio
    ok = ((src_sizes > 0)[:, None] & (tgt_sizes > 0)[None, :] & (match > theta_a)
          & (src_sizes > min_types)[:, None] & sizes_fit)
    keep = ok[cs, ct]
    edge, cs, ct = edge[keep], cs[keep], ct[keep]                  # sorted by (C_s, C_t, w)
    starts = np.nonzero(_group_starts(cs, ct))[0]
    pairs = [AlignedPair(int(s_), int(t_), float(match[s_, t_]), e_w, e_t)
             for s_, t_, e_w, e_t in zip(cs[starts], ct[starts], np.split(edge_w[edge], starts[1:]),
                                         np.split(edge_t[edge], starts[1:]))] if len(edge) else []
    aligned = np.nonzero(ok.any(1))[0].astype(np.int64)
    n_source = int((src_sizes > 0).sum())
    return CalignResult(len(aligned) / n_source, direction, aligned, n_source, pairs,
                        src_sizes.astype(np.int64), tgt_sizes.astype(np.int64), params)


SIZE_RULES = ("two-sided", "one-sided")


def calign(source_labels, source_types, target_labels, target_types, dictionary, *,
           theta_a: float = 0.9, top_n: int | None = 1, size_ratio: float = 0.6,
           size_rule: str = "two-sided", min_types: int = 0, direction: str = "s->t",
           reverse_dictionary=None) -> CalignResult:
    """CALIGN of source clusters to target clusters (definition in the module docstring).

    source_labels, source_types: int [n_s], cluster and type of each source point;
    target_labels, target_types: int [n_t] likewise. dictionary: source type ->
    ranked target types, as ``int64 [n_source_types, N]`` (-1 padded) or a mapping
    ``{type: [translations...]}``; `top_n` keeps the first N (None: all).
    theta_a: match threshold (strict). size_ratio and size_rule: "two-sided" (the
    default, the paper's words "sizes may not differ by more than 40%"): the smaller
    cluster has at least `size_ratio` of the larger one's types (0.6: 40%), inclusive;
    "one-sided" (the public code's ``len(Cs) / len(Ct) > size_threshold``): the source
    cluster has more than `size_ratio` times the target's types. Sizes count types, not
    points; 0 disables the rule. min_types: a source cluster needs more than this many
    types. direction: "s->t", "t->s" or "both".

    When no source type has a translation in any target cluster the score is 0.0 with
    no aligned pairs. min_types defaults to 0 (every non-empty cluster counts), where
    the original code uses 1; `concept_report` uses 1. A cluster of at most `min_types`
    types can never align but counts in the denominator (the public code's): choose K
    so that clusters hold several types (`concept_report`'s default).
    """
    if direction not in DIRECTIONS:
        raise ConceptError(f"direction={direction!r}: expected one of {DIRECTIONS}")
    if size_rule not in SIZE_RULES:
        raise ConceptError(f"size_rule={size_rule!r}: expected one of {SIZE_RULES}")
    theta_a, size_ratio = _check_fraction("theta_a", theta_a), _check_fraction("size_ratio",
                                                                               size_ratio)
    min_types = check_int("min_types", min_types, least=0, error=ConceptError)
    src_labels, src_types = _labels_types(source_labels, source_types, "source")
    tgt_labels, tgt_types = _labels_types(target_labels, target_types, "target")
    forward = _dictionary_edges(dictionary, top_n)
    params = {"theta_a": float(theta_a), "top_n": top_n, "size_ratio": float(size_ratio),
              "size_rule": size_rule, "min_types": int(min_types)}
    args = (float(theta_a), float(size_ratio), int(min_types), size_rule)
    if direction == "s->t":
        return _calign_one_way(src_labels, src_types, tgt_labels, tgt_types, forward, *args,
                               "s->t", params)
    if reverse_dictionary is not None:
        backward = _dictionary_edges(reverse_dictionary, top_n)
    else:  # transpose: target type -> every source type that lists it among its top N
        w, t, _ = forward
        order = np.lexsort((w, t))
        backward = (t[order], w[order], np.zeros(len(w), dtype=np.int64))
    back = _calign_one_way(tgt_labels, tgt_types, src_labels, src_types, backward, *args,
                           "t->s", params)
    if direction == "t->s":
        return back
    fwd = _calign_one_way(src_labels, src_types, tgt_labels, tgt_types, forward, *args,
                          "s->t", params)
    return CalignResult((fwd.score + back.score) / 2, "both", fwd.aligned_clusters,
                        fwd.n_source_clusters, fwd.pairs, fwd.source_sizes, fwd.target_sizes,
                        params, reverse=back)


@dataclass
class ColapResult:
    """COLAP: `overlapping` int64 cluster ids; `shares` float64 [n_clusters, n_languages]
    (columns in the order of `languages`; NaN for an empty cluster); `sizes` int64
    [n_clusters] (members, or distinct (language, type) pairs at type level)."""
    score: float
    overlapping: np.ndarray
    shares: np.ndarray
    sizes: np.ndarray
    languages: np.ndarray
    level: str
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"score": self.score, "n_overlapping": len(self.overlapping),
                "n_clusters": len(self.sizes), "overlapping": self.overlapping.tolist(),
                "languages": self.languages.tolist(), "level": self.level,
                "shares": [[None if np.isnan(v) else float(v) for v in row]
                           for row in self.shares],
                "sizes": self.sizes.tolist(), "params": self.params}


def colap(labels, languages, *, theta_o: float = 0.3, level: str = "token", types=None,
          include: Sequence[int] | None = None, min_cluster_size: int = 1,
          n_clusters: int | None = None) -> ColapResult:
    """COLAP of one joint clustering (definition in the module docstring).

    labels: int [n], the cluster of each point; languages: int [n], its language.
    theta_o: least share of every language (inclusive, the paper's "at least 30%"; the
    public code's is strict), above 0; at least two languages must be present (with one,
    every cluster would count). The paper computes COLAP for one language pair at a time:
    with L languages pooled, each needs theta_o of every cluster, so L * theta_o > 1 (four
    languages at 0.3) leaves no cluster overlapping. level: "token" (members) or
    "type" (distinct types; needs `types`: int [n]). include: the languages that must
    each supply theta_o (default: every language present; given, distinct languages that
    occur in `languages`); points of other languages are left out. min_cluster_size:
    least size of an overlapping cluster (inclusive).
    n_clusters: K, the denominator (default ``max(labels) + 1``).
    """
    labels = _int_array("labels", labels)
    langs = _int_array("languages", languages)
    if labels.shape != langs.shape or labels.size == 0:
        raise ConceptError(f"labels {labels.shape} and languages {langs.shape}: expected two "
                           "non-empty arrays of the same length")
    if labels.min() < 0:
        raise ConceptError(f"labels contain {labels.min()}: expected cluster ids >= 0")
    if level not in ("token", "type"):
        raise ConceptError(f"level={level!r}: expected 'token' or 'type'")
    theta_o = _check_fraction("theta_o", theta_o)
    if theta_o <= 0:   # every cluster, a single-language one too, would count as shared
        raise ConceptError(f"theta_o={theta_o!r}: expected a share above 0, such as the "
                           "paper's 0.3")
    check_int("min_cluster_size", min_cluster_size, least=0, error=ConceptError)
    if n_clusters is not None:
        check_int("n_clusters", n_clusters, least=1, error=ConceptError)
    k = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    _check_cluster_count(k, len(labels))
    if k <= labels.max():
        raise ConceptError(f"n_clusters={n_clusters}: expected more than the largest label "
                           f"{labels.max()}")
    present = np.unique(langs) if include is None else _included(include, langs)
    if len(present) < 2:   # one language's clusters are all "multilingual"
        raise ConceptError(f"COLAP of language(s) {present.tolist()}: expected the points of at "
                           "least two languages")
    column = _column_of(present, langs)
    keep = column >= 0
    labels, column = labels[keep], column[keep]
    if level == "type":
        if types is None:
            raise ConceptError("level='type' needs types: int [n], the type of each point")
        types = _int_array("types", types)
        if types.shape != langs.shape:
            raise ConceptError(f"types {types.shape}: expected the shape of labels {langs.shape}")
        triples = np.unique(np.stack([labels, column, types[keep]], 1), axis=0)
        labels, column = triples[:, 0], triples[:, 1]
    counts = np.zeros((k, len(present)), dtype=np.int64)
    np.add.at(counts, (labels, column), 1)
    sizes = counts.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = counts / sizes[:, None]
    overlapping = np.nonzero((sizes >= max(int(min_cluster_size), 1))
                             & (shares >= float(theta_o)).all(1))[0].astype(np.int64)
    params = {"theta_o": float(theta_o), "min_cluster_size": int(min_cluster_size),
              "n_clusters": k}
    return ColapResult(len(overlapping) / k, overlapping, shares, sizes, present, level, params)


def _included(include, langs: np.ndarray) -> np.ndarray:
    """COLAP's `include` as int64 [m]: non-empty, distinct, every one present in `langs`."""
    chosen = _int_array("include", list(include))
    if chosen.size == 0:
        raise ConceptError("include=[]: expected at least one language")
    values, counts = np.unique(chosen, return_counts=True)
    if (counts > 1).any():
        raise ConceptError(f"include={chosen.tolist()} lists {values[counts > 1].tolist()} "
                           "more than once: expected distinct languages")
    absent = np.setdiff1d(chosen, langs)
    if absent.size:
        raise ConceptError(f"include={chosen.tolist()}: language(s) {absent.tolist()} have no "
                           f"point; expected languages among {np.unique(langs).tolist()}")
    return chosen


def _column_of(present: np.ndarray, langs: np.ndarray) -> np.ndarray:
    """Column of each language id in `present` (-1 when absent)."""
    order = np.argsort(present)
    pos = np.searchsorted(present[order], langs).clip(max=len(present) - 1)
    found = present[order][pos] == langs
    return np.where(found, order[pos], -1)


def dictionary_from_translation_table(translation_table, source: int, target: int
                                      ) -> np.ndarray:
    """Exact token dictionary of mOthello: source token -> the target tokens of the same square.

    translation_table: int64 [n_languages, 64, K], the tokens of each square in each
    language (-1 padded). Returns int64 [vocab_size, M] (-1 padded), row = source token;
    a token used by several squares (a compositional row token) lists the target
    tokens of all of them, in square order.
    """
    table = _int_array("translation_table", translation_table, ndim=3)
    n_lang = table.shape[0]
    for name, lang in (("source", source), ("target", target)):
        check_int(name, lang, least=0, most=n_lang - 1, error=ConceptError)
    vocab = int(table.max()) + 1
    out: dict[int, list[int]] = {}
    for square in range(table.shape[1]):
        tgt = [int(t) for t in table[target, square] if t >= 0]
        for tok in table[source, square]:
            if tok >= 0:
                row = out.setdefault(int(tok), [])
                row.extend(t for t in tgt if t not in row)
    return _padded(out, vocab)


def dictionary_from_token_square(token_square, token_language, source: int, target: int
                                 ) -> np.ndarray:
    """Exact token dictionary from a token -> square map.

    token_square: int64 [vocab_size] (-1: no single square, e.g. pad or a compositional
    row token). token_language: which languages write each token: the `LanguageSet`
    itself, bool [n_languages, vocab_size] (True where language j writes the token), or
    int64 [vocab_size] (the one language of each token, -1: none; right only without
    anchors, since an anchored square's token is language 0's but every language writes
    it). With the first two it agrees with `dictionary_from_translation_table` on every
    token of one square. Returns int64 [vocab_size, M] (-1 padded): each token `source`
    writes -> the tokens `target` writes for its square, by increasing id.
    """
    squares = _int_array("token_square", token_square)
    written = _written_by(token_language, len(squares))
    for name, lang in (("source", source), ("target", target)):
        check_int(name, lang, least=0, most=len(written) - 1, error=ConceptError)
    out = {}
    for tok in np.nonzero(written[source] & (squares >= 0))[0]:
        out[int(tok)] = np.nonzero(written[target] & (squares == squares[tok]))[0].tolist()
    return _padded(out, len(squares))


def _written_by(token_language, vocab_size: int) -> np.ndarray:
    """bool [n_languages, vocab_size] from a LanguageSet, a bool membership matrix
    [n_languages, vocab_size] or an owner array int [vocab_size]."""
    if hasattr(token_language, "translation_table"):          # a LanguageSet
        table = np.asarray(token_language.translation_table)  # [n_lang, 64, K]
        written = np.zeros((len(table), vocab_size), dtype=bool)
        for j, ids in enumerate(table):
            written[j, ids[ids >= 0]] = True
        return written
    array = np.asarray(token_language)
    if array.dtype == bool and array.ndim == 2 and array.shape[1] == vocab_size:
        return array
    owner = _int_array("token_language", array)
    if owner.shape != (vocab_size,):
        raise ConceptError(f"token_language of shape {array.shape}: expected int64 "
                           f"[{vocab_size}] or bool [n_languages, {vocab_size}] like "
                           "token_square")
    n_languages = int(owner.max()) + 1 if owner.size else 0
    return owner[None, :] == np.arange(max(n_languages, 1))[:, None]


def _padded(rows: Mapping[int, list[int]], n: int) -> np.ndarray:
    width = max((len(v) for v in rows.values()), default=0)
    array = np.full((n, max(width, 1)), -1, dtype=np.int64)
    for key, values in rows.items():
        array[key, :len(values)] = values
    return array


# -- the report of a model ---------------------------------------------------------------

def embedding_geometry(weight: np.ndarray, language_set, names: list[str], *,
                       k_neighbors: int = 50, seed: int = 0, include_self: bool = False) -> dict:
    """
    from .languages import check_language_set

    weight = number_array("weight", weight, error=ConceptError)
    check_language_set(language_set)
    if weight.ndim != 2 or weight.shape[0] != language_set.vocab_size:
        raise ConceptError(f"weight of shape {weight.shape}: expected [vocab_size="
                           f"{language_set.vocab_size}, d_model], the model's input embeddings")
    names = language_set.select_languages(names, least=2, error=ConceptError)
    check_int("k_neighbors", k_neighbors, least=1, error=ConceptError)Geometry of the input embeddings (weight float [vocab_size, d_model]) of the input
    languages `names`; anchored squares' tokens (shared by every language) are left out.
    When a language has fewer than 2 tokens of its own (e.g. every square anchored),
    returns only the token counts and, under "skipped", why.

    A square's vector in a language is the mean embedding of its tokens there.
    "canonical_angles" are the paper's, row-paired (`geometry.row_paired_canonical_angles`:
    the same square in the same row, each language's matrix reduced to its top principal
    components); "model_space_subspace_angles" compare the subspaces of the model space
    the two languages' square vectors span (rows L2-normalised, then transposed:
    [d_model, n_squares]), which a permutation of the squares leaves unchanged.
    """
    from .geometry import (canonical_angles, cross_lingual_neighbors, language_identification,
                           neighbor_overlap, row_paired_canonical_angles,
                           translation_retrieval)

    index = [language_set.language_index(n) for n in names]
    token_language = np.asarray(language_set.token_language)
    token_square = np.asarray(language_set.token_square)
    anchored = np.isin(token_square, list(language_set.anchors))
    tokens = np.nonzero(np.isin(token_language, index) & ~anchored)[0]
    langs = token_language[tokens]
    own = {name: int((langs == j).sum()) for j, name in zip(index, names)}
    if min(own.values()) < 2:
        return {"languages": names, "n_tokens": int(len(tokens)), "tokens_per_language": own,
                "skipped": "embedding geometry needs at least 2 tokens of its own in every "
                           f"language (anchored squares' tokens are shared); got {own}"}
    smallest = min(own.values())
    k = min(k_neighbors, len(tokens) - 1)
    out: dict = {"languages": names, "n_tokens": int(len(tokens)),
                 "language_identification": language_identification(
                     weight[tokens], langs, n_folds=max(2, min(10, smallest)),
                     seed=seed).to_dict(),
                 "cross_lingual_neighbors": {
                     "k": k, "include_self": include_self,
                     "mean_languages": cross_lingual_neighbors(weight[tokens], langs, k=k,
                                                               include_self=include_self)}}
    table = np.asarray(language_set.translation_table)          # [n_lang, 64, K]
    squares = [s for s in range(64) if (table[:, s, 0] >= 0).all()
               and s not in set(language_set.anchors)]
    ids = table[:, squares]                                      # [n_lang, S, K]
    # float64 throughout: float32 rounding would hide the rank of compositional squares
    vectors = np.where((ids >= 0)[..., None], weight.astype(np.float64)[ids.clip(min=0)],
                       0.0).sum(2) / (ids >= 0).sum(2, keepdims=True)   # [n_lang, S, d_model]
    retrieval, angles, subspaces, overlap = {}, {}, {}, {}
    for a, name_a in zip(index, names):
        for b, name_b in zip(index, names):
            if a == b:
                continue
            src = tokens[(langs == a) & (token_square[tokens] >= 0)]
            tgt = tokens[(langs == b) & (token_square[tokens] >= 0)]
            if len(src) and len(tgt) and np.isin(token_square[src], token_square[tgt]).any():
                retrieval[f"{name_a}->{name_b}"] = translation_retrieval(
                    weight[src], weight[tgt], token_square[src], token_square[tgt], k=1)
            if a < b and len(squares) > 5:
                ea, eb = (vectors[j] / np.linalg.norm(vectors[j], axis=1, keepdims=True)
                          for j in (a, b))
                pair = f"{name_a}-{name_b}"
                angles[pair] = row_paired_canonical_angles(ea, eb, seed=seed).to_dict()
                subspaces[pair] = canonical_angles(ea.T, eb.T, normalize=False,
                                                   seed=seed).to_dict()
                overlap[pair] = neighbor_overlap(ea, eb, k=5)
    out.update(translation_retrieval_at_1=retrieval, canonical_angles=angles,
               model_space_subspace_angles=subspaces, square_neighbor_overlap_at_5=overlap)
    return out


def _plot_curves(layers: list, curves: dict[str, list], path) -> None:
    fig, ax = new_figure(figsize=(6, 4), dpi=120)
    for name, values in curves.items():
        ax.plot(layers, [np.nan if v is None else v for v in values], marker="o", label=name)
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


COMPARED = (("calign_mean", "CALIGN (mean over pairs)"), ("colap", "COLAP (mean over pairs)"),
            ("unification", "unification score"))


def compare_reports(reports: Mapping[str, ConceptReport | dict], path=None) -> dict:
    """Concept metrics of several reports (`ConceptReport`, or its ``to_dict()`` as
    concepts.json holds it) side by side: two checkpoints of one run (base and fine-tuned,
    early and late), by layer: {"layers", "metrics": {metric: {report name: [value per
    layer]}}, "embedding_geometry": {name: ...}}; with `path`, a figure of one panel per
    metric, a line per report. The reports must cover the same layers and languages."""
    if not isinstance(reports, Mapping) or not all(
            isinstance(r, (ConceptReport, Mapping)) for r in reports.values()):
        raise ConceptError(f"reports={reports!r}: expected a dict name -> ConceptReport (or "
                           "its to_dict())")
    reports = {name: r.to_dict() if isinstance(r, ConceptReport) else r
               for name, r in reports.items()}
    if len(reports) < 2:
        raise ConceptError(f"{len(reports)} report(s): expected two or more to compare")
    for name, report in reports.items():
        missing = [k for k in ("layers", "languages", "per_layer") if k not in report]
        if missing or any(not isinstance(row, Mapping) or not {"calign_mean", "colap",
                                                                "unification"} <= set(row)
                          for row in report.get("per_layer", [])):
            raise ConceptError(f"report {name!r} lacks {missing or 'per-layer metrics'}: "
                               "expected a ConceptReport or its to_dict()")
    first = next(iter(reports.values()))
    for name, report in reports.items():
        if report["layers"] != first["layers"] or report["languages"] != first["languages"]:
            raise ConceptError(f"report {name!r} covers layers {report['layers']} of "
                               f"{report['languages']}: expected {first['layers']} of "
                               f"{first['languages']}, as the others")

    def value(row, metric):
        return row["unification"]["score"] if metric == "unification" else row[metric]
    metrics = {metric: {name: [value(row, metric) for row in report["per_layer"]]
                        for name, report in reports.items()} for metric, _ in COMPARED}
    out = {"layers": first["layers"], "languages": first["languages"], "metrics": metrics,
           "embedding_geometry": {name: report.get("embedding_geometry")
                                  for name, report in reports.items()}}
    if path is not None:
        fig, axes = new_figure(figsize=(4 * len(COMPARED), 3.6), dpi=110, ncols=len(COMPARED))
        for ax, (metric, title) in zip(axes, COMPARED):
            for style, (name, values) in zip(itertools.cycle(("-", "--", ":", "-.")),
                                             metrics[metric].items()):
                ax.plot(first["layers"], values, style, marker="o", label=name)
            ax.set(title=title, xlabel="layer")
            ax.set_xticks(first["layers"])
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        save_figure(fig, path)
    return out


def default_kmeans(seed: int = 0, *, n_clusters: int = 20, n_init: int = 10,
                   max_iter: int = 100):
    """The report's k-means: K 20 (about three of the 60 squares a cluster, so that
    clusters can hold the more than `min_types` types an alignment needs; at K=100 most
    clusters hold one square and two identical languages scored 0.5-0.6; the paper's
    500-1500 are for vocabularies of thousands of words), the authors' 10 k-means++ starts,
    100 Lloyd iterations each."""
    from .kmeans import KMeans

    return KMeans(n_clusters, n_init=n_init, max_iter=max_iter, seed=seed)


def check_report_params(*, kmeans=None, theta_a=0.9, top_n=1, size_ratio=0.6, min_types=1,
                        theta_o=0.3, k_neighbors=50, max_per_type=None,
                        size_rule="two-sided") -> None:
    """The checks of `concept_metrics`' and `concept_report`'s parameters (also run by the
    CLI before it loads anything): a ConceptError naming the first bad one."""
    for name, value in (("theta_a", theta_a), ("size_ratio", size_ratio),
                        ("theta_o", theta_o)):
        _check_fraction(name, value)
    if theta_o <= 0:
        raise ConceptError(f"theta_o={theta_o!r}: expected a share above 0, such as the "
                           "paper's 0.3")
    if size_rule not in SIZE_RULES:
        raise ConceptError(f"size_rule={size_rule!r}: expected one of {SIZE_RULES}")
    _check_top_n(top_n)
    check_int("min_types", min_types, least=0, error=ConceptError)
    check_int("k_neighbors", k_neighbors, least=1, error=ConceptError)
    if max_per_type is not None:
        check_int("max_per_type", max_per_type, least=1, error=ConceptError)
    _fresh_kmeans(kmeans, 0)


def _fresh_kmeans(kmeans, seed: int):
    """An unfitted copy of `kmeans` (an estimator with get_params and fit_predict; None:
    `default_kmeans(seed)`), its parameters checked."""
    from sklearn.base import clone

    if kmeans is None:
        return default_kmeans(seed)
    if isinstance(kmeans, type) or not all(callable(getattr(kmeans, m, None))
                                           for m in ("get_params", "fit_predict")):
        raise ConceptError(f"kmeans={kmeans!r}: expected an estimator with get_params and "
                           "fit_predict, such as KMeans(20, n_init=10)")
    copy = clone(kmeans)
    if "n_clusters" not in copy.get_params():
        raise ConceptError(f"kmeans={kmeans!r} has no n_clusters: expected a clusterer into a "
                           "fixed number of clusters (the metrics count them)")
    if callable(getattr(copy, "check_params", None)):
        copy.check_params()
    return copy


def cap_per_type(types, max_per_type: int | None, seed: int = 0) -> np.ndarray:
    """Indices (sorted, int64) of at most `max_per_type` occurrences of each type of `types`
    (int [n]), chosen at random (seeded): the original code's cap on a word type's
    occurrences before clustering (its ``maxfreq``), so that frequent types do not fill
    the clusters. None keeps every occurrence."""
    types = _int_array("types", types)
    if max_per_type is None:
        return np.arange(len(types))
    max_per_type = check_int("max_per_type", max_per_type, least=1, error=ConceptError)
    seed = check_int("seed", seed, least=0, error=ConceptError)
    order = np.random.default_rng(seed).permutation(len(types))
    by_type = order[np.argsort(types[order], kind="stable")]     # random order within a type
    sorted_types = types[by_type]
    rank = np.arange(len(types)) - np.searchsorted(sorted_types, sorted_types)
    return np.sort(by_type[rank < max_per_type])


@dataclass(frozen=True)
class PairOverlap:
    """COLAP of one joint clustering of some languages, at token and type level."""
    token: ColapResult
    type: ColapResult

    def to_dict(self) -> dict:
        return {"token": self.token.score, "type": self.type.score,
                "detail": self.token.to_dict()}


@dataclass(frozen=True)
class LayerConcepts:
    """The concept metrics of one layer: CALIGN of every ordered language pair
    ("a->b"), COLAP of every unordered pair ("a-b"), the unification score, and, when
    asked, the COLAP of all languages clustered together."""
    layer: object
    hook: str
    calign: dict
    colap: dict
    unification: object
    pooled_colap: PairOverlap | None = None

    @property
    def calign_mean(self) -> float:
        return float(np.mean([r.score for r in self.calign.values()]))

    @property
    def colap_mean(self) -> float:
        return float(np.mean([r.token.score for r in self.colap.values()]))

    @property
    def colap_type_mean(self) -> float:
        return float(np.mean([r.type.score for r in self.colap.values()]))

    def to_dict(self) -> dict:
        row = {"layer": self.layer, "hook": self.hook, "calign_mean": self.calign_mean,
               "calign": {k: r.to_dict() for k, r in self.calign.items()},
               "colap": self.colap_mean, "colap_type_level": self.colap_type_mean,
               "colap_pairs": {k: r.to_dict() for k, r in self.colap.items()},
               "unification": self.unification.to_dict()}
        if self.pooled_colap is not None:
            row["colap_pooled"] = {**self.pooled_colap.to_dict(),
                                   "ceiling": "0 whenever len(languages) * theta_o > 1: "
                                              "every language needs theta_o of a cluster"}
        return row


@dataclass(frozen=True)
class ConceptReport:
    """CALIGN, COLAP and unification per layer (`per_layer`, one `LayerConcepts` each),
    and the geometry of the input embeddings when a model was given."""
    languages: tuple[str, ...]
    per_layer: tuple[LayerConcepts, ...]
    n_games: int
    n_positions: int
    n_clustered_points: dict
    params: dict
    embedding_geometry: dict | None = None

    @property
    def layers(self) -> list:
        return [row.layer for row in self.per_layer]

    def __getitem__(self, layer) -> LayerConcepts:
        for row in self.per_layer:
            if row.layer == layer or row.hook == layer:
                return row
        raise KeyError(f"layer {layer!r} not in the report; it has {self.layers}")

    def to_dict(self) -> dict:
        """JSON-ready: concepts.json."""
        return {"languages": list(self.languages), "layers": self.layers,
                "hooks": [row.hook for row in self.per_layer], "n_games": self.n_games,
                "n_positions": self.n_positions, "n_clustered_points": self.n_clustered_points,
                "params": self.params, "per_layer": [row.to_dict() for row in self.per_layer],
                "embedding_geometry": self.embedding_geometry}

    def write(self, out_dir) -> Path:
        """concepts.json and curves.png (the metrics by layer) in `out_dir`."""
        from .storage import atomic_write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _plot_curves(self.layers, {
            "CALIGN (mean over pairs)": [r.calign_mean for r in self.per_layer],
            "COLAP (mean over pairs)": [r.colap_mean for r in self.per_layer],
            "unification": [r.unification.score for r in self.per_layer]},
            out / "curves.png")
        atomic_write_json(out / "concepts.json", self.to_dict())
        return out / "concepts.json"


def concept_metrics(collection, *, layers=None, languages=None, kmeans=None,
                    max_per_type: int | None = 15, theta_a: float = 0.9, top_n: int = 1,
                    size_ratio: float = 0.6, size_rule: str = "two-sided", min_types: int = 1,
                    theta_o: float = 0.3, pooled_colap: bool = False, seed: int = 0,
                    progress: bool = False, out_dir=None,
                    embedding_geometry: dict | None = None) -> ConceptReport:
    """CALIGN, COLAP and unification at each of `layers` (default all collected) of a
    collection of parallel positions (`activations.ParallelActivations`, from any
    model) in `languages` (default all; at least two).

    Points are the hidden states at each position; a point's type is the square of its
    move (so the dictionary is exact: the same square), its item the position. Per layer:
    k-means (`kmeans`, an estimator cloned for every clustering; default
    `default_kmeans(seed)`) of each language for CALIGN of every ordered pair, a joint
    k-means of each pair for COLAP (token and type level: the paper's one pair at a time;
    `pooled_colap` adds one clustering of all languages, whose score is 0 whenever
    L * theta_o > 1), and the unification score on every point. With `out_dir`: writes
    concepts.json, curves.png and similarity_layer{l}.png there; `embedding_geometry`
    (from `concept_report`) goes into the report as it is.

    Defaults, and where they differ from the authors' code (qcri/multilingual-latent-
    concepts): `max_per_type` 15 occurrences of a square per language before clustering
    (theirs: ``maxfreq`` 15); `min_types` 1 (theirs); the two-sided size rule (the paper's
    words; theirs is one-sided, `size_rule`); the k-means of `default_kmeans`. Every
    parameter is checked before any clustering.
    """
    import torch

    from .progress import progress_bar
    from .unification import plot_similarity_matrix, similarity_matrix, unification_score

    from .activations import check_collection

    check_collection(collection)
    check_report_params(kmeans=kmeans, theta_a=theta_a, top_n=top_n, size_ratio=size_ratio,
                        min_types=min_types, theta_o=theta_o, max_per_type=max_per_type,
                        size_rule=size_rule)
    check_int("seed", seed, least=0, error=ConceptError)
    if isinstance(languages, str):
        languages = [languages]
    if len(collection.languages if languages is None else languages) < 2:
        raise ConceptError(f"languages={list(languages or collection.languages)}: expected "
                           "at least two languages to compare")
    try:
        collection = collection.select(layers, languages)
    except MothelloError as exc:
        raise ConceptError(str(exc)) from None
    names = list(collection.languages)
    template = _fresh_kmeans(kmeans, seed)   # checked; each clustering clones its own
    n_clusters = template.get_params()["n_clusters"]
    if n_clusters > len(collection):
        raise ConceptError(f"n_clusters={n_clusters}: expected at most the {len(collection)} "
                           "positions of the activations (the points of one language)")
    types = collection.square
    # the points clustered: the same occurrences in every language (the games are parallel)
    kept = cap_per_type(types, max_per_type, seed=seed)
    if len(kept) < n_clusters:
        raise ConceptError(f"n_clusters={n_clusters} with max_per_type={max_per_type}: only "
                           f"{len(kept)} points of a language are clustered; expected fewer "
                           "clusters, a larger cap or more games")
    kept_types = types[kept]
    identity = np.arange(64)[:, None]
    params = dict(kmeans={"class": type(template).__name__,
                          **{k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
                             for k, v in template.get_params().items()}},
                  n_clusters=n_clusters,
                  max_per_type=max_per_type, theta_a=theta_a, top_n=top_n,
                  size_ratio=size_ratio, size_rule=size_rule, min_types=min_types,
                  theta_o=theta_o, pooled_colap=pooled_colap, seed=seed)

    def cluster(points) -> np.ndarray:
        return _fresh_kmeans(kmeans, seed).fit_predict(points)

    def overlap(points: list[np.ndarray]) -> PairOverlap:
        """COLAP of one joint clustering of the given languages' points."""
        labels = cluster(np.concatenate(points))
        langs = np.repeat(np.arange(len(points)), [len(p) for p in points])
        return PairOverlap(
            colap(labels, langs, theta_o=theta_o, n_clusters=n_clusters),
            colap(labels, langs, theta_o=theta_o, level="type",
                  types=np.tile(kept_types, len(points)), n_clusters=n_clusters))

    out_path = None if out_dir is None else Path(out_dir)
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
    rows = []
    for layer in progress_bar(progress, collection.layers, desc="concepts", leave=False):
        hidden = [collection.hidden[layer][name] for name in names]
        points = [h[kept] for h in hidden]
        labels = [cluster(x) for x in points]
        calign_pairs, colap_pairs = {}, {}
        for a in range(len(names)):
            for b in range(len(names)):
                if a != b:
                    calign_pairs[f"{names[a]}->{names[b]}"] = calign(
                        labels[a], kept_types, labels[b], kept_types, identity,
                        theta_a=theta_a, top_n=top_n, size_ratio=size_ratio,
                        size_rule=size_rule, min_types=min_types)
                if a < b:
                    colap_pairs[f"{names[a]}-{names[b]}"] = overlap([points[a], points[b]])
        joint, items, lang_ids = collection.stacked(layer)
        unification = unification_score(torch.from_numpy(joint), items, lang_ids)
        if out_path is not None:
            plot_similarity_matrix(similarity_matrix(joint, items, lang_ids, seed=seed),
                                   out_path / f"similarity_layer{layer}.png",
                                   title=f"layer {layer}: (language, item) cosine similarity",
                                   language_names=names)
        rows.append(LayerConcepts(layer, collection.hooks[layer], calign_pairs, colap_pairs,
                                  unification, overlap(points) if pooled_colap else None))
    report = ConceptReport(tuple(names), tuple(rows), int(len(np.unique(collection.game))),
                           len(collection), {name: int(len(kept)) for name in names}, params,
                           embedding_geometry)
    if out_path is not None:
        report.write(out_path)
    return report


def concept_report(model, language_set, games, *, layers=None, languages=None, kmeans=None,
                   max_per_type: int | None = 15, theta_a: float = 0.9, top_n: int = 1,
                   size_ratio: float = 0.6, size_rule: str = "two-sided", min_types: int = 1,
                   theta_o: float = 0.3, pooled_colap: bool = False, k_neighbors: int = 50,
                   include_self: bool = False, seed: int = 0, batch_size: int = 256,
                   progress: bool = True, out_dir=None) -> ConceptReport:
    """`concept_metrics` of a mOthello model's hidden states on parallel `games` (int8
    [n, 60], written in every language of `languages`, default all inputs) at `layers`
    (see `activations.resolve_layers`; default 1..n_layers), collected once, and the
    geometry of its input embeddings (`embedding_geometry`: `k_neighbors` 50, the paper's,
    capped at the number of tokens minus one; the token itself excluded unless
    `include_self`, as the authors' code includes it). The other parameters are
    `concept_metrics`'; every one is checked before any activation is collected."""
    from .activations import MAX_MOVES, collect_parallel, resolve_layers
    from .model import unwrap

    gpt = unwrap(model)
    pairs = resolve_layers(model, range(1, gpt.config.n_layers + 1) if layers is None else layers)
    from .languages import check_language_set

    names = check_language_set(language_set).select_languages(languages, least=2,
                                                              error=ConceptError)
    check_report_params(kmeans=kmeans, theta_a=theta_a, top_n=top_n, size_ratio=size_ratio,
                        min_types=min_types, theta_o=theta_o, k_neighbors=k_neighbors,
                        max_per_type=max_per_type, size_rule=size_rule)
    games = np.asarray(games)
    n_moves = int(np.minimum((games >= 0).sum(1), MAX_MOVES).sum()) if games.ndim == 2 else None
    n_clusters = _fresh_kmeans(kmeans, seed).get_params()["n_clusters"]
    if n_moves is not None and len(games) and n_clusters > n_moves:
        raise ConceptError(f"n_clusters={n_clusters}: expected at most the {n_moves} moves of "
                           "the games (the points of one language)")
    collection = collect_parallel(model, language_set, games, languages=names,
                                  layers=[layer for layer, _ in pairs], batch_size=batch_size,
                                  progress=progress)
    weight = gpt.embed.weight.detach().float().cpu().numpy()
    geometry = embedding_geometry(weight, language_set, names, k_neighbors=k_neighbors,
                                  include_self=include_self, seed=seed)
    return concept_metrics(collection, kmeans=kmeans, max_per_type=max_per_type,
                           theta_a=theta_a, top_n=top_n, size_ratio=size_ratio,
                           size_rule=size_rule, min_types=min_types, theta_o=theta_o,
                           pooled_colap=pooled_colap, seed=seed, progress=progress,
                           out_dir=out_dir, embedding_geometry=geometry)
