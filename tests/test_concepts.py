"""CALIGN and COLAP on hand-built cluster assignments, scores worked out by hand,
and against slow set-based oracles written from the definitions."""
import numpy as np
import pytest

from mothello_fast.concepts import (calign, colap, concept_report, dictionary_from_token_square,
                                    dictionary_from_translation_table)
from mothello_fast.errors import ConceptError
from mothello_fast.kmeans import KMeans

IDENTITY = np.arange(20)[:, None]


def clusters(*groups):
    """Labels and types from clusters given as lists of types: cluster i = groups[i]."""
    labels = [c for c, group in enumerate(groups) for _ in group]
    types = [t for group in groups for t in group]
    return np.array(labels), np.array(types)


# Source: S0 = {0,1,2,3}, S1 = {4,5}, S2 = {6}.  Target: T0 = {0,1,2}, T1 = {4,5,9}, T2 = {6,7}.
SOURCE = clusters([0, 1, 2, 3], [4, 5], [6])
TARGET = clusters([0, 1, 2], [4, 5, 9], [6, 7])


def run(theta_a=0.5, size_ratio=0.0, min_types=0, **kw):
    return calign(*SOURCE, *TARGET, IDENTITY, theta_a=theta_a, size_ratio=size_ratio,
                  min_types=min_types, **kw)


def pairs(result):
    return {(p.source, p.target) for p in result.pairs}


def test_calign_score_worked_by_hand():
    # m(S0,T0) = 3/4, m(S1,T1) = 2/2, m(S2,T2) = 1/1; every other pair 0.
    # theta_a = 0.8 keeps S1~T1 and S2~T2: CALIGN = 2/3.
    result = run(theta_a=0.8)
    assert result.score == pytest.approx(2 / 3)
    assert pairs(result) == {(1, 1), (2, 2)}


def test_calign_match_exactly_at_theta_a_is_not_aligned():
    assert (0, 0) not in pairs(run(theta_a=0.75))      # m = 3/4, strict >
    assert (0, 0) in pairs(run(theta_a=0.7499))


def test_calign_size_ratio_exactly_at_the_boundary_is_aligned():
    # sizes in types: S0/T0 = 3/4 = 0.75, S1/T1 = 2/3, S2/T2 = 1/2 (inclusive >=).
    assert pairs(run(size_ratio=0.75)) == {(0, 0)}
    assert pairs(run(size_ratio=2 / 3)) == {(0, 0), (1, 1)}
    assert pairs(run(size_ratio=0.5)) == {(0, 0), (1, 1), (2, 2)}
    assert pairs(run(size_ratio=0.7501)) == set()


def test_calign_min_types_is_strict():
    assert pairs(run(min_types=1)) == {(0, 0), (1, 1)}   # S2 has 1 type: not more than 1
    assert pairs(run(min_types=2)) == {(0, 0)}           # S1 has 2 types
    assert run(min_types=4).score == 0.0                 # S0 has 4 types


def test_calign_counts_types_not_occurrences():
    # S0 with type 3 (the unmatched one) seen 5 times still has m(S0,T0) = 3/4.
    labels = np.r_[SOURCE[0], [0] * 4]
    types = np.r_[SOURCE[1], [3] * 4]
    result = calign(labels, types, *TARGET, IDENTITY, theta_a=0.7, size_ratio=0.0)
    match = {(p.source, p.target): p.match for p in result.pairs}
    assert match[(0, 0)] == 0.75


def test_calign_denominator_is_the_non_empty_source_clusters():
    # Cluster ids 0 and 5 only: ids 1..4 are no concepts. S5 = {8} matches nothing.
    result = calign([0, 0, 5], [0, 1, 8], [0, 0], [0, 1], IDENTITY, theta_a=0.5, size_ratio=0.0)
    assert result.n_source_clusters == 2
    assert result.score == 0.5


