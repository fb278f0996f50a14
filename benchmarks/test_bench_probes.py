"""Board-probe training: all 64 squares of one layer on 60k positions, our LinearProbe
(protocol defaults: Adam lr 1e-3, batch 1024, 16 epochs) against scikit-learn's
multinomial LogisticRegression fitted square by square (lbfgs, standardised inputs, the
64 fits spread over every core with joblib), measured in the same run; both are scored
on the same held-out 20%.

    python -m pytest benchmarks/test_bench_probes.py --benchmark-enable -q -s

Hidden states: a random linear map of the one-hot board (d_model 512) plus strong
Gaussian noise, so that neither reaches 100% and the accuracies can be compared.

`test_fit_against_the_old_fit` times `LinearProbe().fit` and `MLPProbe().fit` (protocol
defaults, hidden 512) against the fit as first written (`old_fit` in tests/test_probes.py:
each batch standardised as drawn, Adam tensor by tensor), alternately,
`PROBE_BENCH_ROUNDS` times (default 3; `PROBE_BENCH_EPOCHS`, default 16, shortens both;
`PROBE_BENCH_THREADS` sets torch's thread count, default torch's own); the speed-up is the
median of the ratios of adjacent pairs. On a machine shared with other work, one thread
gives steadier pairs: two threads on two busy cores wait on each other at every operation.
"""
import os
import time

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from conftest import median_seconds
from mothello_fast.othello import generate_games, replay
from mothello_fast.devices import resolve_device
from mothello_fast.probes import LinearProbe, MLPProbe
from test_probes import old_fit

N_POSITIONS = 60_000
D_MODEL = 512
NOISE = 8.0
ROUNDS = int(os.environ.get("PROBE_BENCH_ROUNDS", 3))
EPOCHS = int(os.environ.get("PROBE_BENCH_EPOCHS", 16))
THREADS = int(os.environ.get("PROBE_BENCH_THREADS", 0))   # 0: torch's default


@pytest.fixture(scope="module")
def data():
    labels = replay(generate_games(1100, seed=0))
    boards = labels.board[labels.player > 0][:N_POSITIONS]
    rng = np.random.default_rng(1)
    one_hot = np.eye(3, dtype=np.float32)[boards].reshape(len(boards), -1)
    projection = rng.standard_normal((one_hot.shape[1], D_MODEL)).astype(np.float32)
    X = one_hot @ projection + NOISE * rng.standard_normal((len(boards), D_MODEL),
                                                             dtype=np.float32)
    n_train = int(0.8 * len(boards))
    return X[:n_train], boards[:n_train], X[n_train:], boards[n_train:]


@pytest.fixture(scope="module")
def results():
    return {}


def sklearn_per_square(X, y):
    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X)
    fit = delayed(lambda s: LogisticRegression(max_iter=100).fit(Z, y[:, s]))
    return scaler, Parallel(n_jobs=-1)(fit(s) for s in range(64))


def test_sklearn_logistic_regression(benchmark, report, results, data):
    X, y, X_test, y_test = data
    scaler, models = benchmark.pedantic(sklearn_per_square, args=(X, y), rounds=1, iterations=1)
    Z = scaler.transform(X_test)
    pred = np.stack([m.predict(Z) for m in models], axis=1)
    results["sklearn"] = (median_seconds(benchmark), float((pred == y_test).mean()))
    report("probe training (60k x 512)", "sklearn LogisticRegression s", results["sklearn"][0], "s")
    report("probe training (60k x 512)", "sklearn test accuracy", results["sklearn"][1])


def test_linear_probe(benchmark, report, results, data):
    X, y, X_test, y_test = data
    probe = benchmark.pedantic(lambda: LinearProbe(seed=0).fit(X, y), rounds=1, iterations=1)
    seconds, accuracy = median_seconds(benchmark), probe.score(X_test, y_test)
    section = "probe training (60k x 512)"
    report(section, f"LinearProbe ({resolve_device().type}) s", seconds, "s")
    report(section, "LinearProbe test accuracy", accuracy)
    if "sklearn" in results:
        ref_seconds, ref_accuracy = results["sklearn"]
        report(section, "speed-up over sklearn", ref_seconds / seconds, "x")
        print(f"\nLinearProbe {seconds:.2f} s, accuracy {accuracy:.4f}; sklearn "
              f"{ref_seconds:.2f} s, accuracy {ref_accuracy:.4f}; ratio {ref_seconds / seconds:.1f}x")
        assert accuracy >= ref_accuracy


@pytest.fixture
def threads():
    """torch's thread count for the test: `PROBE_BENCH_THREADS`, or torch's default."""
    default = torch.get_num_threads()
    torch.set_num_threads(THREADS or default)
    yield torch.get_num_threads()
    torch.set_num_threads(default)


@pytest.mark.parametrize("cls, options", [(LinearProbe, {}), (MLPProbe, {"hidden": 512})],
                         ids=["linear", "mlp"])
def test_fit_against_the_old_fit(report, data, threads, cls, options):
    X, y, X_test, y_test = data
    old_fit(X[:2048], y[:2048], epochs=1, **options)   # warm-up: the first fit of a process
    cls(epochs=1, device="cpu", **options).fit(X[:2048], y[:2048])   # is slower
    old, ours = [], []
    for _ in range(ROUNDS):   # alternate, so that both see the same machine
        start = time.perf_counter()
        want, _ = old_fit(X, y, epochs=EPOCHS, **options)
        old.append(time.perf_counter() - start)
        start = time.perf_counter()
        probe = cls(epochs=EPOCHS, device="cpu", **options).fit(X, y)
        ours.append(time.perf_counter() - start)
        print(f"\n{cls.__name__}: old {old[-1]:.3f} s, ours {ours[-1]:.3f} s", end="")
    for name in want:
        torch.testing.assert_close(probe.params_[name], want[name], rtol=1e-5, atol=1e-6)
    reference = cls(epochs=EPOCHS, device="cpu", **options)
    reference.params_, reference.mean_, reference.scale_ = want, probe.mean_, probe.scale_
    reference.n_features_in_ = X.shape[1]
    section = (f"{cls.__name__}.fit ({len(X) // 1000}k x {D_MODEL}, {EPOCHS} epochs, "
               f"{threads} thread{'s' if threads > 1 else ''})")
    report(section, "old fit s, fastest", min(old), "s")
    report(section, "ours s, fastest", min(ours), "s")
    report(section, "speed-up (median of pairs)",
           float(np.median(np.array(old) / np.array(ours))), "x")
    report(section, "test accuracy, old", reference.score(X_test, y_test))
    report(section, "test accuracy, ours", probe.score(X_test, y_test))
