"""Trainer and legal-move accuracy.

Oracles: hand-worked learning rates; a slow per-move loop (`slow_legal_accuracy`)
that decodes each prediction one forward pass at a time and asks `Board` whether
the move is legal; an uninterrupted run for resume equality; the same model
evaluated before training for the accuracy gain.
"""
import json

import numpy as np
import pytest
import torch

from mothello_fast import corpus as corpus_module
from mothello_fast.checkpoint import load_checkpoint, load_model
from mothello_fast.cli import main
from mothello_fast.datasets import write_games
from mothello_fast.errors import CheckpointError, ConfigError
from mothello_fast.evaluate import evaluate_checkpoint, evaluate_languages, legal_move_accuracy
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import Board, generate_games
from mothello_fast.train import (TrainConfig, learning_rate, load_train_config, make_optimizer,
                                 train)

TINY = dict(n_layers=1, n_heads=2, d_model=32, d_mlp=64, batch_size=16, warmup_steps=2,
            eval_every=0, eval_games=8, log_every=1, compile=False)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def games():
    return generate_games(3000, seed=11), generate_games(64, seed=12)


# ---- schedule, optimizer, config -------------------------------------------------------

def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_ten_percent():
    config = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    got = [learning_rate(s, config) for s in (0, 4, 9, 10, 60, 110)]
    np.testing.assert_allclose(got, [1e-4, 5e-4, 1e-3, 1e-3, 0.55e-3, 1e-4], rtol=1e-12)


def test_weight_decay_applies_to_linear_weights_only():
    model = GPT(GPTConfig(vocab_size=20, context_length=8, n_layers=2, n_heads=2, d_model=8,
                          d_mlp=16))
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.1
               for p in g["params"]}
    expected = {f"blocks.{l}.{m}.weight" for l in range(2)
                for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")} | {"unembed.weight"}
    assert decayed == expected
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)