def test_calign_top_n_translations():
    # Type 0's ranked translations: 10 (wrong), then 0 (right).
    dictionary = {0: [10, 0], 1: [1]}
    src = ([0, 0], [0, 1])
    tgt = ([0, 0], [0, 1])
    top1 = calign(*src, *tgt, dictionary, top_n=1, theta_a=0.5)
    top2 = calign(*src, *tgt, dictionary, top_n=2, theta_a=0.5)
    assert [p.match for p in top1.pairs] == []          # m = 1/2, not > 1/2
    assert [p.match for p in top2.pairs] == [1.0]


def test_calign_pairs_carry_matched_types_and_their_translations():
    dictionary = {0: [10, 20], 1: [21], 2: [30]}   # type 2 has no translation in the target
    result = calign([0, 0, 0], [0, 1, 2], [0, 0, 0], [20, 21, 10], dictionary,
                    top_n=2, theta_a=0.5)
    (pair,) = result.pairs
    assert pair.match == pytest.approx(2 / 3)
    assert pair.matched_types.tolist() == [0, 1]
    assert pair.translations.tolist() == [10, 21]   # best-ranked translation present


def test_calign_t_to_s_swaps_roles_and_transposes_the_dictionary():
    # t->s: T0 = {0,1,2} vs S0 = {0,1,2,3}: m = 3/3; T1 = {4,5,9} vs S1: 2/3;
    # T2 = {6,7} vs S2: 1/2. theta_a = 0.6: T0 and T1 aligned, CALIGN = 2/3.
    back = run(theta_a=0.6, direction="t->s")
    assert back.direction == "t->s"
    assert pairs(back) == {(0, 0), (1, 1)}
    assert back.score == pytest.approx(2 / 3)


def test_calign_both_directions_scores_their_mean():
    # s->t at 0.6: S0 (3/4), S1, S2 all aligned = 1; t->s = 2/3; mean 5/6.
    both = run(theta_a=0.6, direction="both")
    assert both.score == pytest.approx((1 + 2 / 3) / 2)
    assert both.reverse.score == pytest.approx(2 / 3)


def _calign_oracle(sl, st, tl, tt, dictionary, theta_a, size_ratio, min_types):
    """Slow CALIGN from the definition, with Python sets."""
    src = {c: {w for l, w in zip(sl, st) if l == c} for c in set(sl)}
    tgt = {c: {w for l, w in zip(tl, tt) if l == c} for c in set(tl)}
    aligned = set()
    for cs, words in src.items():
        for ct, twords in tgt.items():
            m = sum(any(t in twords for t in dictionary.get(w, [])) for w in words) / len(words)
            ratio = min(len(words), len(twords)) / max(len(words), len(twords))
            if m > theta_a and len(words) > min_types and ratio >= size_ratio:
                aligned.add(cs)
    return len(aligned) / len(src)


def test_calign_matches_a_set_based_oracle_on_random_clusters():
    rng = np.random.default_rng(0)
    dictionary = {w: [int(t) for t in rng.choice(12, 2, replace=False)] for w in range(12)}
    for trial in range(20):
        sl, st = rng.integers(0, 6, 40), rng.integers(0, 12, 40)
        tl, tt = rng.integers(0, 5, 40), rng.integers(0, 12, 40)
        theta, ratio = float(rng.choice([0.2, 0.4, 0.5])), float(rng.choice([0.0, 0.6]))
        min_types = trial % 3
        got = calign(sl, st, tl, tt, dictionary, top_n=2, theta_a=theta, size_ratio=ratio,
                     min_types=min_types).score
        assert got == pytest.approx(_calign_oracle(sl.tolist(), st.tolist(), tl.tolist(),
                                                   tt.tolist(), dictionary, theta, ratio,
                                                   min_types))


def test_calign_types_missing_from_the_dictionary_have_no_translation():
    # Types 0 and 1 with a dictionary listing only type 0: m = 1/2.
    result = calign([0, 0], [0, 1], [0, 0], [0, 1], {0: [0]}, theta_a=0.49)
    assert [p.match for p in result.pairs] == [0.5]


