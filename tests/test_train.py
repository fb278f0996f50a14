"""Trainer and legal-move accuracy.

Oracles: hand-worked learning rates; a slow per-move loop (`slow_legal_accuracy`)
that decodes each prediction one forward pass at a time and asks `Board` whether
the move is legal; an uninterrupted run for resume equality; the same model
evaluated before training for the accuracy gain.
"""
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from mothello_fast import corpus as corpus_module
from mothello_fast import train as train_module
from mothello_fast.checkpoint import _manifest_digest, load_checkpoint, load_model
from mothello_fast.cli import main
from mothello_fast.datasets import write_games
from mothello_fast.errors import CheckpointError, ConfigError
from mothello_fast.evaluate import evaluate_checkpoint, evaluate_languages, legal_move_accuracy
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import Board, generate_games
from mothello_fast.train import (TrainConfig, learning_rate, load_train_config, make_optimizer,
                                 train, train_step)

TINY = dict(n_layers=1, n_heads=2, d_model=32, d_mlp=64, batch_size=16,
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


def test_a_config_that_cannot_be_read_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'lr=\[1': the value is not valid YAML"):
        load_train_config(None, ["lr=[1"])
    binary = tmp_path / "train.yaml"
    binary.write_bytes(b"lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not valid JSON/YAML"):
        load_train_config(binary)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("1: 2\nfoo: 3\n")   # unknown keys of two types
    with pytest.raises(ConfigError, match=r"unknown TrainConfig field\(s\) \['1', 'foo'\]"):
        load_train_config(mixed)


def test_numbers_written_with_an_exponent_are_read_as_floats():
    # YAML 1.1 reads 1e-3 (no dot) as a string
    config = load_train_config(None, ["lr=1e-3", "min_lr_ratio=1e-1", "weight_decay=1e-2",
                                      "betas=[9e-1, 0.99]", "grad_clip=5e-1"])
    got = (config.lr, config.min_lr_ratio, config.weight_decay, config.betas, config.grad_clip)
    assert got == (0.001, 0.1, 0.01, (0.9, 0.99), 0.5)
    assert all(type(x) is float for x in (*got[:3], *got[3], got[4]))
    model = GPT(GPTConfig(vocab_size=10, context_length=8, n_layers=1, n_heads=2, d_model=32,
                          d_mlp=64))
    assert make_optimizer(model, config).param_groups[0]["lr"] == 0.001


@pytest.mark.parametrize("override, message", [
    ("lr=-1", r"lr=-1: expected a finite number > 0"),
    ("lr=0", r"lr=0: expected a finite number > 0"),
    ("lr=true", r"lr=True: expected a finite number > 0"),
    ("lr=fast", r"lr='fast': expected a finite number > 0"),
    ("weight_decay=-0.5", r"weight_decay=-0.5: expected a finite number >= 0"),
    ("grad_clip=-1", r"grad_clip=-1: expected a finite number >= 0 \(or None"),
    ("betas=[0.9,1.5]", r"betas=\[0.9, 1.5\]: expected two numbers in \[0, 1\)"),
    ("dropout=1.5", r"dropout=1.5: expected a number in \[0, 1\)"),
    ("min_lr_ratio=2e0", r"min_lr_ratio='2e0': expected a number in \[0, 1\]"),
    ("language_weights=[1,x]", r"language_weights=\[1, 'x'\]: expected numbers >= 0"),
    ("lr=.inf", r"lr=inf: expected a finite number > 0"),
    ("weight_decay=.nan", r"weight_decay=nan: expected a finite number >= 0"),
    ("batch_size=0", r"batch_size=0: expected a positive integer"),
    ("warmup_steps=-1", r"warmup_steps=-1: expected an integer >= 0"),
    ("max_steps=2.5", r"max_steps=2.5: expected a positive integer"),
])
def test_out_of_range_or_non_numeric_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [override])


def test_numpy_integers_are_taken_as_integers():
    config = TrainConfig(batch_size=np.int64(16), keep_checkpoints=np.int32(2),
                         warmup_steps=np.uint8(0))
    assert (config.batch_size, config.keep_checkpoints, config.warmup_steps) == (16, 2, 0)
    assert all(type(v) is int for v in (config.batch_size, config.keep_checkpoints))
    json.dumps(config.to_dict())   # as a checkpoint stores it