def test_config_file_and_overrides_set_fields(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("languages: atomic,split\nlr: 0.001\nbatch_size: 32\n")
    config = load_train_config(path, ["batch_size=64", "betas=[0.9, 0.99]", "compile=true"])
    assert (config.languages, config.lr, config.batch_size, config.betas, config.compile) == \
        ("atomic,split", 0.001, 64, (0.9, 0.99), True)
    (tmp_path / "train.json").write_text(json.dumps({"max_steps": 7}))
    assert load_train_config(tmp_path / "train.json").max_steps == 7


def test_unknown_config_field_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown TrainConfig field\(s\) \['learning_rate'\]"):
        load_train_config(None, ["learning_rate=0.1"])


# ---- legal-move accuracy ---------------------------------------------------------------

def slow_legal_accuracy(model, language_set, games, language, objective):
    """One game and one move at a time: feed the tokens up to the end of move i, decode
    greedily one forward pass per sub-token, and ask `Board` whether the move is legal."""
    code_language = language_set.output_language if objective == "unified" else language
    codes = {tuple(int(t) for t in row if t >= 0): square
             for square, row in enumerate(language_set.token_ids(code_language)) if row.max() >= 0}
    prefixes = {code[:j] for code in codes for j in range(1, len(code))}
    correct = total = 0
    with torch.no_grad():
        for game in games:
            moves = [int(m) for m in game if m >= 0]
            encoded = language_set.encode(game[None], language)
            tokens = [int(t) for t in np.asarray(encoded.tokens)[0]]
            ends = np.asarray(encoded.move_end)[0] & (np.asarray(encoded.move_index)[0] >= 0)
            index = np.asarray(encoded.move_index)[0]
            for i in range(len(moves) - 1):
                where = np.nonzero(ends & (index == i))[0]
                if len(where) == 0:
                    continue
                context, generated, square = tokens[:where[0] + 1], (), None
                while len(context) <= model.config.context_length:
                    generated += (int(model(torch.tensor([context]))[0][0, -1].argmax()),)
                    if generated in codes:
                        square = codes[generated]
                        break
                    if objective == "unified" or generated not in prefixes:
                        break
                    context = context + [generated[-1]]
                total += 1
                correct += square is not None and Board.from_moves(moves[:i + 1]).is_legal(square)
    return correct / total


def biased_random_model(language_set, favoured_language, seed=0, context_length=None):
    """A random model whose predictions fall on `favoured_language`'s tokens, so that greedy
    decoding walks through whole codes, prefixes and dead ends."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=language_set.vocab_size,
                          context_length=context_length or language_set.context_length,
                          n_layers=1, n_heads=2, d_model=32, d_mlp=64, dropout=0.0)).eval()
    ids = np.asarray(language_set.token_ids(favoured_language))
    with torch.no_grad():
        model.unembed.weight.normal_(0.0, 1.0)
        model.unembed.bias.fill_(-30.0)
        model.unembed.bias[torch.as_tensor(np.unique(ids[ids >= 0]))] = 0.0
    return model


@pytest.mark.parametrize("spec, which", [("atomic,split", 1), ("atomic,compositional", 1),
                                         ("split,atomic", 0)])
def test_standard_accuracy_matches_slow_greedy_decoding(spec, which):
    language_set = LanguageSet.from_spec(spec, seed=5)
    language = language_set.names[which]
    model = biased_random_model(language_set, language)
    games = generate_games(2, seed=3)
    expected = slow_legal_accuracy(model, language_set, games, language, "standard")
    got = legal_move_accuracy(model, language_set, games, language=language, batch_size=4)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0


def test_othello_gpt_shaped_model_is_evaluated_on_its_59_token_context():
    language_set = LanguageSet.from_spec("atomic")   # Othello-GPT's vocabulary, 60 tokens
    model = biased_random_model(language_set, "L0", context_length=59)
    games = generate_games(3, seed=6)
    expected = slow_legal_accuracy(model, language_set, games, "L0", "standard")
    got = legal_move_accuracy(model, language_set, games, language="L0")
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0


def test_unified_accuracy_matches_slow_greedy_decoding():
    language_set = LanguageSet.from_spec("split,atomic", unified=True, seed=5)
    model = biased_random_model(language_set, language_set.output_language)
    games = generate_games(3, seed=4)
    for language in language_set.names:
        if language == language_set.output_language:
            continue
        expected = slow_legal_accuracy(model, language_set, games, language, "unified")
        got = legal_move_accuracy(model, language_set, games, language=language,
                                  objective="unified", batch_size=4)
        assert got == pytest.approx(expected, abs=1e-12), language
        assert 0.0 < expected < 1.0


# ---- training ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """~20 s on one CPU thread: a 2-layer, d_model 64 model on two atomic languages."""
    train_games = generate_games(30_000, seed=21)
    val_games = generate_games(200, seed=22)
    config = TrainConfig(languages="atomic,atomic", n_layers=2, n_heads=4, d_model=64,
                         d_mlp=256, dropout=0.0, batch_size=32, lr=3e-3, warmup_steps=20,
                         max_steps=800, eval_every=800, eval_games=200, log_every=50,
                         checkpoint_every=0, compile=False, seed=1)
    out = tmp_path_factory.mktemp("run")
    return train(config, train_games=train_games, val_games=val_games, out_dir=out,
                 progress=False), out


def test_short_training_beats_the_untrained_model_in_every_language(trained):
    # Measured when written: untrained ~0.07 in each language; after 800 steps of 32 games
    # (~20 s on one thread) 0.483 and 0.480.
    result, _ = trained
    before, after = result.metrics[0], result.metrics[-1]
    assert before["step"] == 0 and after["step"] == 800
    for language in result.language_set.names:
        key = f"legal_acc/{language}"
        assert before[key] < 0.15, (key, before[key])
        assert after[key] > before[key] + 0.3, (key, before[key], after[key])


def test_metrics_log_and_final_checkpoint_match_the_result(trained):
    result, out = trained
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == result.metrics
    assert [r["step"] for r in logged if "loss" in r] == list(range(50, 801, 50))
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.step == 800 and ckpt.train_config["languages"] == "atomic,atomic"
    model, language_set = load_model(result.checkpoint)
    games = generate_games(200, seed=22)
    assert evaluate_languages(model, language_set, games) == pytest.approx(
        {k: v for k, v in result.metrics[-1].items() if k != "step"})


def test_resumed_run_repeats_the_uninterrupted_loss_curve(tmp_path, games, monkeypatch):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=12, checkpoint_every=5, seed=3,
                         dropout=0.1, **TINY)
    whole = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "a",
                  progress=False)

    real_batch = corpus_module.Corpus.batch

    def interrupted(self, step):
        if step == 8:
            raise KeyboardInterrupt
        return real_batch(self, step)

    monkeypatch.setattr(corpus_module.Corpus, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "b",
              progress=False)
    monkeypatch.setattr(corpus_module.Corpus, "batch", real_batch)
    resumed = train(config, train_games=train_games, val_games=val_games,
                    out_dir=tmp_path / "b", resume=True, progress=False)
    curve = [(r["step"], r["loss"]) for r in whole.metrics if "loss" in r]
    assert [(r["step"], r["loss"]) for r in resumed.metrics if "loss" in r] == curve
    assert len(curve) == 12
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_with_another_training_config_is_refused(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=2, checkpoint_every=1, **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path, progress=False)
    changed = TrainConfig(languages="atomic,atomic", max_steps=2, checkpoint_every=1,
                          **{**TINY, "batch_size": 8})
    with pytest.raises(CheckpointError, match="batch_size: checkpoint 16, now 8"):
        train(changed, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              resume=True, progress=False)


def test_fresh_run_into_an_existing_run_is_refused(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=1, **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="already holds a training run"):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              progress=False)


def test_init_from_starts_from_the_checkpoint_weights(tmp_path, games, trained):
    result, _ = trained
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", n_layers=2, n_heads=4, d_model=64, d_mlp=256,
                         dropout=0.0, batch_size=16, max_steps=1, eval_every=1, eval_games=32,
                         compile=False, language_weights=[1.0, 0.0])
    tuned = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
                  init_from=result.checkpoint, progress=False)
    model, language_set = load_model(result.checkpoint)
    assert tuned.language_set.to_dict() == language_set.to_dict()
    at_start = evaluate_languages(model, language_set, val_games[:32])
    first = tuned.metrics[0]
    assert first["step"] == 0
    assert {k: v for k, v in first.items() if k != "step"} == pytest.approx(at_start)


def test_cli_trains_and_evaluates_a_checkpoint(tmp_path, games, capsys):
    train_games, _ = games
    write_games(train_games[:500], tmp_path / "data")
    (tmp_path / "cfg.yaml").write_text("languages: atomic,atomic\nn_layers: 1\nn_heads: 2\n"
                                       "d_model: 16\nd_mlp: 32\nbatch_size: 8\n")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                 "--config", str(tmp_path / "cfg.yaml"), "--set", "max_steps=3",
                 "--set", "eval_games=5", "--val-fraction", "0.02", "--quiet"]) == 0
    checkpoint = tmp_path / "run" / "checkpoints" / "step-000003"
    assert load_checkpoint(checkpoint).train_config["max_steps"] == 3
    capsys.readouterr()
    assert main(["eval", str(checkpoint), "--games", "10", "--seed", "5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate_checkpoint(checkpoint, generate_games(10, seed=5), device="cpu")
    assert {k: printed[k] for k in expected} == pytest.approx(expected)


def test_keep_checkpoints_keeps_the_newest(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=4, checkpoint_every=1,
                         keep_checkpoints=2, **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == \
        ["step-000003", "step-000004"]