def test_calign_unknown_direction_is_refused():
    with pytest.raises(ConceptError, match="direction='s<-t'"):
        run(direction="s<-t")


@pytest.mark.parametrize("dictionary", [np.arange(3)[:, None] + 10, {}, -np.ones((3, 1), int)],
                         ids=["no translation in the target", "empty mapping", "all -1"])
def test_calign_without_any_translation_in_the_target_scores_zero(dictionary):
    result = calign([0, 0, 1], [0, 1, 2], [0, 1], [0, 1], dictionary, theta_a=0.5)
    assert result.score == 0.0
    assert result.pairs == [] and result.aligned_clusters.tolist() == []


def test_calign_negative_min_types_is_refused():
    with pytest.raises(ConceptError, match="min_types=-1"):
        run(min_types=-1)


# --- COLAP -------------------------------------------------------------------------------

def test_colap_score_worked_by_hand():
    # c0: languages 0,0,0,1 -> shares 3/4, 1/4; c1: 0,1 -> 1/2, 1/2; c2: 1,1 -> 0, 1.
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    langs = [0, 0, 0, 1, 0, 1, 1, 1]
    result = colap(labels, langs, theta_o=0.3)
    assert result.overlapping.tolist() == [1]
    assert result.score == pytest.approx(1 / 3)
    assert result.shares.tolist() == [[0.75, 0.25], [0.5, 0.5], [0.0, 1.0]]


def test_colap_share_exactly_at_theta_o_is_overlapping():
    labels, langs = [0, 0, 0, 0], [0, 0, 0, 1]      # share of language 1 = 1/4
    assert colap(labels, langs, theta_o=0.25).score == 1.0
    assert colap(labels, langs, theta_o=0.2501).score == 0.0


def test_colap_share_of_three_tenths_at_theta_three_tenths_is_overlapping():
    labels, langs = [0] * 10, [0] * 7 + [1] * 3     # 3/10 >= 0.3 as written
    assert colap(labels, langs, theta_o=0.3).score == 1.0


def test_colap_every_language_must_reach_theta_o():
    # Three languages: 4/8, 3/8, 1/8; theta 1/8 passes all, 0.2 fails language 2.
    labels, langs = [0] * 8, [0] * 4 + [1] * 3 + [2]
    assert colap(labels, langs, theta_o=0.125).score == 1.0
    assert colap(labels, langs, theta_o=0.2).score == 0.0


def test_colap_type_level_shares_count_distinct_types():
    # Language 0: type 1 three times; language 1: types 2 and 3.
    # Token shares 3/5, 2/5; type shares 1/3, 2/3.
    labels, langs, types = [0] * 5, [0, 0, 0, 1, 1], [1, 1, 1, 2, 3]
    token = colap(labels, langs, theta_o=0.35)
    typed = colap(labels, langs, theta_o=0.35, level="type", types=types)
    assert token.shares.tolist() == [[0.6, 0.4]]
    assert typed.shares[0].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert token.score == 1.0 and typed.score == 0.0


def test_colap_min_cluster_size_is_inclusive():
    labels, langs = [0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1]   # sizes 2 and 4, both 50/50
    assert colap(labels, langs, min_cluster_size=2).overlapping.tolist() == [0, 1]
    assert colap(labels, langs, min_cluster_size=3).overlapping.tolist() == [1]


def test_colap_empty_clusters_count_in_the_denominator():
    result = colap([0, 0], [0, 1], n_clusters=4)
    assert result.score == 0.25


def test_colap_include_leaves_other_languages_out():
    # Cluster 0: languages 0, 1, 2 once each; with include=(0, 1) the shares are 1/2, 1/2.
    result = colap([0, 0, 0], [0, 1, 2], theta_o=0.5, include=[0, 1])
    assert result.shares.tolist() == [[0.5, 0.5]]
    assert result.score == 1.0