def _hand_adamw_step(params, grads, optimizer):
    """The parameters one AdamW step (torch's formulas) on `grads` would give, from the
    optimizer's current state; float64, no side effects."""
    out = []
    for group in optimizer.param_groups:
        (b1, b2), lr, eps, wd = group["betas"], group["lr"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            state = optimizer.state[p]
            step = int(state["step"]) + 1 if state else 1
            m = state["exp_avg"].double() if state else torch.zeros_like(p, dtype=torch.float64)
            v = state["exp_avg_sq"].double() if state else torch.zeros_like(m)
            g = grads[p].double()
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            update = (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps)
            out.append(p.detach().double() * (1 - lr * wd) - lr * update)
    return out


@pytest.mark.parametrize("clip", [0.05, None, 0])
def test_train_step_clips_the_gradient_norm_before_the_adamw_step(clip):
    assert TrainConfig(grad_clip=clip).grad_clip == clip   # None and 0: no clipping
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, context_length=12, n_layers=1, n_heads=2, d_model=16,
                          d_mlp=32, dropout=0.0))
    with torch.no_grad():   # sharp logits and random targets: a large loss, whose gradient
        model.unembed.weight.mul_(30)   # norm (~30) is far above the clip and above 1
    optimizer = make_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1))
    gen = torch.Generator().manual_seed(1)
    tokens, targets = (torch.randint(1, 30, (2, 8, 12), generator=gen) for _ in range(2))
    # a first (unclipped) step gives AdamW a state, so that the second step's update
    # depends on the scale of its gradient (a fresh Adam step is nearly scale-free)
    train_step(model, optimizer, tokens[0], targets[0], grad_clip=None)

    params = [p for group in optimizer.param_groups for p in group["params"]]
    _, loss = model(tokens[1], targets[1])
    grads = dict(zip(params, torch.autograd.grad(loss, params)))
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    unclipped = _hand_adamw_step(params, grads, optimizer)
    assert norm > 10
    scale = min(1.0, clip / (float(norm) + 1e-6)) if clip else 1.0
    expected = _hand_adamw_step(params, {p: g * scale for p, g in grads.items()}, optimizer)
    if clip:   # the clipped and unclipped updates can be told apart at this tolerance
        assert max(float((a - b).abs().max()) for a, b in zip(expected, unclipped)) > 1e-4

    _, grad_norm = train_step(model, optimizer, tokens[1], targets[1], grad_clip=clip)
    assert float(grad_norm) == pytest.approx(float(norm), rel=1e-5)   # before clipping
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("keep", [0, -1])
def test_keeping_no_checkpoint_is_refused(keep):
    with pytest.raises(ConfigError,
                       match=rf"keep_checkpoints={keep}: expected a positive integer or None "
                             r"\(keep all\)"):
        TrainConfig(keep_checkpoints=keep)


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
        # a unified set is evaluated in its output space unless told otherwise
        assert legal_move_accuracy(model, language_set, games, language=language,
                                   batch_size=4) == got
        assert evaluate_languages(model, language_set, games, batch_size=4)[
            f"legal_acc/{language}"] == got


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


def test_a_run_without_held_out_games_warns_that_it_measures_nothing(tmp_path, games):
    config = TrainConfig(languages="atomic,atomic", max_steps=1, **TINY)
    with pytest.warns(UserWarning, match="val_games is empty"):
        result = train(config, train_games=games[0], val_games=games[1][:0], out_dir=tmp_path,
                       progress=False)
    assert not any("legal_acc/L0" in r for r in result.metrics)


def test_fresh_run_into_an_existing_run_is_refused(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=1, **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="already holds a training run"):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              progress=False)


@pytest.mark.parametrize("out", ["runs/a", ".", "runs/a/sub/.."])
def test_a_run_into_a_directory_another_run_is_writing_is_refused(tmp_path, games, monkeypatch,
                                                                   out):
    from mothello_fast.storage import writer_lock
    from mothello_fast.runs import RUN_LOCK
    run = tmp_path / "runs" / "a"
    (run / "sub").mkdir(parents=True)
    monkeypatch.chdir(run if out == "." else tmp_path)
    config = TrainConfig(languages="atomic,atomic", max_steps=1, **TINY)
    with writer_lock(run, lock=run / RUN_LOCK):   # as a run in another process holds it
        with pytest.raises(CheckpointError, match=r"another process .* training run"):
            train(config, train_games=games[0], val_games=games[1], out_dir=out,
                  progress=False)
        assert sorted(p.name for p in run.iterdir()) == sorted([RUN_LOCK, "sub"])   # nothing written
    train(config, train_games=games[0], val_games=games[1], out_dir=out, progress=False)
    assert (run / "metrics.jsonl").exists() and not (run / RUN_LOCK).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]   # nothing beside the run


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


