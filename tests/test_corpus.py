"""Multilingual corpora: batches against the move-by-move reference, reproducibility,
language sampling, per-language subsets and parallel mode."""
import numpy as np
import pytest
import torch

import mothello_fast as mf
from mothello_fast.corpus import Batch, Corpus
from mothello_fast.errors import LanguageError
from mothello_fast.languages import LanguageSet
from language_oracle import assign_ids, encode_game, standard_targets, unified_targets


@pytest.fixture(scope="module")
def games():
    return mf.generate_games(2000, seed=11)


@pytest.fixture(scope="module")
def language_set():
    return LanguageSet.from_spec("atomic,split,compositional", n_anchors=6, seed=1, unified=True)


def codes_of(ls):
    return assign_ids([lang.square_tokens for lang in ls.languages], ls.anchors,
                      ls.output_language.square_tokens if ls.output_language else None)[0]


def same_batch(a: Batch, b: Batch) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in
               ("tokens", "targets", "language_ids", "move_end", "move_index", "game_index"))


@pytest.mark.parametrize("objective", ["standard", "unified"])
def test_batch_rows_match_the_move_by_move_reference(games, language_set, objective):
    corpus = Corpus(games, language_set, batch_size=64, objective=objective, seed=3)
    batch = corpus.batch(5)
    codes = codes_of(language_set)
    T = language_set.context_length
    for row in range(64):
        game = games[int(batch.game_index[row])].tolist()
        code = codes[int(batch.language_ids[row])]
        tokens, move_index, move_end = encode_game(game, code, T)
        assert batch.tokens[row].tolist() == tokens
        assert batch.move_index[row].tolist() == move_index
        assert batch.move_end[row].tolist() == move_end
        expected = standard_targets(tokens) if objective == "standard" else \
            unified_targets(game, code, codes[-1], T)
        assert batch.targets[row].tolist() == expected
        assert batch.games[row].tolist() == game


def test_batch_is_a_pure_function_of_seed_and_step(games, language_set):
    a = Corpus(games, language_set, batch_size=32, seed=4)
    b = Corpus(games, language_set, batch_size=32, seed=4)
    b.batch(9)                                         # asking out of order changes nothing
    assert same_batch(a.batch(2), b.batch(2))
    assert not torch.equal(a.batch(2).game_index, a.batch(3).game_index)
    assert not torch.equal(a.batch(2).game_index,
                           Corpus(games, language_set, batch_size=32, seed=5).batch(2).game_index)


def test_iteration_yields_batches_from_step_zero(games, language_set):
    corpus = Corpus(games, language_set, batch_size=8, seed=0)
    it = iter(corpus)
    assert same_batch(next(it), corpus.batch(0)) and same_batch(next(it), corpus.batch(1))


def test_languages_are_drawn_with_the_given_weights(games, language_set):
    corpus = Corpus(games, language_set, batch_size=4000, weights=[0.6, 0.0, 0.4], seed=1)
    counts = np.bincount(corpus.batch(0).language_ids.numpy(), minlength=3)
    assert counts[1] == 0
    # binomial(4000, 0.6): sd ~ 31; 5 sd tolerance
    assert abs(counts[0] - 2400) < 160 and counts.sum() == 4000


def test_weights_by_name_equal_weights_by_position(games, language_set):
    by_name = Corpus(games, language_set, batch_size=16, weights={"L2": 1, "L0": 3}, seed=2)
    by_pos = Corpus(games, language_set, batch_size=16, weights=[3, 0, 1], seed=2)
    assert same_batch(by_name.batch(1), by_pos.batch(1))


def test_default_weights_draw_languages_and_games_uniformly(games, language_set):
    batch = Corpus(games, language_set, batch_size=30000, seed=6).batch(0)
    counts = np.bincount(batch.language_ids.numpy(), minlength=3)
    assert (np.abs(counts - 10000) < 400).all()           # sd ~ 82
    per_game = np.bincount(batch.game_index.numpy(), minlength=len(games))
    # chi-square with 1999 dof: mean 1999, sd ~ 63
    chi2 = ((per_game - 15) ** 2 / 15).sum()
    assert abs(chi2 - 1999) < 400


def test_each_language_draws_only_from_its_game_subset(games, language_set):
    prefix = games[:, 0] == 19                           # games that open with c4
    subsets = {"L0": np.flatnonzero(prefix), "L1": ~prefix}
    corpus = Corpus(games, language_set, batch_size=3000, language_games=subsets, seed=2)
    batch = corpus.batch(0)
    lang, index = batch.language_ids.numpy(), batch.game_index.numpy()
    assert prefix[index[lang == 0]].all()
    assert not prefix[index[lang == 1]].any()
    assert prefix[index[lang == 2]].any() and not prefix[index[lang == 2]].all()
    assert len(np.unique(index[lang == 0])) > 0.5 * min(prefix.sum(), (lang == 0).sum())


