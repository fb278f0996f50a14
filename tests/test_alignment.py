"""Cross-lingual alignment matrices, from arrays and from models whose languages share
(or do not share) their embeddings."""
import numpy as np
import pytest
import torch

from mothello_fast.alignment import alignment_by_layer, alignment_matrix, model_alignment
from mothello_fast.datasets import split_games
from mothello_fast.errors import ProbeError
from mothello_fast.probes import LinearProbe, MLPProbe, make_probe, split_positions
from mothello_fast.othello import generate_games, replay

FAST = {"lr": 1e-2, "batch_size": 256, "epochs": 4, "device": "cpu"}


def linear_code(boards: np.ndarray, d: int, seed: int) -> np.ndarray:
    """float32 [P, d]: a random linear map (chosen by `seed`) of the one-hot board + noise."""
    rng = np.random.default_rng(seed)
    one_hot = np.eye(3, dtype=np.float32)[boards].reshape(len(boards), -1)
    return one_hot @ rng.standard_normal((192, d)).astype(np.float32) \
        + 0.1 * rng.standard_normal((len(boards), d)).astype(np.float32)


@pytest.fixture(scope="module")
def boards():
    labels = replay(generate_games(150, seed=11))
    return labels.board[labels.player > 0]


def test_languages_with_the_same_code_align_off_the_diagonal(boards):
    X = linear_code(boards, 128, seed=0)
    result = alignment_matrix({"a": X, "b": X.copy()}, boards, probe=LinearProbe(**FAST))
    assert result.accuracy.min() > 0.97
    np.testing.assert_allclose(result.accuracy[0, 1], result.accuracy[0, 0])


def test_languages_with_unrelated_codes_do_not_align(boards):
    hidden = {"a": linear_code(boards, 128, seed=0), "b": linear_code(boards, 128, seed=1)}
    result = alignment_matrix(hidden, boards, probe=LinearProbe(**FAST))
    assert result.in_distribution.min() > 0.97
    # a probe read through the wrong code does no better than guessing each square's
    # most frequent class
    _, test = split_games(len(boards), val_fraction=0.2, seed=0)
    majority = np.array([np.bincount(boards[:, s], minlength=3).argmax() for s in range(64)])
    baseline = (boards[test] == majority).mean()
    assert result.cross_lingual < baseline + 0.05


def test_matrix_rows_are_the_training_language(boards):
    # language "noise" carries no board information: a probe trained on it is near
    # chance everywhere, while the probe trained on "code" reads "code" perfectly
    code = linear_code(boards, 192, seed=0)
    noise = np.random.default_rng(5).standard_normal(code.shape).astype(np.float32)
    result = alignment_matrix({"code": code, "noise": noise}, boards, probe=LinearProbe(**FAST))
    assert result.accuracy[0, 0] > 0.97
    assert result.accuracy[1, 1] < 0.9 and result.accuracy[1, 0] < 0.9
    # each off-diagonal cell is the probe trained on its row's language, scored on its
    # column's language; the two cells differ, so a transposed matrix fails here
    train, test = split_positions(len(boards), 0.2, 0)
    hidden = {"code": code, "noise": noise}
    for a, b in ((0, 1), (1, 0)):
        source, target = ("code", "noise")[a], ("code", "noise")[b]
        probe = make_probe("linear", **FAST, seed=0).fit(hidden[source][train], boards[train])
        assert result.accuracy[a, b] == pytest.approx(
            probe.score(hidden[target][test], boards[test]), abs=1e-9)
    assert abs(result.accuracy[0, 1] - result.accuracy[1, 0]) > 1e-3


def test_entries_are_probe_scores_on_the_held_out_positions(boards):
    hidden = {"a": linear_code(boards, 64, seed=0), "b": linear_code(boards, 64, seed=2)}
    result = alignment_matrix(hidden, boards, probe=MLPProbe(**FAST, hidden=32, seed=3),
                              seed=3)
    train, test = split_games(len(boards), val_fraction=0.2, seed=3)
    probe = make_probe("mlp", **FAST, hidden=32, seed=3).fit(hidden["a"][train], boards[train])
    assert result.accuracy[0, 1] == pytest.approx(probe.score(hidden["b"][test], boards[test]))
    assert (result.n_train, result.n_test) == (len(train), len(test))


