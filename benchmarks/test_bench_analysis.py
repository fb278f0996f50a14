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


PHASE_GAMES = int(os.environ.get("ANALYSIS_BENCH_PHASE_GAMES", 100))
PHASE_ROUNDS = int(os.environ.get("ANALYSIS_BENCH_PHASE_ROUNDS", 3))


def test_the_analysis_phase_collects_once(report):
    """A study cell's analysis phase on one model (all layers, both language pairs): probes
    trained on `PHASE_GAMES` probe games and tested on 40 test games, the unification score
    and the concept metrics on the test games. Before: each analysis collects its own
    activations (the model-driving helpers: `model_alignment`, then the test games again for
    unification and again for `concept_report`'s metrics); after: one collection of each
    games array, read by `align`, `unification_score` and `concept_metrics`. Same results
    (checked); alternated `PHASE_ROUNDS` times."""
    from mothello_fast.activations import collect_parallel
    from mothello_fast.alignment import align, model_alignment
    from mothello_fast.concepts import concept_metrics
    from mothello_fast.kmeans import KMeans
    from mothello_fast.probes import LinearProbe
    from mothello_fast.unification import unification_score

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    language_set = LanguageSet.from_spec("atomic,split", seed=0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=language_set.context_length, n_layers=4,
                          d_model=256, n_heads=8, dropout=0.0)).eval()
    probe_games, test_games = generate_games(PHASE_GAMES, seed=1), generate_games(40, seed=2)
    layers = list(range(5))
    probe = LinearProbe(epochs=4, batch_size=512, lr=3e-3, device="cpu")
    kmeans = KMeans(20, n_init=3, max_iter=50, seed=0, device="cpu")

    def unification(test):
        return [unification_score(*test.stacked(layer)).score for layer in layers]

    def before():
        alignment = model_alignment(model, language_set, probe_games, test_games=test_games,
                                    layers=layers, probe=probe, progress=False)
        scores = [unification_score(*collect_parallel(model, language_set, test_games,
                                                      layers=[l], progress=False).stacked(l)).score
                  for l in layers]
        concepts = concept_metrics(collect_parallel(model, language_set, test_games,
                                                    layers=layers, progress=False),
                                   kmeans=kmeans)
        return alignment, scores, concepts

    def after():
        train = collect_parallel(model, language_set, probe_games, layers=layers, progress=False)
        test = collect_parallel(model, language_set, test_games, layers=layers, progress=False)
        return align(train, test, probe=probe), unification(test), concept_metrics(
            test, kmeans=kmeans)

    try:
        old, ours = [], []
        for _ in range(PHASE_ROUNDS):
            seconds, first = _seconds(before)
            old.append(seconds)
            seconds, second = _seconds(after)
            ours.append(seconds)
        collect_seconds, _ = _seconds(lambda: [collect_parallel(
            model, language_set, g, layers=layers, progress=False)
            for g in (probe_games, test_games)])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first[0].matrices, second[0].matrices):
        np.testing.assert_array_equal(a.accuracy, b.accuracy)
    assert first[1] == second[1]
    assert [r.to_dict() for r in first[2].per_layer] == [r.to_dict() for r in second[2].per_layer]
    section = f"analysis phase {PHASE_GAMES}+40 games"
    report(section, "collect per analysis (before) s, fastest", min(old), "s")
    report(section, "collect once (after) s, fastest", min(ours), "s")
    report(section, "one collection of both games arrays s", collect_seconds, "s")
    report(section, "speed-up (median of pairs)",
           float(np.median(np.array(old) / np.array(ours))), "x")