def test_colap_matches_a_counting_oracle_on_random_clusters():
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels, langs = rng.integers(0, 8, 60), rng.integers(0, 3, 60)
        theta = float(rng.choice([0.1, 0.2, 0.3]))
        expected = 0
        for c in range(8):
            members = [l for l, c2 in zip(langs.tolist(), labels.tolist()) if c2 == c]
            if members and all(members.count(l) / len(members) >= theta for l in range(3)):
                expected += 1
        assert colap(labels, langs, theta_o=theta, n_clusters=8).score == expected / 8


@pytest.mark.parametrize("include, message", [([0, 0, 1], r"lists \[0\] more than once"),
                                              ([], r"include=\[\]"),
                                              ([0, 5], r"language\(s\) \[5\] have no point")])
def test_colap_include_must_be_distinct_languages_that_occur(include, message):
    with pytest.raises(ConceptError, match=message):
        colap([0, 0, 1, 1], [0, 1, 0, 1], include=include)


@pytest.mark.parametrize("langs, theta_o, message", [
    ([0, 0, 0], 0.3, r"language\(s\) \[0\]: expected the points of at least two"),
    ([0, 1, 0], 0.0, "theta_o=0.0: expected a share above 0")])
def test_colap_of_one_language_or_a_zero_share_is_refused(langs, theta_o, message):
    # with one language every cluster, and with theta_o 0 any cluster, counted as shared
    with pytest.raises(ConceptError, match=message):
        colap([0, 0, 1], langs, theta_o=theta_o)


def test_the_one_sided_size_rule_is_the_public_code_s():
    # source clusters of 2 types against a target cluster of 4 (2/4 = 0.5 <= 0.6) and of
    # 4 against 2 (4/2 = 2 > 0.6): the two-sided rule refuses both, the one-sided the first
    dictionary = np.arange(8)[:, None]
    small = calign([0, 0], [0, 1], [0, 0, 0, 0], [0, 1, 2, 3], dictionary, theta_a=0.5)
    big = calign([0, 0, 0, 0], [0, 1, 2, 3], [0, 0], [0, 1], dictionary, theta_a=0.4)
    assert small.score == 0.0 and big.score == 0.0
    assert calign([0, 0], [0, 1], [0, 0, 0, 0], [0, 1, 2, 3], dictionary, theta_a=0.5,
                  size_rule="one-sided").score == 0.0
    assert calign([0, 0, 0, 0], [0, 1, 2, 3], [0, 0], [0, 1], dictionary, theta_a=0.4,
                  size_rule="one-sided").score == 1.0
    with pytest.raises(ConceptError, match="size_rule='both'"):
        calign([0], [0], [0], [0], dictionary, size_rule="both")


def test_colap_type_level_without_types_is_refused():
    with pytest.raises(ConceptError, match="types"):
        colap([0, 0], [0, 1], level="type")


# --- dictionaries ------------------------------------------------------------------------

def test_dictionary_from_translation_table_maps_tokens_of_the_same_square():
    table = np.full((2, 64, 2), -1)
    table[0, 19] = [1, -1]          # language 0: square 19 -> token 1
    table[1, 19] = [5, 6]           # language 1: square 19 -> tokens 5, 6 (split)
    table[0, 20] = [2, -1]
    table[1, 20] = [7, -1]
    d = dictionary_from_translation_table(table, 0, 1)
    assert d[1].tolist() == [5, 6]
    assert d[2].tolist() == [7, -1]
    assert d[0].tolist() == [-1, -1]
    back = dictionary_from_translation_table(table, 1, 0)
    assert back[5].tolist() == [1] and back[6].tolist() == [1] and back[7].tolist() == [2]


def test_dictionary_from_token_square_maps_tokens_of_the_same_square():
    token_square = np.array([-1, 19, 20, 19, 20, 20])
    token_language = np.array([-1, 0, 0, 1, 1, 1])
    d = dictionary_from_token_square(token_square, token_language, 0, 1)
    assert d[1].tolist() == [3, -1]
    assert d[2].tolist() == [4, 5]


