"""Encoding, decoding, targets and corpus batches on CUDA against the numpy encoder
(itself checked against the move-by-move reference in tests/test_languages.py).

    python -m pytest tests/gpu/test_languages_gpu.py -q
"""
import numpy as np
import pytest
import torch

import mothello_fast as mf
from mothello_fast.corpus import Corpus
from mothello_fast.languages import LanguageSet

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def language_set():
    return LanguageSet.from_spec("atomic,split,compositional,split:2", n_anchors=7, seed=2,
                                 unified=True)


@pytest.fixture(scope="module")
def games():
    games = mf.generate_games(3000, seed=5)
    lengths = np.random.default_rng(0).integers(0, 61, size=len(games))
    games[1000:][np.arange(60) >= lengths[1000:, None]] = -1     # some games cut short
    return games


@pytest.mark.parametrize("language", range(4))
def test_cuda_encode_equals_numpy_encode(language_set, games, language):
    expected = language_set.encode(games, language)
    got = language_set.encode(torch.from_numpy(games).cuda(), language)
    assert got.tokens.is_cuda and got.tokens.dtype == torch.int64
    for name in ("tokens", "move_index", "move_end"):
        assert np.array_equal(getattr(got, name).cpu().numpy(), getattr(expected, name)), name


def test_cuda_encode_with_per_row_languages_equals_numpy(language_set, games):
    rows = np.random.default_rng(1).integers(0, 4, size=len(games))
    expected = language_set.encode(games, rows)
    got = language_set.encode(torch.from_numpy(games).cuda(), torch.from_numpy(rows).cuda())
    assert np.array_equal(got.tokens.cpu().numpy(), expected.tokens)
    assert np.array_equal(got.move_end.cpu().numpy(), expected.move_end)


@pytest.mark.parametrize("objective", ["standard", "unified"])
def test_cuda_targets_equal_numpy_targets(language_set, games, objective):
    for language in range(4):
        expected = language_set.make_targets(language_set.encode(games, language), objective)
        got = language_set.make_targets(language_set.encode(torch.from_numpy(games).cuda(), language),
                                        objective)
        assert got.is_cuda and np.array_equal(got.cpu().numpy(), expected)


def test_cuda_decode_returns_the_games_on_cuda(language_set, games):
    tokens = language_set.encode(torch.from_numpy(games).cuda(), 2).tokens
    out = language_set.decode(tokens)
    assert out.is_cuda and out.dtype == torch.int8 and np.array_equal(out.cpu().numpy(), games)


@pytest.mark.parametrize("mode", ["sample", "parallel"])
def test_cuda_corpus_batch_equals_numpy_encoding_of_its_games(language_set, games, mode):
    corpus = Corpus(games, language_set, batch_size=256, objective="unified", mode=mode,
                    seed=3, device="cuda")
    batch = corpus.batch(4)
    assert all(t.is_cuda for t in (batch.tokens, batch.targets, batch.language_ids,
                                   batch.move_end, batch.move_index, batch.game_index))
    index = batch.game_index.cpu().numpy()
    rows = batch.language_ids.cpu().numpy()
    expected = language_set.encode(games[index], rows)
    assert np.array_equal(batch.tokens.cpu().numpy(), expected.tokens)
    assert np.array_equal(batch.targets.cpu().numpy(), language_set.make_targets(expected, "unified"))
    again = Corpus(games, language_set, batch_size=256, objective="unified", mode=mode, seed=3,
                   device="cuda").batch(4)
    assert torch.equal(again.tokens, batch.tokens) and torch.equal(again.game_index, batch.game_index)
