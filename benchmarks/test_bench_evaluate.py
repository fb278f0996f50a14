"""Legal-move accuracy of multi-token languages against an atomic one, before and after
the key-value cache (same run, same model, same games, the same answers).

    python3 -m pytest benchmarks/test_bench_evaluate.py -q -s

Before: `evaluate` as it was (one full forward pass over the game's prefix for every
prediction still spelling its move), loaded from git at EVAL_BENCH_BEFORE (default the
commit before the change); after: the prefix's keys and values reused, one token of compute
a sub-token. The model (2 layers, d_model 128: the `cpu` scale's shape) is random with its
output biased to the language evaluated, as a trained model's is, so that its greedy
predictions walk through whole codes, prefixes and dead ends. One torch thread.
"""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mothello_fast.evaluate import legal_move_accuracy
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import generate_games

ROOT = Path(__file__).resolve().parent.parent
BEFORE = os.environ.get("EVAL_BENCH_BEFORE", "bee98fb")   # the last commit with full passes
N_GAMES = int(os.environ.get("EVAL_BENCH_GAMES", "300"))
SECTION = f"legal-move accuracy, {N_GAMES} games, 2 layers d_model 128"


def _old_evaluate():
    """`mothello_fast.evaluate` as of commit BEFORE, imported beside today's."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE}:mothello_fast/evaluate.py"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip(f"git cannot show the evaluation of {BEFORE}")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "evaluate_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("mothello_fast.evaluate_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _model(language_set, language):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=language_set.context_length, n_layers=2, n_heads=4,
                          d_model=128, d_mlp=512, dropout=0.0)).eval()
    ids = np.asarray(language_set.token_ids(language))
    with torch.no_grad():
        model.unembed.bias.fill_(-30.0)
        model.unembed.bias[torch.as_tensor(np.unique(ids[ids >= 0]))] = 0.0
    return model


def _seconds(function, rounds: int = 3) -> tuple[float, float]:
    best, value = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def test_multi_token_languages_against_atomic_before_and_after(report):
    old = _old_evaluate()
    torch.set_num_threads(1)
    language_set = LanguageSet.from_spec("atomic,split:3,compositional", seed=0)
    games = generate_games(N_GAMES, seed=11)
    seconds = {}
    for name, kind in zip(language_set.names, ("atomic", "split", "compositional")):
        model = _model(language_set, name)
        before, a = _seconds(lambda: old.legal_move_accuracy(model, language_set, games,
                                                             language=name), rounds=1)
        after, b = _seconds(lambda: legal_move_accuracy(model, language_set, games,
                                                        language=name))
        assert a == b, (kind, a, b)   # the same answers
        seconds[kind] = (before, after)
        report(SECTION, f"{kind}: before s", before, "s")
        report(SECTION, f"{kind}: after s", after, "s")
        report(SECTION, f"{kind}: speed-up", before / after, "x")
    for kind in ("split", "compositional"):
        report(SECTION, f"{kind} / atomic, before", seconds[kind][0] / seconds["atomic"][0], "x")
        report(SECTION, f"{kind} / atomic, after (goal <= 2)",
               seconds[kind][1] / seconds["atomic"][1], "x")