def test_by_layer_curves_are_the_diagonal_and_off_diagonal_means(boards):
    same = linear_code(boards, 64, seed=0)
    hidden = {1: {"a": same, "b": same}, 2: {"a": same, "b": linear_code(boards, 64, seed=4)}}
    curves = alignment_by_layer(hidden, boards, probe=LinearProbe(**FAST))
    assert curves.layers == (1, 2)
    for i, matrix in enumerate(curves.matrices):
        np.testing.assert_allclose(curves.in_distribution[i], np.diag(matrix.accuracy))
        assert curves.cross_lingual[i] == pytest.approx(
            (matrix.accuracy[0, 1] + matrix.accuracy[1, 0]) / 2)
    assert curves.cross_lingual[0] > curves.cross_lingual[1] + 0.2


def test_languages_with_different_numbers_of_positions_are_refused(boards):
    X = linear_code(boards, 16, seed=0)
    with pytest.raises(ProbeError, match="positions"):
        alignment_matrix({"a": X, "b": X[:-1]}, boards, probe=LinearProbe(**FAST))


def small_model(language_set, seed: int):
    from mothello_fast.model import GPT, GPTConfig
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=language_set.vocab_size,
                         context_length=language_set.context_length, n_layers=1, n_heads=2,
                         d_model=32, d_mlp=64)).eval()


@pytest.fixture(scope="module")
def two_atomic():
    from mothello_fast.languages import LanguageSet
    return LanguageSet.from_spec("atomic,atomic", seed=0), generate_games(100, seed=5)


def test_model_whose_languages_share_embeddings_is_aligned_off_the_diagonal(two_atomic):
    language_set, games = two_atomic
    model = small_model(language_set, seed=0)
    first, second = language_set.token_ids("L0")[:, 0], language_set.token_ids("L1")[:, 0]
    playable = first >= 0
    with torch.no_grad():   # language L1 writes each square with L0's embedding
        model.embed.weight[torch.as_tensor(second[playable])] = \
            model.embed.weight[torch.as_tensor(first[playable])]
    result = model_alignment(model, language_set, games, layers=[1], probe=LinearProbe(**FAST), progress=False)[1]
    np.testing.assert_allclose(result.accuracy[0, 1], result.accuracy[0, 0])
    np.testing.assert_allclose(result.accuracy[1, 0], result.accuracy[1, 1])


def test_two_unrelated_random_models_are_not_aligned(two_atomic):
    from mothello_fast.activations import collect_activations

    language_set, games = two_atomic
    first = collect_activations(small_model(language_set, seed=0), language_set, games,
                                language="L0", layers=[1], progress=False)
    second = collect_activations(small_model(language_set, seed=1), language_set, games,
                                 language="L1", layers=[1], progress=False)
    hook = "blocks.0.hook_resid_post"
    result = alignment_matrix({"first": first.hidden[hook], "second": second.hidden[hook]},
                              first.board, probe=LinearProbe(**FAST))
    _, test = split_games(len(first.board), val_fraction=0.2, seed=0)
    majority = np.array([np.bincount(first.board[:, s], minlength=3).argmax()
                         for s in range(64)])
    assert result.cross_lingual < (first.board[test] == majority).mean()
    assert result.cross_lingual < result.in_distribution.min() - 0.05


def test_alignment_reprs_summarise_instead_of_dumping_arrays():
    from mothello_fast.alignment import AlignmentMatrix, LayerAlignment
    accuracy = np.array([[0.9, 0.4], [0.5, 0.8]])
    matrix = AlignmentMatrix(("L0", "L1"), accuracy, np.zeros((2, 2, 64)), n_train=80, n_test=20)
    text = repr(matrix)
    assert "cross_lingual=0.450" in text and "L0: 0.900 0.400" in text and "L1: 0.500 0.800" in text
    assert repr(LayerAlignment((6,), (matrix,))) == \
        "LayerAlignment(layer: in-distribution/cross-lingual 6: 0.850/0.450)"