def interrupt_at(monkeypatch, step):
    """Make `corpus.Corpus.batch` raise KeyboardInterrupt at `step`; returns the undo."""
    real_batch = corpus_module.Corpus.batch

    def interrupted(self, s):
        if s == step:
            raise KeyboardInterrupt
        return real_batch(self, s)

    monkeypatch.setattr(corpus_module.Corpus, "batch", interrupted)
    return lambda: monkeypatch.setattr(corpus_module.Corpus, "batch", real_batch)


def test_resume_between_log_steps_repeats_the_logged_losses(tmp_path, games, monkeypatch):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=12, seed=3, dropout=0.1,
                         **{**TINY, "log_every": 4, "checkpoint_every": 6})
    whole = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "a",
                  progress=False)
    undo = interrupt_at(monkeypatch, 7)   # after the checkpoint at step 6, mid log window
    with pytest.raises(KeyboardInterrupt):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "b",
              progress=False)
    undo()
    resumed = train(config, train_games=train_games, val_games=val_games,
                    out_dir=tmp_path / "b", resume=True, progress=False)
    curve = [(r["step"], r["loss"]) for r in whole.metrics if "loss" in r]
    assert [r[0] for r in curve] == [4, 8, 12]
    assert [(r["step"], r["loss"]) for r in resumed.metrics if "loss" in r] == curve


@pytest.mark.parametrize("tf32", [True, False])
def test_tf32_holds_while_training_and_the_callers_setting_returns(tmp_path, games, monkeypatch,
                                                                     tf32):
    # k-means, probes and geometry run after training in the same process (the study):
    # they must not inherit the trainer's TF32 matmuls
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    before = tuple(flag.allow_tf32 for flag in flags)
    seen = []
    real_step = train_module.train_step

    def recording_step(*args, **kwargs):
        seen.append(tuple(flag.allow_tf32 for flag in flags))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", recording_step)
    try:
        for flag in flags:
            flag.allow_tf32 = not tf32
        train(TrainConfig(languages="atomic", max_steps=2, tf32=tf32, **TINY),
              train_games=games[0], val_games=games[1], out_dir=tmp_path, progress=False)
        assert seen == [(tf32, tf32)] * 2
        assert tuple(flag.allow_tf32 for flag in flags) == (not tf32, not tf32)
    finally:
        for flag, value in zip(flags, before):
            flag.allow_tf32 = value


def test_tf32_set_by_torchs_new_api_neither_stops_training_nor_is_lost(tmp_path, games):
    # torch >= 2.9 raises on reading allow_tf32 once fp32_precision was set ("a mix of the
    # legacy and new APIs"), the way its documentation now tells callers to set TF32
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    parts = torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn
    if not hasattr(parts[0], "fp32_precision"):
        pytest.skip("this torch has no fp32_precision API")
    legacy, new = tuple(f.allow_tf32 for f in flags), tuple(p.fp32_precision for p in parts)
    try:
        parts[0].fp32_precision, parts[1].fp32_precision = "tf32", "ieee"
        train(TrainConfig(languages="atomic", max_steps=1, tf32=False, **TINY),
              train_games=games[0], val_games=games[1], out_dir=tmp_path, progress=False)
        assert tuple(p.fp32_precision for p in parts) == ("tf32", "ieee", new[2])
    finally:
        for part, value in zip(parts, new):
            part.fp32_precision = value
        for flag, value in zip(flags, legacy):   # back to the legacy API's own state
            flag.allow_tf32 = value


def test_resume_skips_a_metrics_line_cut_short_by_the_interruption(tmp_path, games,
                                                                   monkeypatch):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=4, checkpoint_every=2, **TINY)
    undo = interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              progress=False)
    undo()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')
    resumed = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
                    resume=True, progress=False)
    assert [r["step"] for r in resumed.metrics if "loss" in r] == [1, 2, 3, 4]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == resumed.metrics


def test_a_bad_metrics_line_before_the_resumed_step_is_refused(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=2, checkpoint_every=2, **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
          progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    broken = "\n".join(["{not json"] + lines[1:]) + "\n"
    (tmp_path / "metrics.jsonl").write_text(broken)
    with pytest.raises(CheckpointError, match=r"line 1 of '.*metrics.jsonl' is not a metrics "
                                              r"record"):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              resume=True, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == broken


def test_resume_accepts_language_weights_given_as_a_tuple(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=2, checkpoint_every=1,
                         language_weights=(1, 1.0), **TINY)
    assert config.language_weights == [1.0, 1.0]
    first = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
                  progress=False)
    resumed = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
                    resume=True, progress=False)
    assert resumed.checkpoint == first.checkpoint