def test_exact_dictionary_gives_full_alignment_for_identical_clusterings():
    # The same squares clustered alike in two languages with disjoint token ids.
    table = np.full((2, 64, 1), -1)
    table[0, :60, 0] = np.arange(1, 61)
    table[1, :60, 0] = np.arange(61, 121)
    squares = np.arange(60)
    labels = squares // 6                     # 10 clusters of 6 squares
    d = dictionary_from_translation_table(table, 0, 1)
    result = calign(labels, table[0, squares, 0], labels, table[1, squares, 0], d,
                    theta_a=0.99, size_ratio=1.0)
    assert result.score == 1.0


def test_token_square_dictionary_agrees_with_the_translation_table_with_anchors():
    from mothello_fast.languages import LanguageSet

    ls = LanguageSet.from_spec("atomic,split", n_anchors=5)
    single = np.nonzero(ls.token_square >= 0)[0]            # tokens of one square
    for source, target in ((0, 1), (1, 0)):
        table = dictionary_from_translation_table(ls.translation_table, source, target)
        square = dictionary_from_token_square(ls.token_square, ls, source, target)
        for token in single:
            assert sorted(square[token][square[token] >= 0]) == sorted(
                table[token][table[token] >= 0])
    anchored_token = ls.translation_table[0, ls.anchors[0], 0]
    assert dictionary_from_token_square(ls.token_square, ls, 0, 1)[anchored_token, 0] \
        == anchored_token


def test_token_square_dictionary_gives_full_alignment_with_anchors():
    from mothello_fast.languages import LanguageSet

    ls = LanguageSet.from_spec("atomic,atomic", n_anchors=5)
    squares = np.nonzero(ls.translation_table[0, :, 0] >= 0)[0]
    labels = np.arange(60) // 5                           # identical clusterings
    d = dictionary_from_token_square(ls.token_square, ls, 0, 1)
    result = calign(labels, ls.translation_table[0, squares, 0], labels,
                    ls.translation_table[1, squares, 0], d, theta_a=0.9, size_ratio=0.6)
    assert result.score == 1.0


# --- the report of a model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def twin_model():
    """A small GPT over two atomic languages whose tokens of the same square share one
    embedding: every layer's activations are then identical in the two languages."""
    import torch

    from mothello_fast.languages import LanguageSet
    from mothello_fast.model import GPT, GPTConfig

    ls = LanguageSet.from_spec("atomic,atomic")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ls.vocab_size, context_length=ls.context_length,
                          n_layers=2, n_heads=2, d_model=32, d_mlp=64, dropout=0.0))
    table = ls.translation_table
    squares = np.nonzero(table[0, :, 0] >= 0)[0]
    with torch.no_grad():
        model.embed.weight[table[1, squares, 0]] = model.embed.weight[table[0, squares, 0]]
    return model, ls


def test_concept_report_gives_full_alignment_for_identical_languages(twin_model, tmp_path):
    from mothello_fast.othello import generate_games

    model, ls = twin_model
    games = generate_games(12, seed=3)
    out = concept_report(model, ls, games, layers=[1, 2], kmeans=_km(8), seed=0,
                         progress=False, out_dir=tmp_path).to_dict()
    for row in out["per_layer"]:
        assert row["calign_mean"] == 1.0           # identical clusterings, exact dictionary
        pair = row["colap_pairs"]["L0-L1"]
        shares = np.array(pair["detail"]["shares"], dtype=float)
        non_empty = ~np.isnan(shares[:, 0])
        assert np.allclose(shares[non_empty], 0.5)  # every cluster half one language
        assert row["colap"] == pair["token"] == non_empty.sum() / 8
        assert row["unification"]["cross"] == pytest.approx(1.0)
    geometry = out["embedding_geometry"]
    assert geometry["translation_retrieval_at_1"] == {"L0->L1": 1.0, "L1->L0": 1.0}
    assert np.allclose(geometry["canonical_angles"]["L0-L1"]["cosines"], 1.0)
    assert np.allclose(geometry["model_space_subspace_angles"]["L0-L1"]["cosines"], 1.0)