def test_an_empty_list_of_games_is_no_games_for_that_language(games, language_set):
    corpus = Corpus(games, language_set, batch_size=200, weights=[1, 0, 1],
                    language_games={"L1": []}, seed=0)
    assert (corpus.batch(0).language_ids != 1).all()
    with pytest.raises(LanguageError, match="positive weight but no games"):
        Corpus(games, language_set, batch_size=8, language_games={"L1": []})


def test_parallel_mode_writes_each_game_in_every_language_language_major(games, language_set):
    corpus = Corpus(games, language_set, batch_size=10, mode="parallel", seed=0)
    batch = corpus.batch(0)
    assert corpus.rows_per_batch == 30 and batch.tokens.shape[0] == 30
    assert batch.language_ids.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    index = batch.game_index.view(3, 10)
    assert (index == index[0]).all()
    decoded = language_set.decode(batch.tokens).view(3, 10, 60)
    assert (decoded == batch.games.view(3, 10, 60)).all()
    assert (decoded[1] == decoded[0]).all() and (decoded[2] == decoded[0]).all()


def test_parallel_mode_draws_games_every_language_may_use(games, language_set):
    first = np.arange(len(games)) < 1200
    last = np.arange(len(games)) >= 800
    corpus = Corpus(games, language_set, batch_size=500, mode="parallel",
                    language_games={"L0": first, "L2": last}, seed=1)
    index = corpus.batch(0).game_index.numpy()
    assert ((index >= 800) & (index < 1200)).all()


def test_corpus_accepts_a_torch_games_tensor(games, language_set):
    a = Corpus(games, language_set, batch_size=16, seed=7)
    b = Corpus(torch.from_numpy(games).long(), language_set, batch_size=16, seed=7)
    assert b.games.dtype == torch.int8 and same_batch(a.batch(3), b.batch(3))


def test_batches_live_on_the_corpus_device(games, language_set):
    batch = Corpus(games, language_set, batch_size=4, device="cpu").batch(0)
    assert all(t.device.type == "cpu" for t in (batch.tokens, batch.targets, batch.language_ids))
    assert batch.tokens.dtype == torch.int64 and batch.move_end.dtype == torch.bool


@pytest.mark.parametrize("kwargs, message", [
    (dict(objective="unified", language_set=LanguageSet.from_spec("atomic")), "output language"),
    (dict(mode="shuffled"), "mode"),
    (dict(objective="mlm"), "objective"),
    (dict(batch_size=0), "batch_size"),
    (dict(weights=[1, 2]), "weights"),
    (dict(weights=[1, -1, 1]), "weights"),
    (dict(weights={"fr": 1}), "unknown language 'fr'"),
    (dict(language_games={"fr": [1, 2]}), "unknown language 'fr'"),
    (dict(language_games={"L0": [5, 2000]}), "indices"),
    (dict(language_games={"L0": np.ones(3, bool)}), "mask of shape"),
    (dict(language_games={"L0": np.array([], dtype=np.int64)}), "no games"),
    (dict(mode="parallel", weights=[1, 1, 1]), "sample"),
    (dict(mode="parallel", language_games={"L0": [1], "L1": [2]}), "no game"),
])
def test_bad_corpus_arguments_raise_language_error(games, language_set, kwargs, message):
    kwargs = {"language_set": language_set, "batch_size": 8, **kwargs}
    with pytest.raises(LanguageError, match=message):
        Corpus(games, **kwargs)


def test_negative_step_raises_language_error(games, language_set):
    with pytest.raises(LanguageError, match="step"):
        Corpus(games, language_set, batch_size=4).batch(-1)


def test_a_batch_drawn_while_another_is_drawn_is_unchanged(games, language_set, monkeypatch):
    corpus = Corpus(games, language_set, batch_size=64, seed=2)
    expected = corpus.batch(1)
    real_multinomial, nested = torch.multinomial, []

    def multinomial_with_another_batch(*args, **kwargs):   # as a second thread would
        if not nested:
            nested.append(None)
            nested[0] = corpus.batch(7)
        return real_multinomial(*args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", multinomial_with_another_batch)
    assert same_batch(corpus.batch(1), expected)
    assert same_batch(nested[0], Corpus(games, language_set, batch_size=64, seed=2).batch(7))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_corpus_without_cuda_is_a_clear_error():
    with pytest.raises(mf.MothelloError, match="device='cuda': this machine has 0 CUDA"):
        Corpus(mf.generate_games(4, seed=0), LanguageSet.from_spec("atomic"), batch_size=2,
               device="cuda")