def test_checkpoints_folder_ignores_directories_not_named_step_and_digits(tmp_path, games):
    train_games, val_games = games
    (tmp_path / "checkpoints" / "step-000002-copy").mkdir(parents=True)
    config = TrainConfig(languages="atomic,atomic", max_steps=3, checkpoint_every=1,
                         keep_checkpoints=1, **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == \
        ["step-000002-copy", "step-000003"]


@pytest.mark.parametrize("field, saved, message", [
    ("world_size", 2, r"number of processes 2, this run uses 1"),
    ("device_type", "cuda", r"device type 'cuda', this run uses 'cpu'"),
])
def test_resume_on_another_device_or_process_count_warns(tmp_path, games, field, saved,
                                                         message):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=1, device="cpu", **TINY)
    result = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
                   progress=False)
    manifest_path = result.checkpoint / "checkpoint.json"
    manifest = json.loads(manifest_path.read_text())
    assert {k: manifest["extra"]["run"][k] for k in ("device_type", "world_size")} == {
        "device_type": "cpu", "world_size": 1}
    manifest["extra"]["run"][field] = saved
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=message):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              resume=True, progress=False)


def test_resume_on_other_training_games_is_refused_and_on_other_val_games_warns(
        tmp_path, games, monkeypatch):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=2, checkpoint_every=1, **TINY)
    kwargs = dict(out_dir=tmp_path, resume=True, progress=False)
    undo = interrupt_at(monkeypatch, 1)    # after the checkpoint of step 1
    with pytest.raises(KeyboardInterrupt):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              progress=False)
    undo()
    with pytest.raises(CheckpointError, match="trained on other games"):
        train(config, train_games=train_games[::-1], val_games=val_games, **kwargs)
    with pytest.raises(CheckpointError, match="trained on other games"):   # other subsets
        train(config, train_games=train_games, val_games=val_games,
              language_games={"L1": np.arange(100)}, **kwargs)
    with pytest.warns(UserWarning, match="other val_games"):
        train(config, train_games=train_games, val_games=val_games[1:], **kwargs)


def test_language_games_that_are_no_mapping_are_refused_naming_what_is_expected(tmp_path,
                                                                                games):
    from mothello_fast.errors import LanguageError
    with pytest.raises(LanguageError, match="language_games: expected a dict"):
        train(TrainConfig(languages="atomic,atomic", max_steps=1, **TINY), train_games=games[0],
              val_games=games[1], out_dir=tmp_path, language_games=[np.arange(10)],
              progress=False)


def test_resume_takes_the_same_language_games_however_they_are_written(tmp_path, games,
                                                                       monkeypatch):
    # the Corpus reads a subset as its sorted distinct games: the digest must as well
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=2, checkpoint_every=1, **TINY)
    subset = np.arange(0, 300, 3)
    mask = np.zeros(len(train_games), dtype=bool)
    mask[subset] = True
    undo = interrupt_at(monkeypatch, 1)    # after the checkpoint of step 1
    with pytest.raises(KeyboardInterrupt):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "a",
              language_games={"L1": subset}, progress=False)
    undo()
    for same in ({"L1": subset.astype(np.int32)}, {"L1": mask}, {"L1": subset[::-1]},
                 {"L1": np.concatenate([subset, subset[:5]])}, {1: subset},
                 {"L1": torch.from_numpy(subset)}):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "a",
              language_games=same, resume=True, progress=False)
    # keys by name and by index together, as the Corpus takes them
    train(dataclasses.replace(config, max_steps=1), train_games=train_games,
          val_games=val_games, out_dir=tmp_path / "b",
          language_games={"L0": subset + 1, 1: subset}, progress=False)


def test_resume_on_the_same_device_and_process_count_does_not_warn(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", max_steps=1, device="cpu", **TINY)
    train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="resuming")
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
              resume=True, progress=False)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_evaluation_batch_size_must_be_positive(batch_size):
    language_set = LanguageSet.from_spec("atomic", seed=0)
    model = biased_random_model(language_set, "L0")
    with pytest.raises(ConfigError, match=rf"batch_size={batch_size}: expected a positive"):
        legal_move_accuracy(model, language_set, generate_games(2, seed=0), language="L0",
                            batch_size=batch_size)


