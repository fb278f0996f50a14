"""Board probes: accuracy on synthetic hidden states whose board content is known,
agreement with scikit-learn's logistic regression, determinism and persistence."""
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mothello_fast.errors import ProbeError
from mothello_fast.kernels.probe import probe_loss_reference
from mothello_fast.othello import generate_games, replay
from mothello_fast.probes import LinearProbe, MLPProbe, load_probe, make_probe, probe_model

FAST = {"lr": 1e-2, "batch_size": 256, "epochs": 6, "device": "cpu"}


def board_labels(n_games: int, seed: int) -> np.ndarray:
    """Absolute boards int8 [P, 64] of every position of `n_games` random games."""
    labels = replay(generate_games(n_games, seed=seed))
    return labels.board[labels.player > 0]


def linear_features(boards: np.ndarray, d: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """float32 [P, d]: a random linear map of the one-hot board, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    one_hot = np.eye(3, dtype=np.float32)[boards].reshape(len(boards), -1)  # (P, 192)
    projection = rng.standard_normal((one_hot.shape[1], d)).astype(np.float32)
    return one_hot @ projection + noise * rng.standard_normal((len(boards), d)).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic():
    boards = board_labels(300, seed=1)        # ~18k positions
    X = linear_features(boards, d=256, seed=2)
    n_train = int(0.8 * len(boards))
    return X[:n_train], boards[:n_train], X[n_train:], boards[n_train:]


def majority_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy of predicting each square's most frequent training class."""
    majority = np.array([np.bincount(y_train[:, s], minlength=3).argmax() for s in range(64)])
    return float((y_test == majority).mean())


def test_linear_probe_reads_a_board_that_is_linear_in_the_features(synthetic):
    X, y, X_test, y_test = synthetic
    assert LinearProbe(**FAST, seed=0).fit(X, y).score(X_test, y_test) > 0.98


def test_mlp_probe_reads_a_board_that_is_linear_in_the_features(synthetic):
    X, y, X_test, y_test = synthetic
    assert MLPProbe(hidden=256, **{**FAST, "epochs": 4}, seed=0).fit(X, y).score(X_test, y_test) > 0.97


def test_probe_on_shuffled_labels_is_at_chance(synthetic):
    X, y, X_test, y_test = synthetic
    shuffled = y[np.random.default_rng(0).permutation(len(y))]
    score = LinearProbe(**FAST, seed=0).fit(X, shuffled).score(X_test, y_test)
    assert score < majority_accuracy(shuffled, y_test) + 0.02


def test_linear_probe_matches_sklearn_logistic_regression_per_square():
    rng = np.random.default_rng(3)
    n, d, squares = 4000, 12, 64
    X = rng.standard_normal((n, d)).astype(np.float32)
    true_w = rng.standard_normal((d, squares, 3)) * 1.5
    logits = np.einsum("nd,dsc->nsc", X, true_w)
    y = (logits + rng.gumbel(size=logits.shape)).argmax(-1)   # multinomial logit labels
    X_tr, y_tr, X_te, y_te = X[:3000], y[:3000], X[3000:], y[3000:]
    ours = LinearProbe(lr=1e-2, batch_size=128, epochs=20, device="cpu", seed=0).fit(X_tr, y_tr)
    ours_acc = ours.per_square_accuracy(X_te, y_te)
    ref_pred = np.stack([LogisticRegression(max_iter=1000).fit(X_tr, y_tr[:, s]).predict(X_te)
                         for s in range(squares)], axis=1)
    ref_acc = (ref_pred == y_te).mean(0)
    assert abs(ours_acc.mean() - ref_acc.mean()) < 0.01
    assert (ours.predict(X_te) == ref_pred).mean() > 0.95


def test_weight_decay_is_the_l2_penalty_of_logistic_regression_at_the_c_the_docs_give(
        torch_one_thread):
    # the fixed point of Adam with coupled decay: per square, on standardised inputs with
    # the bias as the weight of a constant feature, scikit-learn's C = 1 / (64 wd n)
    rng = np.random.default_rng(4)
    n, d, weight_decay = 1000, 6, 1e-3
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.einsum("nd,dsc->nsc", X, rng.standard_normal((d, 64, 3))).argmax(-1)
    ours = LinearProbe(lr=5e-2, batch_size=n, epochs=150, weight_decay=weight_decay,
                       device="cpu", seed=0).fit(X, y)
    Z = np.hstack([(X - X.mean(0)) / X.std(0), np.ones((n, 1))])
    for s in range(0, 64, 4):
        ref = LogisticRegression(C=1 / (64 * weight_decay * n), fit_intercept=False,
                                 tol=1e-8).fit(Z, y[:, s])
        np.testing.assert_allclose(np.vstack([ours.coef_[:, s], ours.intercept_[s]]),
                                   ref.coef_.T, atol=5e-3)


def test_fit_through_the_triton_kernel_gives_the_reference_probe(synthetic, monkeypatch):
    # the CUDA path (probe_loss picks the kernel for CUDA tensors), here on CPU tensors
    # under TRITON_INTERPRET=1
    import functools
    import os

    import mothello_fast.probes as probes
    from mothello_fast.kernels.probe import HAVE_TRITON, probe_loss

    if not HAVE_TRITON or os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs triton with TRITON_INTERPRET=1 (tests/gpu covers CUDA)")
    X, y, _, _ = synthetic
    X, y = X[:200, :40], y[:200]
    for cls, extra in ((LinearProbe, {}), (MLPProbe, {"hidden": 16})):
        want = cls(**{**FAST, "epochs": 2, "batch_size": 64}, seed=0, **extra).fit(X, y)
        monkeypatch.setattr(probes, "probe_loss", functools.partial(probe_loss, backend="triton"))
        got = cls(**{**FAST, "epochs": 2, "batch_size": 64}, seed=0, **extra).fit(X, y)
        monkeypatch.setattr(probes, "probe_loss", probe_loss)
        np.testing.assert_allclose(got.loss_curve_, want.loss_curve_, rtol=1e-5)
        for name in want.params_:
            torch.testing.assert_close(got.params_[name], want.params_[name], atol=1e-5, rtol=0)


def old_fit(X, y, *, hidden: int | None = None, lr: float = 1e-3, batch_size: int = 1024,
            epochs: int = 16, weight_decay: float = 1e-4, standardize: bool = True,
            seed: int = 0) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The probes' fit as it was first written, plainly, on the CPU: (params, loss curve).

    X: float [N, d], y: int [N, 64]. Every batch is gathered from the raw X and
    standardised as it is drawn, Adam steps tensor by tensor; the loss is the plain-torch
    reference. Also the baseline of benchmarks/test_bench_probes.py (hence the old input
    check: a full scan of X for non-finite values).
    """
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("non-finite X")
    n, d = x.shape
    mean, scale = torch.zeros(d), torch.ones(d)
    if standardize:
        mean, std = x.mean(0), x.std(0, unbiased=False)
        scale = torch.where(std > 1e-6, std, torch.ones_like(std))
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, fan_in):   # nn.Linear's initialisation, drawn in the probes' order
        return (torch.rand(shape, generator=generator) * 2 - 1) * (1.0 / fan_in ** 0.5)

    if hidden is None:
        params = {"weight": uniform((d, 64, 3), d), "bias": uniform((64, 3), d)}
    else:
        params = {"hidden_weight": uniform((d, hidden), d), "hidden_bias": uniform((hidden,), d),
                  "weight": uniform((hidden, 64, 3), hidden), "bias": uniform((64, 3), hidden)}
    counts = torch.stack([(labels == c).sum(0) for c in range(3)], -1).float()   # (64, 3)
    params["bias"] = torch.log((counts + 1) / (counts.sum(-1, keepdim=True) + 3))
    for p in params.values():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params.values(), lr=lr, weight_decay=weight_decay,
                                 foreach=False)
    curve = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = torch.zeros(())
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            h = (x[rows] - mean) / scale
            if hidden is not None:
                h = torch.relu(h @ params["hidden_weight"] + params["hidden_bias"])
            loss, _ = probe_loss_reference(h, params["weight"], params["bias"], labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(rows)
        curve.append(float(total) / n)
    return {k: v.detach() for k, v in params.items()}, curve


@pytest.mark.parametrize("cls, options, dtype", [
    (LinearProbe, {}, np.float32),
    (MLPProbe, {"hidden": 24}, np.float32),
    (LinearProbe, {}, np.float64),                        # X converted: standardised in place
    (MLPProbe, {"hidden": 24, "standardize": False}, np.float32),
], ids=["linear", "mlp", "linear, float64 X", "mlp, not standardised"])
def test_fit_trains_the_probe_that_the_plain_per_batch_loop_trains(synthetic, cls, options,
                                                                  dtype):
    X, y, _, _ = synthetic
    X, y = (X[:700, :40] + 3.0).astype(dtype), y[:700]   # off-centre: standardising matters
    hyper = {"lr": 1e-2, "batch_size": 128, "epochs": 3, "seed": 7}
    probe = cls(**hyper, **options, device="cpu").fit(X, y)
    want_params, want_curve = old_fit(X, y, **hyper, **options)
    assert probe.params_.keys() == want_params.keys()
    for name, want in want_params.items():
        torch.testing.assert_close(probe.params_[name], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probe.loss_curve_, want_curve, rtol=1e-6)


@pytest.mark.parametrize("make", [lambda X: X, torch.from_numpy], ids=["numpy", "torch"])
def test_fit_leaves_the_hidden_states_it_is_given_unchanged(synthetic, make):
    X, y, _, _ = synthetic
    X = X[:500].copy()
    given = make(X)
    LinearProbe(**{**FAST, "epochs": 1}).fit(given, y[:500])
    np.testing.assert_array_equal(np.asarray(given), synthetic[0][:500])


def test_predict_proba_is_the_softmax_of_the_standardised_linear_map(synthetic):
    X, y, X_test, _ = synthetic
    probe = LinearProbe(**FAST, seed=0).fit(X[:2000], y[:2000])
    z = (X_test[:50] - X[:2000].mean(0)) / X[:2000].std(0)
    logits = np.einsum("nd,dsc->nsc", z, probe.coef_) + probe.intercept_
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(probe.predict_proba(X_test[:50]), expected, atol=1e-4)


def test_per_square_accuracy_counts_correct_predictions_of_each_square(synthetic):
    X, y, X_test, y_test = synthetic
    probe = MLPProbe(hidden=32, **FAST, seed=0).fit(X[:1000], y[:1000])
    pred = probe.predict(X_test)
    expected = [(pred[:, s] == y_test[:, s]).sum() / len(y_test) for s in range(64)]
    np.testing.assert_allclose(probe.per_square_accuracy(X_test, y_test), expected)
    assert probe.score(X_test, y_test) == pytest.approx(np.mean(expected))


def test_fit_is_deterministic_for_a_seed(synthetic):
    X, y, _, _ = synthetic
    first = MLPProbe(hidden=16, **FAST, seed=5).fit(X[:1500], y[:1500]).params_
    second = MLPProbe(hidden=16, **FAST, seed=5).fit(X[:1500], y[:1500]).params_
    other = MLPProbe(hidden=16, **FAST, seed=6).fit(X[:1500], y[:1500]).params_
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["weight"], other["weight"])


def test_fit_returns_the_estimator_with_fitted_attributes(synthetic):
    X, y, _, _ = synthetic
    probe = LinearProbe(**{**FAST, "epochs": 2})
    assert probe.fit(X[:500], y[:500]) is probe
    assert probe.n_features_in_ == X.shape[1] and len(probe.loss_curve_) == 2
    assert probe.coef_.shape == (X.shape[1], 64, 3)


@pytest.mark.parametrize("cls", [LinearProbe, MLPProbe])
def test_saved_probe_loads_with_the_same_predictions(tmp_path, synthetic, cls):
    X, y, X_test, _ = synthetic
    probe = cls(**{**FAST, "epochs": 2}, seed=0).fit(X[:1000], y[:1000])
    path = probe.save(tmp_path / "probe.safetensors")
    loaded = load_probe(path)
    assert type(loaded) is cls and loaded.get_params()["epochs"] == 2
    np.testing.assert_array_equal(loaded.predict(X_test), probe.predict(X_test))


def test_a_probe_with_numpy_hyperparameters_saves_and_loads(tmp_path, synthetic):
    X, y, X_test, _ = synthetic
    params = {"lr": np.float32(1e-2), "batch_size": np.int64(256), "epochs": np.int64(1),
              "standardize": np.True_, "seed": np.uint8(3)}
    probe = MLPProbe(hidden=np.int32(8), device="cpu", **params).fit(X[:300], y[:300])
    loaded = load_probe(probe.save(tmp_path / "probe.safetensors"), device="cpu")
    assert loaded.get_params() == probe.get_params()
    np.testing.assert_array_equal(loaded.predict(X_test), probe.predict(X_test))


def test_loading_a_probe_as_the_wrong_class_is_refused(tmp_path, synthetic):
    X, y, _, _ = synthetic
    probe = LinearProbe(**{**FAST, "epochs": 1}).fit(X[:300], y[:300])
    path = probe.save(tmp_path / "p.safetensors")
    with pytest.raises(ProbeError, match="LinearProbe"):
        MLPProbe.load(path)


def test_labels_outside_the_three_classes_are_refused(synthetic):
    X, y, _, _ = synthetic
    bad = y[:100].astype(np.int64).copy()
    bad[3, 7] = 3
    with pytest.raises(ProbeError, match="0..2"):
        LinearProbe(**FAST).fit(X[:100], bad)


def test_labels_with_another_number_of_rows_are_refused(synthetic):
    X, y, _, _ = synthetic
    with pytest.raises(ProbeError, match="rows"):
        LinearProbe(**FAST).fit(X[:100], y[:99])


def test_fit_takes_hidden_states_that_require_grad(synthetic):
    # e.g. a Hugging Face model's hidden states, computed outside torch.no_grad()
    X, y, _, _ = synthetic
    tracked = torch.from_numpy(X[:500]).requires_grad_(True)
    probe = LinearProbe(**{**FAST, "epochs": 2}, seed=0).fit(tracked, y[:500])
    plain = LinearProbe(**{**FAST, "epochs": 2}, seed=0).fit(X[:500], y[:500])
    assert all(torch.equal(probe.params_[k], plain.params_[k]) for k in plain.params_)
    np.testing.assert_array_equal(probe.predict(tracked), plain.predict(X[:500]))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_hidden_states_are_refused_naming_the_entry(synthetic, value):
    X, y, X_test, _ = synthetic
    bad = X[:200].copy()
    bad[7, 3] = value
    match = rf"X has a non-finite value {value} at row 7, column 3"
    with pytest.raises(ProbeError, match=match):
        LinearProbe(**FAST).fit(bad, y[:200])
    probe = LinearProbe(**{**FAST, "epochs": 1}).fit(X[:200], y[:200])
    with pytest.raises(ProbeError, match=match):
        probe.predict(bad)


def test_finite_hidden_states_whose_column_sum_overflows_are_accepted(synthetic):
    # the fit's first check sums each column; a sum that overflows float32 is no reason to
    # refuse: only a non-finite entry is
    X, y, _, _ = synthetic
    X = X[:300].copy()
    X[:, 2] = 3e38
    probe = LinearProbe(**{**FAST, "epochs": 1}).fit(X, y[:300])
    assert probe.mean_[2] > 1e38 and probe.predict(X).shape == (300, 64)


def test_predicting_before_fit_is_refused(synthetic):
    with pytest.raises(ProbeError, match="not fitted"):
        LinearProbe().predict(synthetic[0][:10])


def test_a_feature_constant_in_training_does_not_blow_up_predictions(synthetic):
    X, y, X_test, y_test = synthetic
    X = X[:3000].copy()
    X[:, 0] = 0.0                              # constant while fitting
    X_test = X_test.copy()
    X_test[:, 0] = 1.0                         # an ordinary value at test time
    probe = LinearProbe(**FAST, seed=0).fit(X, y[:3000])
    assert probe.scale_[0] == 1.0
    assert probe.score(X_test, y_test) > 0.97


@pytest.fixture(scope="module")
def tiny_model():
    """(model, language set, games): a random 2-layer model over two atomic languages."""
    from mothello_fast.languages import LanguageSet
    from mothello_fast.model import GPT, GPTConfig

    language_set = LanguageSet.from_spec("atomic,atomic", seed=0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=language_set.context_length, n_layers=2, n_heads=2,
                          d_model=32, d_mlp=64)).eval()
    return model, language_set, generate_games(6, seed=1)


TINY = {"epochs": 1, "batch_size": 256, "device": "cpu"}


def test_probe_model_gives_one_entry_per_distinct_hook(tiny_model):
    model, language_set, games = tiny_model

    def run(layers):
        return probe_model(model, language_set, games, language="L0", layers=layers,
                           probe=LinearProbe(**TINY), progress=False)

    aliased = run([2, "blocks.1.hook_resid_post", 1, 1])
    assert aliased.layers == (2, 1)
    assert aliased.hooks == ("blocks.1.hook_resid_post", "blocks.0.hook_resid_post")
    assert aliased.accuracy.tolist() == [run([2]).accuracy[0], run([1]).accuracy[0]]


def test_probe_model_takes_a_single_integer_layer(tiny_model):
    model, language_set, games = tiny_model
    def run(layers):
        return probe_model(model, language_set, games, language="L0", layers=layers,
                           probe=LinearProbe(**TINY), progress=False)

    result, listed = run(2), run([2])
    assert result.layers == (2,) and result.hooks == ("blocks.1.hook_resid_post",)
    assert len(result.accuracy) == 1
    assert result.to_dict() == listed.to_dict()   # the same probe, the same scores


def test_probe_model_refuses_an_out_dir_that_is_a_file_before_collecting(tiny_model, tmp_path,
                                                                         monkeypatch):
    import mothello_fast.activations as activations
    model, language_set, games = tiny_model

    def collect(*args, **kwargs):
        raise AssertionError("activations were collected before out_dir was checked")

    monkeypatch.setattr(activations, "collect_activations", collect)
    (tmp_path / "taken").write_text("")
    with pytest.raises(ProbeError, match="is a file"):
        probe_model(model, language_set, games, language="L0", layers=[1], probe=LinearProbe(**TINY), out_dir=tmp_path / "taken", progress=False)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_probe_model_refuses_a_test_fraction_outside_0_1(tiny_model, fraction):
    model, language_set, games = tiny_model
    with pytest.raises(ProbeError, match=f"test_fraction={fraction}"):
        probe_model(model, language_set, games, language="L0", layers=[1],
                    probe=LinearProbe(**TINY), test_fraction=fraction, progress=False)


@pytest.mark.parametrize("bad, match", [({"probe": "foo"}, "probe='foo'"),
                                        ({"labels": "rel"}, "labels='rel'"),
                                        ({"probe": LinearProbe(epochs=0)}, "epochs=0"),
                                        ({"probe": LinearProbe}, "expected 'mlp', 'linear' or"),
                                        ({"probe": object()}, "expected 'mlp', 'linear' or")])
def test_probe_model_checks_its_arguments_before_collecting(tiny_model, monkeypatch, bad,
                                                            match):
    import mothello_fast.activations as activations

    def collect(*args, **kwargs):
        raise AssertionError("activations were collected before the arguments were checked")

    monkeypatch.setattr(activations, "collect_activations", collect)
    model, language_set, games = tiny_model
    with pytest.raises(ProbeError, match=match):
        probe_model(model, language_set, games, language="L0", layers=[1],
                    **{"probe": LinearProbe(**TINY), "progress": False, **bad})


@pytest.mark.parametrize("params, message", [
    ({"lr": "x"}, r"lr='x': expected a finite number > 0"),
    ({"lr": float("inf")}, r"lr=inf: expected a finite number > 0"),
    ({"weight_decay": -1.0}, r"weight_decay=-1.0: expected a finite number >= 0"),
    ({"seed": None}, r"seed=None: expected an integer in 0..18446744073709551615"),
    ({"device": "nope"}, r"'nope'"),
    ({"seed": 2**64}, r"seed=18446744073709551616: expected an integer in 0..18446744073709551615"),
    ({"standardize": "no"}, r"standardize='no': expected True or False"),
])
def test_bad_probe_hyperparameters_are_refused_when_the_probe_is_made(params, message):
    from mothello_fast.errors import MothelloError

    with pytest.raises(MothelloError, match=message):
        make_probe("linear", **params)


def test_an_unknown_probe_parameter_is_a_probe_error():
    with pytest.raises(ProbeError, match="'width'"):
        make_probe("mlp", width=3)


def test_probe_command_trains_the_probes_on_the_device_asked_for(tmp_path, tiny_model,
                                                                 monkeypatch, capsys):
    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.cli import main

    model, language_set, _ = tiny_model
    save_checkpoint(tmp_path / "ckpt", model=model, language_set=language_set)
    # a machine with a GPU: --device cpu must keep the probes on the CPU all the same
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rc = main(["probe", "--checkpoint", str(tmp_path / "ckpt"), "--games", "3",
               "--language", "L0", "--layers", "1", "--kind", "linear", "--epochs", "1",
               "--device", "cpu", "--quiet"])
    assert rc == 0 and list(json.loads(capsys.readouterr().out)) == ["1"]


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "grad_disabled"])
@pytest.mark.parametrize("kind", [LinearProbe, MLPProbe])
def test_probes_fit_with_gradients_turned_off_as_notebooks_do(mode, kind):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=(300, 64))
    X = (np.eye(3)[y].reshape(300, -1) + 0.1 * rng.standard_normal((300, 192))).astype(np.float32)
    reference = kind(epochs=2, batch_size=64, seed=0).fit(X, y)
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
               "grad_disabled": lambda: torch.set_grad_enabled(False)}[mode]
    with context():
        x = torch.as_tensor(X) + 0   # made in the mode: an inference tensor under inference_mode
        probe = kind(epochs=2, batch_size=64, seed=0).fit(x, y)
        assert not torch.is_grad_enabled()   # the caller's mode is left as it was
    for name, value in reference.params_.items():
        torch.testing.assert_close(probe.params_[name], value)
