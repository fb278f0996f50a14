"""Encoding throughput against a plain Python per-move loop (same run), and batch
building of a `Corpus` on the GPU when there is one (else on the CPU).

    python -m pytest benchmarks/test_bench_languages.py --benchmark-enable -q -s

The loop builds the same three arrays as `LanguageSet.encode` (tokens, move index,
move end), one move at a time, from per-square lists of ids. The target is a ratio of
at least 50 (reported as a figure, not asserted: timings on shared machines swing).
Fresh output arrays cost their first touch (page faults), which on some machines
costs more than the encoding; the reused-arrays figure leaves it out.
"""

import numpy as np
import pytest
import torch

import mothello_fast as mf
from conftest import median_seconds
from mothello_fast.corpus import Corpus
from mothello_fast.devices import resolve_device
from mothello_fast.languages import LanguageSet

N_GAMES = 100_000
N_LOOP = 5_000
MIN_RATIO = 50


@pytest.fixture(scope="module")
def games():
    return mf.generate_games(N_GAMES, seed=0)


@pytest.fixture(scope="module")
def rates():
    return {}


LANGUAGES = {"atomic": LanguageSet.from_spec("atomic"), "split": LanguageSet.from_spec("split", seed=0)}


def encode_loop(ls: LanguageSet, games: np.ndarray):
    """Per-move Python loop producing tokens, move_index, move_end."""
    table = ls.token_ids(0)
    codes = {s: [int(i) for i in table[s] if i >= 0] for s in range(64)}
    ends = {s: [False] * (len(c) - 1) + [True] for s, c in codes.items() if c}
    T = ls.context_length
    tokens, move_index, move_end = [], [], []
    for game in games.tolist():
        tok, idx, end = [], [], []
        for i, square in enumerate(game):
            if square < 0:
                break
            ids = codes[square]
            tok.extend(ids)
            idx.extend([i] * len(ids))
            end.extend(ends[square])
        pad = T - len(tok)
        tokens.append(tok + [0] * pad)
        move_index.append(idx + [-1] * pad)
        move_end.append(end + [False] * pad)
    return np.array(tokens, np.int64), np.array(move_index, np.int64), np.array(move_end, bool)


@pytest.mark.parametrize("kind", list(LANGUAGES))
def test_python_loop_baseline(benchmark, report, rates, games, kind):
    ls = LANGUAGES[kind]
    out = benchmark.pedantic(encode_loop, args=(ls, games[:N_LOOP]), rounds=3, iterations=1)
    rates[kind, "loop"] = report(f"encode {kind}", "Python per-move loop, tokens/s",
                                 (out[0] > 0).sum() / median_seconds(benchmark))


def _compare(report, rates, kind, label, rate):
    if (kind, "loop") in rates:
        ratio = report(f"encode {kind}", f"{label} / Python loop", rate / rates[kind, "loop"])
        report(f"encode {kind}", f"{label}: meets the {MIN_RATIO}x target (1 yes, 0 no)",
               float(ratio >= MIN_RATIO))


@pytest.mark.parametrize("threads", [1, None])
@pytest.mark.parametrize("kind", list(LANGUAGES))
def test_encode_numpy(benchmark, report, rates, games, kind, threads):
    ls = LANGUAGES[kind]
    enc = benchmark.pedantic(ls.encode, args=(games, 0), kwargs=dict(threads=threads), rounds=5,
                             iterations=1, warmup_rounds=1)
    label = f"numpy encode, fresh arrays, {threads or 'all'} thread(s)"
    rate = report(f"encode {kind}", f"{label}, tokens/s",
                  (enc.tokens > 0).sum() / median_seconds(benchmark))
    expected = encode_loop(ls, games[:200])
    got = (enc.tokens, enc.move_index, enc.move_end)
    assert all((a[:200] == b).all() for a, b in zip(got, expected))
    _compare(report, rates, kind, label, rate)


@pytest.mark.parametrize("kind", list(LANGUAGES))
def test_encode_numpy_reused_arrays(benchmark, report, rates, games, kind):
    ls = LANGUAGES[kind]
    buffer = ls.encode(games, 0)
    benchmark.pedantic(ls.encode, args=(games, 0), kwargs=dict(threads=1, out=buffer), rounds=5,
                       iterations=1, warmup_rounds=1)
    label = "numpy encode, reused arrays, 1 thread"
    rate = report(f"encode {kind}", f"{label}, tokens/s",
                  (buffer.tokens > 0).sum() / median_seconds(benchmark))
    _compare(report, rates, kind, label, rate)


@pytest.mark.parametrize("kind", list(LANGUAGES))
def test_encode_torch_cpu(benchmark, report, rates, games, kind):
    ls = LANGUAGES[kind]
    tensor = torch.from_numpy(games)
    enc = benchmark.pedantic(ls.encode, args=(tensor, 0), rounds=5, iterations=1, warmup_rounds=1)
    rate = report(f"encode {kind}", "CPU tensor encode, tokens/s",
                  int((enc.tokens > 0).sum()) / median_seconds(benchmark))
    _compare(report, rates, kind, "CPU tensor encode", rate)


@pytest.mark.parametrize("spec, objective", [("atomic,atomic", "standard"),
                                             ("atomic,split,compositional", "standard"),
                                             ("atomic,split,compositional", "unified")])
def test_corpus_batches(benchmark, report, games, spec, objective):
    """Batches of 1024 games built on the corpus device (CUDA when present)."""
    device = resolve_device().type
    ls = LanguageSet.from_spec(spec, unified=objective == "unified", n_anchors=4)
    corpus = Corpus(games, ls, batch_size=1024, objective=objective, seed=0, device=device)
    steps = 200 if device == "cuda" else 10
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def build():
        for step in range(steps):
            batch = corpus.batch(step)
        sync()
        return batch

    build()
    batch = benchmark.pedantic(build, rounds=3, iterations=1)
    seconds = median_seconds(benchmark) / steps
    section = f"corpus {device} {objective}"
    report(section, f"{spec}: batches/s (1024 games)", 1 / seconds)
    report(section, f"{spec}: tokens/s (non-pad)",
           int((batch.tokens > 0).sum()) / seconds)
    report(section, f"{spec}: ms per batch", seconds * 1e3)
    # sanity: the batch decodes back to its games
    assert torch.equal(ls.decode(batch.tokens).cpu(), batch.games.cpu())


def test_first_touch_of_encode_output(benchmark, report):
    """Writing the fresh output arrays of a split encode once: the floor under any encoder."""
    T = LANGUAGES["split"].context_length

    def touch():
        np.ones((N_GAMES, T), np.int64), np.ones((N_GAMES, T), np.int64), np.ones((N_GAMES, T), bool)

    benchmark.pedantic(touch, rounds=3, iterations=1)
    report("encode split", "first touch of output, games/s", N_GAMES / median_seconds(benchmark))