def test_eval_cli_refuses_a_batch_size_that_is_not_positive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "nowhere"), "--batch-size", "0"])
    assert "'0' is not a positive integer" in capsys.readouterr().err


def test_bf16_evaluation_equals_evaluation_under_bf16_autocast():
    language_set = LanguageSet.from_spec("atomic,split", seed=0)
    model = biased_random_model(language_set, "L0")
    games = generate_games(3, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = evaluate_languages(model, language_set, games, bf16=False)
    got = evaluate_languages(model, language_set, games, bf16=True)
    assert got == expected
    assert got != evaluate_languages(model, language_set, games, bf16=False)


def test_train_cli_prints_its_summary_on_rank_zero_only(tmp_path, games, capsys, monkeypatch):
    train_games, _ = games
    write_games(train_games[:200], tmp_path / "data")
    args = ["train", "--data", str(tmp_path / "data"), "--config", str(tmp_path / "cfg.yaml"),
            "--val-fraction", "0.05", "--quiet"]
    (tmp_path / "cfg.yaml").write_text("languages: atomic\nn_layers: 1\nn_heads: 2\n"
                                       "d_model: 16\nd_mlp: 32\nbatch_size: 8\nmax_steps: 1\n"
                                       "eval_games: 2\n")
    assert main(args + ["--out", str(tmp_path / "rank0")]) == 0
    assert capsys.readouterr().out.startswith("trained to step 1")
    from mothello_fast import train as train_module
    real = train_module.train_on_dataset

    def as_rank_one(*a, **k):   # what a second torchrun process gets back
        return dataclasses.replace(real(*a, **k), rank=1, metrics=[])

    monkeypatch.setattr(train_module, "train_on_dataset", as_rank_one)
    assert main(args + ["--out", str(tmp_path / "rank1")]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("max_steps, warmup", [(20_000, 500), (5000, 500), (200, 20), (9, 0)])
def test_the_default_warm_up_is_a_tenth_of_a_short_run(max_steps, warmup):
    config = TrainConfig(max_steps=max_steps)
    assert config.warmup_steps == warmup
    # the learning rate reaches its peak and the cosine decays to min_lr_ratio
    rates = [learning_rate(step, config) for step in range(max_steps)]
    assert max(rates) == pytest.approx(config.lr)
    assert rates[-1] < config.lr * (config.min_lr_ratio + 0.01 + 1 / max_steps)


def test_a_shrunk_run_from_the_command_line_warms_up_within_it():
    config = load_train_config(None, ["max_steps=200", "lr=1e-3"])
    assert config.warmup_steps == 20
    assert max(learning_rate(s, config) for s in range(200)) == pytest.approx(1e-3)


@pytest.mark.parametrize("warmup", [10, 11])
def test_a_warm_up_as_long_as_the_run_is_refused(warmup):
    with pytest.raises(ConfigError, match=f"warmup_steps={warmup}: expected fewer than "
                                          "max_steps=10"):
        TrainConfig(max_steps=10, warmup_steps=warmup)


def _cli_run(tmp_path, games, *extra):
    train_games, _ = games
    if not (tmp_path / "data").exists():
        write_games(train_games[:500], tmp_path / "data")
    (tmp_path / "cfg.yaml").write_text("languages: atomic,split\nn_layers: 1\nn_heads: 2\n"
                                       "d_model: 16\nd_mlp: 32\nbatch_size: 8\ndropout: 0.0\n"
                                       "checkpoint_every: 2\nlog_every: 1\neval_every: 2\n"
                                       "compile: false\n")
    return main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                 "--config", str(tmp_path / "cfg.yaml"), "--set", "max_steps=4",
                 "--set", "eval_games=5", "--val-fraction", "0.04", "--split-seed", "3",
                 "--quiet", *extra])


def _interrupt_after(run, step: int) -> None:
    """Make `run` look as if it stopped after checkpoint `step`."""
    import shutil

    for path in (run / "checkpoints").iterdir():
        if int(path.name.split("-")[1]) > step:
            shutil.rmtree(path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("".join(
        line + "\n" for line in lines if json.loads(line)["step"] <= step))


def test_resume_with_no_flags_repeats_the_uninterrupted_run(tmp_path, games):
    assert _cli_run(tmp_path, games) == 0
    uninterrupted = (tmp_path / "run" / "metrics.jsonl").read_text()
    _interrupt_after(tmp_path / "run", 2)
    # exactly as `train --help` shows it: the run's config, dataset and split are its own
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--quiet"]) == 0
    resumed = (tmp_path / "run" / "metrics.jsonl").read_text()

    def curve(text):   # every record but its throughput, which is the clock's
        return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
                for line in text.splitlines()]
    assert curve(resumed) == curve(uninterrupted)
    assert len(curve(resumed)) == 4 + 3   # a loss record a step, evaluations at 0, 2, 4