def test_with_the_default_k_identical_languages_align_almost_fully(twin_model):
    # at K=100 most clusters held one of the 60 squares, could never align (min_types 1)
    # and two identical languages scored 0.5-0.6; the default K lets clusters align
    from mothello_fast.othello import generate_games

    model, ls = twin_model
    out = concept_report(model, ls, generate_games(40, seed=3), layers=[2],
                         progress=False).to_dict()
    assert out["params"]["n_clusters"] == 20 and out["params"]["max_per_type"] == 15
    assert out["params"]["kmeans"]["n_init"] == 10 and out["params"]["kmeans"]["max_iter"] == 100
    assert out["per_layer"][0]["calign_mean"] >= 0.9
    assert max(out["n_clustered_points"].values()) <= 60 * 15


def test_colap_is_reported_per_language_pair_and_pooled_only_on_request():
    from mothello_fast.languages import LanguageSet
    from mothello_fast.othello import generate_games

    ls = LanguageSet.from_spec("atomic,atomic,atomic,atomic")
    out = concept_report(_tiny_model(ls), ls, generate_games(6, seed=3), layers=[1],
                         kmeans=_km(4, n_init=1), pooled_colap=True, progress=False)
    row = out.to_dict()["per_layer"][0]
    assert sorted(row["colap_pairs"]) == ["L0-L1", "L0-L2", "L0-L3", "L1-L2", "L1-L3",
                                          "L2-L3"]
    assert row["colap"] == pytest.approx(np.mean([p["token"] for p in
                                                  row["colap_pairs"].values()]))
    # four languages at theta_o 0.3: no cluster can give each 30%
    assert row["colap_pooled"]["token"] == 0.0 and "ceiling" in row["colap_pooled"]


