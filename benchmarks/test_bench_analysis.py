"""Analysis paths on the CPU: activation collection, before and after its changes, measured
in the same run.

    python -m pytest benchmarks/test_bench_analysis.py -q -s

- Collection (`collect_activations`) from a random-weight model of the default shape
  (8 layers, 8 heads, d_model 512), `ANALYSIS_BENCH_GAMES` games (default 64), one
  language. The baseline is the old path: the whole forward pass (`run_with_cache`), all
  8 blocks and the unembedding whatever the layers read; ours stops after the deepest
  layer read. Both give the same arrays, bit for bit (checked). The two run alternately,
  `ANALYSIS_BENCH_ROUNDS` times (default 9); the speed-up is the median of the ratios of
  each adjacent pair, which holds up on a machine shared with other work.
- The per-language hidden states that `model_alignment` hands to the probes, at mOthello's
  size (1000 games x 59 positions, 9 layers, d_model 512): the old fancy-indexed copy of
  every array against ours, which keeps the collection's own arrays when every language
  has every position (the usual case).
"""
import os
import time

import numpy as np
import pytest
import torch

import mothello_fast.activations as activations
from mothello_fast.activations import collect_activations
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import generate_games

N_GAMES = int(os.environ.get("ANALYSIS_BENCH_GAMES", 32))
ROUNDS = int(os.environ.get("ANALYSIS_BENCH_ROUNDS", 9))
SECTION = f"collection {N_GAMES} games"


def _whole_forward(gpt, tokens, hooks):
    """The old collection: every block and the unembedding, whatever the hooks."""
    return dict(gpt.run_with_cache(tokens, names_filter=hooks)[1])


@pytest.fixture(scope="module")
def setup():
    language_set = LanguageSet.from_spec("atomic,atomic", seed=0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=language_set.context_length, dropout=0.0)).eval()
    games = generate_games(N_GAMES, seed=1)
    collect_activations(model, language_set, games[:4], language="L0", progress=False)  # warm-up
    return model, language_set, games


def _seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@pytest.mark.parametrize("layers", [(6,), (2,), tuple(range(9))],
                         ids=["layer 6", "layer 2", "layers 0-8"])
def test_collection_stops_after_the_deepest_layer(setup, report, monkeypatch, layers):
    model, language_set, games = setup

    def collect():
        return collect_activations(model, language_set, games, language="L0", layers=layers,
                                   progress=False)

    ours, old = [], []
    for _ in range(ROUNDS):   # alternate, so that both see the same machine
        with monkeypatch.context() as m:
            m.setattr(activations, "_run_to_last_hook", _whole_forward)
            seconds, before = _seconds(collect)
        old.append(seconds)
        seconds, after = _seconds(collect)
        ours.append(seconds)
    for hook in before.hidden:
        np.testing.assert_array_equal(after.hidden[hook], before.hidden[hook])
    name = f"layers {layers[0]}-{layers[-1]}" if len(layers) > 1 else f"layer {layers[0]}"
    report(SECTION, f"{name}: whole forward (old) s, fastest", min(old), "s")
    report(SECTION, f"{name}: stopped after the layer s, fastest", min(ours), "s")
    report(SECTION, f"{name}: speed-up (median of pairs)",
           float(np.median(np.array(old) / np.array(ours))), "x")


def test_alignment_keeps_the_collected_arrays(report):
    from mothello_fast.activations import _take

    rng = np.random.default_rng(0)
    n = 1000 * 59
    hidden = [rng.standard_normal((n, 512), dtype=np.float32) for _ in range(9)]
    rows = np.arange(n)
    old, _ = _seconds(lambda: [h[rows] for h in hidden])
    ours, kept = _seconds(lambda: [_take(h, rows) for h in hidden])
    assert all(k is h for k, h in zip(kept, hidden))
    section = "alignment 1000 games x 9 layers"
    report(section, "copy at common positions (old) s per language", old, "s")
    report(section, "ours s per language", ours, "s")
