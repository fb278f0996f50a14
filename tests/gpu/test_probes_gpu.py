"""Probes, activations and the tiny study on CUDA, against the CPU path.

    python -m pytest tests/gpu/test_probes_gpu.py -q -s
"""
import numpy as np
import pytest
import torch

from mothello_fast.activations import collect_activations
from mothello_fast.datasets import load_games
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import generate_games, replay
from mothello_fast.probes import LinearProbe, MLPProbe
from probe_baselines import majority_baseline

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def synthetic():
    labels = replay(generate_games(1000, seed=0))
    boards = labels.board[labels.player > 0]
    rng = np.random.default_rng(1)
    one_hot = np.eye(3, dtype=np.float32)[boards].reshape(len(boards), -1)
    X = one_hot @ rng.standard_normal((192, 512)).astype(np.float32) \
        + 8.0 * rng.standard_normal((len(boards), 512)).astype(np.float32)
    n = int(0.8 * len(boards))
    return X[:n], boards[:n], X[n:], boards[n:]


@pytest.mark.parametrize("cls", [LinearProbe, MLPProbe])
def test_cuda_probe_is_as_accurate_as_the_cpu_probe(synthetic, cls):
    X, y, X_test, y_test = synthetic
    cpu = cls(device="cpu", seed=0).fit(X, y).score(X_test, y_test)
    cuda = cls(device="cuda", seed=0).fit(X, y).score(X_test, y_test)
    print(f"\n{cls.__name__}: cpu {cpu:.4f}, cuda {cuda:.4f}")
    assert abs(cuda - cpu) < 0.005


def test_cuda_activations_equal_cpu_activations():
    language_set = LanguageSet.from_spec("atomic,split:3", seed=0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=language_set.context_length, n_layers=2, n_heads=2,
                          d_model=64, d_mlp=128)).eval()
    games = generate_games(64, seed=1)
    cpu = collect_activations(model, language_set, games, language="L1", layers=[2],
                              progress=False)
    cuda = collect_activations(model.cuda(), language_set, games, language="L1", layers=[2],
                               progress=False)
    hook = "blocks.1.hook_resid_post"
    np.testing.assert_allclose(cuda.hidden[hook], cpu.hidden[hook], atol=2e-3, rtol=1e-3)
    np.testing.assert_array_equal(cuda.board, cpu.board)


def test_tiny_study_cell_runs_on_cuda(tmp_path):
    from mothello_fast.cell import run_cell

    results = run_cell(setting="unified", languages="atomic,split:3", scale="tiny",
                       out_dir=tmp_path, device="cuda", progress=False)
    print("\n", {k: results[k] for k in ("seconds", "baselines")})
    # the probes read the board better than guessing each square's most frequent class on
    # the test positions (on CPU: ~0.60 against 0.53)
    baseline = majority_baseline(np.asarray(load_games(tmp_path / "data" / "test")))
    in_distribution = np.mean(results["probes"]["in_distribution"][-1])
    assert baseline + 0.03 < in_distribution <= 1.0
    assert set(results["transfer"]["gain"]) == {"L0", "L1"}