def test_concept_report_writes_json_and_plots(twin_model, tmp_path):
    import json

    from mothello_fast.othello import generate_games

    model, ls = twin_model
    concept_report(model, ls, generate_games(6, seed=4), layers=[0, 2], kmeans=_km(4),
                   progress=False, out_dir=tmp_path)
    written = json.loads((tmp_path / "concepts.json").read_text())
    assert [row["layer"] for row in written["per_layer"]] == [0, 2]
    for name in ("curves.png", "similarity_layer0.png", "similarity_layer2.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_concept_report_gives_one_entry_per_distinct_layer(twin_model):
    from mothello_fast.othello import generate_games

    model, ls = twin_model
    games = generate_games(8, seed=5)

    def report(layers):
        return concept_report(model, ls, games, layers=layers, kmeans=_km(4), seed=0,
                              progress=False).to_dict()["per_layer"]

    both = report([1, 1, "blocks.0.hook_resid_post", 2])   # layer 1 is blocks.0.hook_resid_post
    assert [row["layer"] for row in both] == [1, 2]
    assert [row["hook"] for row in both] == ["blocks.0.hook_resid_post",
                                             "blocks.1.hook_resid_post"]
    assert both == report([1]) + report([2])


def test_concepts_command_writes_the_report(twin_model, tmp_path):
    import json

    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.cli import main

    model, ls = twin_model
    save_checkpoint(tmp_path / "ckpt", model=model, language_set=ls)
    code = main(["concepts", str(tmp_path / "ckpt"), "--layers", "blocks.0.hook_resid_post",
                 "--games", "8", "--clusters", "4", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    written = json.loads((tmp_path / "out" / "concepts.json").read_text())
    assert written["per_layer"][0]["calign_mean"] == 1.0


def _km(n_clusters: int, n_init: int = 10):
    return KMeans(n_clusters, n_init=n_init, max_iter=100, seed=0, device="cpu")


def _tiny_model(ls):
    import torch

    from mothello_fast.model import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=ls.vocab_size, context_length=ls.context_length,
                         n_layers=1, n_heads=2, d_model=32, d_mlp=64, dropout=0.0))


def test_concept_report_skips_embedding_geometry_when_every_square_is_anchored():
    from mothello_fast.languages import LanguageSet
    from mothello_fast.othello import generate_games

    ls = LanguageSet.from_spec("atomic,atomic", n_anchors=60)
    out = concept_report(_tiny_model(ls), ls, generate_games(4, seed=3), layers=[1],
                         kmeans=_km(6, n_init=1), progress=False)
    assert out.layers == [1]
    geometry = out.embedding_geometry
    assert geometry["tokens_per_language"] == {"L0": 0, "L1": 0}
    assert "at least 2 tokens of its own" in geometry["skipped"]


@pytest.mark.parametrize("bad, message", [
    (dict(theta_o=30), "theta_o=30"), (dict(theta_a=90), "theta_a=90"),
    (dict(top_n=0), "top_n=0"), (dict(min_types=-1), "min_types=-1"),
    (dict(k_neighbors=0), "k_neighbors=0"), (dict(kmeans="KMeans(0)"), "n_clusters=0"),
    (dict(kmeans="KMeans(4, n_init=0)"), "n_init=0"),
    (dict(kmeans="KMeans"), "expected an estimator with get_params and fit_predict"),
    (dict(languages=["L0", "L0"]), r"\['L0'\] more than once"),
    (dict(languages=["L0", "X"]), r"\['X'\] are not input languages"),
    (dict(kmeans="KMeans(1000)"), "n_clusters=1000")])
def test_concept_report_checks_its_parameters_before_collecting_activations(
        twin_model, monkeypatch, bad, message):
    import mothello_fast.activations
    from mothello_fast.othello import generate_games

    def collect(*args, **kwargs):
        raise AssertionError("activations collected before the parameters were checked")

    monkeypatch.setattr(mothello_fast.activations, "collect_activations", collect)
    model, ls = twin_model
    if isinstance(bad.get("kmeans"), str):   # an estimator written out, built here
        bad = {**bad, "kmeans": eval(bad["kmeans"], {"KMeans": KMeans})}
    with pytest.raises(ConceptError, match=message):
        concept_report(model, ls, generate_games(4, seed=0), layers=[1], progress=False,
                       **{"kmeans": _km(4), **bad})


def test_concepts_command_checks_its_parameters_before_loading_the_checkpoint(tmp_path, capsys):
    from mothello_fast.cli import main

    code = main(["concepts", str(tmp_path / "missing"), "--theta-o", "30", "--out",
                 str(tmp_path / "out")])
    assert code == 2
    assert "--theta-o 30.0: expected" in capsys.readouterr().err   # the flag, not the API name
    assert not (tmp_path / "out").exists()


def test_concept_report_angles_of_compositional_squares_count_their_rank():
    import scipy.linalg

    from mothello_fast.languages import LanguageSet
    from mothello_fast.othello import generate_games

    ls = LanguageSet.from_spec("compositional,compositional")
    model = _tiny_model(ls)
    out = concept_report(model, ls, generate_games(4, seed=3), layers=[1],
                         kmeans=_km(4, n_init=1), progress=False).to_dict()
    weight = model.embed.weight.detach().double().numpy()
    table = ls.translation_table
    squares = np.nonzero(table[0, :, 0] >= 0)[0]
    vectors = [weight[table[j, squares]].mean(1) for j in (0, 1)]      # [60, d] each
    a, b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors)
    expected = np.sort(np.cos(scipy.linalg.subspace_angles(a.T, b.T)))[::-1]
    got = out["embedding_geometry"]["model_space_subspace_angles"]["L0-L1"]["cosines"]
    assert len(expected) == 15
    assert np.allclose(got, expected, atol=1e-8)