def _fast_alignment(two_atomic, layers):
    """model_alignment of a small random model on 20 games, linear probes."""
    language_set, games = two_atomic
    return model_alignment(small_model(language_set, seed=0), language_set, games[:20],
                           layers=layers, probe=LinearProbe(**FAST), progress=False)


def test_model_alignment_gives_one_matrix_per_distinct_hook(two_atomic):
    def run(layers):
        return _fast_alignment(two_atomic, layers)

    aliased = run([1, "blocks.0.hook_resid_post", 0, 0])
    assert aliased.layers == (1, 0)
    np.testing.assert_array_equal(aliased[1].accuracy, run([1])[1].accuracy)
    np.testing.assert_array_equal(aliased[0].accuracy, run([0])[0].accuracy)


def test_model_alignment_takes_a_single_integer_layer(two_atomic):
    result, listed = _fast_alignment(two_atomic, 1), _fast_alignment(two_atomic, [1])
    assert result.layers == listed.layers == (1,) and result[1].accuracy.shape == (2, 2)
    np.testing.assert_array_equal(result[1].accuracy, listed[1].accuracy)
    np.testing.assert_array_equal(result[1].per_square, listed[1].per_square)
    assert (result[1].n_train, result[1].n_test) == (listed[1].n_train, listed[1].n_test)


def test_test_positions_score_a_probe_trained_on_every_training_position(boards):
    hidden = {"a": linear_code(boards, 64, seed=0), "b": linear_code(boards, 64, seed=2)}
    n = len(boards) // 2
    result = alignment_matrix({k: X[:n] for k, X in hidden.items()}, boards[:n],
                              test_hidden={k: X[n:] for k, X in hidden.items()},
                              test_labels=boards[n:], probe=LinearProbe(**FAST))
    probe = make_probe("linear", **FAST, seed=0).fit(hidden["a"][:n], boards[:n])
    assert result.accuracy[0, 1] == pytest.approx(probe.score(hidden["b"][n:], boards[n:]))
    assert (result.n_train, result.n_test) == (n, len(boards) - n)


def test_model_alignment_tests_on_the_test_games(two_atomic):
    from mothello_fast.activations import collect_activations

    language_set, games = two_atomic
    model = small_model(language_set, seed=0)
    train_games, test_games = games[:20], games[20:30]
    result = model_alignment(model, language_set, train_games, test_games=test_games,
                             layers=[1], probe=LinearProbe(**FAST), progress=False)[1]
    hook = "blocks.0.hook_resid_post"
    fit = collect_activations(model, language_set, train_games, language="L0", layers=[1],
                              progress=False)
    test = collect_activations(model, language_set, test_games, language="L1", layers=[1],
                               progress=False)
    probe = make_probe("linear", **FAST, seed=0).fit(fit.hidden[hook], fit.board)
    assert (result.n_train, result.n_test) == (len(fit), len(test))
    assert result.accuracy[0, 1] == pytest.approx(probe.score(test.hidden[hook], test.board))


def test_one_dimensional_labels_are_refused(boards):
    with pytest.raises(ProbeError, match=r"labels has shape \(10,\)"):
        alignment_matrix({"a": np.zeros((10, 4), np.float32)}, np.zeros(10, int))


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_a_test_fraction_outside_0_1_is_a_probe_error(boards, fraction):
    X = linear_code(boards[:100], 16, seed=0)
    with pytest.raises(ProbeError, match=f"test_fraction={fraction}"):
        alignment_matrix({"a": X}, boards[:100], probe=LinearProbe(**FAST),
                         test_fraction=fraction)


@pytest.mark.parametrize("languages, match", [([], "languages is empty"),
                                              (["L0", "L0", "L1"], r"\['L0'\] more than once"),
                                              (["L0", "L7"], "L7")])