def test_resume_refuses_an_override_that_changes_the_curve_and_names_it(tmp_path, games, capsys):
    assert _cli_run(tmp_path, games) == 0
    _interrupt_after(tmp_path / "run", 2)
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--quiet",
                 "--set", "lr=0.01"]) == 2
    assert "lr: checkpoint 0.0005, now 0.01" in capsys.readouterr().err
    # a runtime field may change
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--quiet",
                 "--set", "log_every=2"]) == 0


def test_a_run_directory_is_a_config(tmp_path, games):
    assert _cli_run(tmp_path, games) == 0
    config = load_train_config(tmp_path / "run", ["max_steps=9"])
    assert (config.languages, config.d_model, config.max_steps) == ("atomic,split", 16, 9)
    with pytest.raises(ConfigError, match="without config.json"):
        load_train_config(tmp_path / "data")


def test_init_from_a_checkpoint_of_other_languages_is_refused(tmp_path, games, trained):
    result, _ = trained   # atomic,atomic
    train_games, val_games = games
    config = TrainConfig(languages="atomic,split", n_layers=2, n_heads=4, d_model=64,
                         d_mlp=256, max_steps=1, eval_every=0, eval_games=8, compile=False)
    with pytest.raises(CheckpointError, match="languages 'atomic,atomic'.*this run has "
                                              "languages 'atomic,split'.*init_languages=True"):
        train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "c",
              init_from=result.checkpoint, progress=False)
    assert not (tmp_path / "c" / "config.json").exists()


def test_init_languages_takes_the_checkpoint_s_set_and_records_it(tmp_path, games, trained):
    result, _ = trained
    train_games, val_games = games
    config = TrainConfig(languages="atomic,split", n_anchors=8, n_layers=2, n_heads=4,
                         d_model=64, d_mlp=256, dropout=0.0, max_steps=1, eval_every=0,
                         eval_games=8, compile=False)
    tuned = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "c",
                  init_from=result.checkpoint, init_languages=True, progress=False)
    recorded = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (recorded["train_config"]["languages"], recorded["train_config"]["n_anchors"]) == \
        ("atomic,atomic", 0)
    _, language_set = load_model(tmp_path / "c")
    assert language_set == tuned.language_set == load_model(result.checkpoint)[1]


def test_multi_token_accuracy_on_a_long_split_language_matches_slow_decoding():
    language_set = LanguageSet.from_spec("atomic,split:3", seed=5)
    model = biased_random_model(language_set, "L1")
    games = generate_games(4, seed=8)
    assert legal_move_accuracy(model, language_set, games, language="L1") == pytest.approx(
        slow_legal_accuracy(model, language_set, games, "L1", "standard"), abs=1e-12)


def test_a_run_s_config_json_names_its_newest_checkpoint(trained):
    from mothello_fast.checkpoint import resolve_checkpoint
    result, out = trained
    assert resolve_checkpoint(out / "config.json") == result.checkpoint


def test_the_shipped_example_config_loads():
    from pathlib import Path
    config = load_train_config(Path(__file__).parent.parent / "examples" / "train.yaml")
    assert (config.languages, config.n_layers, config.warmup_steps) == ("atomic,split", 4, 400)


def test_legal_move_curves_read_the_evaluation_records_a_later_one_replacing_an_earlier():
    from mothello_fast.train import legal_move_curves

    metrics = [{"step": 0, "legal_acc/A": 0.5, "legal_acc/B": 0.4, "val_loss/A": 2.0},
               {"step": 5, "loss": 1.0},
               {"step": 10, "legal_acc/A": 0.6, "legal_acc/B": 0.45},
               {"step": 10, "legal_acc/A": 0.7, "legal_acc/B": 0.45}]   # resumed at 10
    assert legal_move_curves(metrics) == ([0, 10], {"A": [0.5, 0.7], "B": [0.4, 0.45]})
    assert legal_move_curves([{"step": 1, "loss": 2.0}]) == ([], {})