def test_cap_per_type_keeps_at_most_k_random_occurrences_of_each_type():
    from mothello_fast.concepts import cap_per_type

    types = np.repeat(np.arange(5), [1, 3, 10, 20, 2])
    kept = cap_per_type(types, 4, seed=0)
    assert np.all(np.diff(kept) > 0)
    counts = np.bincount(types[kept], minlength=5)
    assert counts.tolist() == [1, 3, 4, 4, 2]
    assert not np.array_equal(kept, cap_per_type(types, 4, seed=1))   # seeded choice
    assert np.array_equal(cap_per_type(types, None), np.arange(len(types)))


def test_row_paired_angles_see_a_shuffle_that_subspace_angles_miss():
    from mothello_fast.geometry import canonical_angles, row_paired_canonical_angles

    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 128))
    b = a + 0.05 * rng.standard_normal((60, 128))
    shuffled = b[rng.permutation(60)]
    paired, mixed = row_paired_canonical_angles(a, b), row_paired_canonical_angles(a, shuffled)
    assert paired.mean > 0.9 and mixed.mean < paired.mean - 0.3
    assert mixed.mean == pytest.approx(mixed.to_dict()["baseline_mean"], abs=0.1)
    same = canonical_angles(a.T, b.T, baseline=False).mean
    assert canonical_angles(a.T, shuffled.T, baseline=False).mean == pytest.approx(same)


def test_cross_lingual_neighbors_counts_the_token_itself_when_asked():
    from mothello_fast.geometry import cross_lingual_neighbors

    # two far-apart language clusters: without itself a token's nearest are its own
    x = np.vstack([np.eye(4)[:2] + 5 * np.eye(4)[2], np.eye(4)[:2] + 5 * np.eye(4)[3]])
    langs = np.array([0, 0, 1, 1])
    assert cross_lingual_neighbors(x, langs, k=1) == 1.0
    assert cross_lingual_neighbors(x, langs, k=2, include_self=True) == 1.0
    assert cross_lingual_neighbors(x, langs, k=3) == 2.0
    assert cross_lingual_neighbors(x, langs, k=3, include_self=True) == 2.0


def test_two_checkpoints_are_compared_side_by_side(twin_model, tmp_path):
    import json

    import torch

    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.cli import main
    from mothello_fast.concepts import compare_reports

    model, ls = twin_model
    save_checkpoint(tmp_path / "base", model=model, language_set=ls)
    with torch.no_grad():   # a "fine-tuned" model: L1's embeddings no longer L0's
        model_b = type(model)(model.config)
        model_b.load_state_dict(model.state_dict())
        table = ls.translation_table
        squares = np.nonzero(table[1, :, 0] >= 0)[0]
        model_b.embed.weight[table[1, squares, 0]] = torch.randn(len(squares), 32)
    save_checkpoint(tmp_path / "tuned", model=model_b, language_set=ls)
    assert main(["concepts", str(tmp_path / "base"), "--compare", str(tmp_path / "tuned"),
                 "--layers", "1,2", "--games", "8", "--clusters", "4", "--n-init", "1",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "out")]) == 0
    comparison = json.loads((tmp_path / "out" / "comparison.json").read_text())
    calign = comparison["metrics"]["calign_mean"]
    assert calign[str(tmp_path / "base")] == [1.0, 1.0]
    assert min(calign[str(tmp_path / "tuned")]) < 1.0
    assert (tmp_path / "out" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConceptError, match="expected two or more"):
        compare_reports({"a": comparison})


def test_compare_reports_draws_every_report(tmp_path):
    from mothello_fast.concepts import compare_reports

    report = {"layers": [1, 2], "languages": ["L0", "L1"], "embedding_geometry": {},
              "per_layer": [{"calign_mean": 0.5, "colap": 0.2, "unification": {"score": 0.1}}] * 2}
    names = [f"step {k}" for k in range(6)]   # more reports than line styles
    out = compare_reports({name: report for name in names}, tmp_path / "c.png")
    assert list(out["metrics"]["calign_mean"]) == names
    assert (tmp_path / "c.png").exists()