def test_bad_language_lists_are_refused(two_atomic, languages, match):
    language_set, games = two_atomic
    with pytest.raises(ValueError, match=match):
        model_alignment(small_model(language_set, seed=0), language_set, games[:5],
                        languages=languages, layers=[1], probe=LinearProbe(**FAST),
                        progress=False)


@pytest.mark.parametrize("bad, match", [({"probe": "foo"}, "probe='foo'"),
                                        ({"labels": "rel"}, "labels='rel'"),
                                        ({"languages": ["L0", "L7"]}, "L7")])
def test_model_alignment_checks_its_arguments_before_collecting(two_atomic, monkeypatch, bad,
                                                                match):
    import mothello_fast.activations as activations

    def collect(*args, **kwargs):
        raise AssertionError("activations were collected before the arguments were checked")

    monkeypatch.setattr(activations, "collect_activations", collect)
    language_set, games = two_atomic
    with pytest.raises(ValueError, match=match):
        model_alignment(small_model(language_set, seed=0), language_set, games[:5],
                        layers=[1], **{"probe": LinearProbe(**FAST),
                                       "progress": False, **bad})


def test_alignment_to_dict_is_strict_json_with_the_per_square_accuracy():
    import json

    from mothello_fast.alignment import AlignmentMatrix, LayerAlignment
    per_square = np.random.default_rng(0).random((1, 1, 64))
    matrix = AlignmentMatrix(("L0",), per_square.mean(-1), per_square, n_train=80, n_test=20)
    data = LayerAlignment((6,), (matrix,)).to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["cross_lingual"] == [None]
    assert data["matrices"][0]["cross_lingual"] is None
    np.testing.assert_array_equal(data["matrices"][0]["per_square"], per_square)


def test_bad_test_games_are_named_as_test_games(two_atomic):
    language_set, games = two_atomic
    with pytest.raises(ValueError, match=r"test_games has shape \(5, 59\)"):
        model_alignment(small_model(language_set, seed=0), language_set, games[:5],
                        test_games=games[:5, :59], layers=[1], probe=LinearProbe(**FAST), progress=False)


@pytest.mark.parametrize("spec, context", [("atomic,atomic", None), ("atomic,split:3", 40)])
def test_model_alignment_reads_each_language_at_the_positions_all_languages_have(spec, context):
    """collect_parallel against a (game, move) lookup: with every position in every language (the
    arrays are the collections' own) and with a short context that cuts the split language
    (the atomic one keeps only the positions the split one has)."""
    from mothello_fast.activations import collect_activations
    from mothello_fast.activations import collect_parallel
    from mothello_fast.languages import LanguageSet
    from mothello_fast.model import GPT, GPTConfig

    language_set = LanguageSet.from_spec(spec, seed=0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=context or language_set.context_length, n_layers=1,
                          n_heads=2, d_model=16, d_mlp=32)).eval()
    games = generate_games(12, seed=4)
    pairs = [(1, "blocks.0.hook_resid_post"), (0, "blocks.0.hook_resid_pre")]
    parallel = collect_parallel(model, language_set, games, languages=["L0", "L1"],
                                layers=[layer for layer, _ in pairs], batch_size=5,
                                progress=False)
    hidden, labels = parallel.hidden, parallel.relative
    assert parallel.hooks == dict(pairs)
    collected = {n: collect_activations(model, language_set, games, language=n,
                                        layers=[h for _, h in pairs], progress=False)
                 for n in ("L0", "L1")}
    where = {n: {(g, m): i for i, (g, m) in enumerate(zip(c.game, c.move))}
             for n, c in collected.items()}
    common = sorted(set(where["L0"]) & set(where["L1"]))
    assert (len(common) < len(collected["L0"])) == (context is not None)
    for layer, hook in pairs:
        for name, c in collected.items():
            rows = [where[name][key] for key in common]
            np.testing.assert_array_equal(hidden[layer][name], c.hidden[hook][rows])
    np.testing.assert_array_equal(labels, collected["L0"].relative[[where["L0"][k]
                                                                     for k in common]])
