"""Cross-lingual transfer: inputs are checked before any training, and the curves always
start with the pretrained model (step 0), so that a gain is what fine-tuning added."""
import dataclasses

import pytest

from mothello_fast.errors import ConfigError, GameArrayError
from mothello_fast.othello import generate_games
from mothello_fast.train import TrainConfig, train
from mothello_fast.transfer import TRANSFER_PREFIX, finetune_curves, run_transfer

CONFIG = TrainConfig(languages="atomic,atomic", n_layers=1, n_heads=2, d_model=16, d_mlp=32,
                     batch_size=8, max_steps=2, warmup_steps=0, eval_every=1, eval_games=4,
                     checkpoint_every=0, device="cpu", log_every=1, compile=False)


@pytest.fixture(scope="module")
def games():
    """(pretraining games opening c4 c3 c2, full-distribution games)."""
    return generate_games(8, seed=0, prefix=TRANSFER_PREFIX), generate_games(8, seed=1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A checkpoint of an untrained model of CONFIG's shape."""
    from mothello_fast.checkpoint import save_checkpoint
    from mothello_fast.languages import LanguageSet
    from mothello_fast.model import GPT

    language_set = LanguageSet.from_spec(CONFIG.languages)
    model = GPT(CONFIG.model_config(language_set.vocab_size, language_set.context_length))
    return save_checkpoint(tmp_path_factory.mktemp("pretrained") / "ckpt", model=model,
                           language_set=language_set)


@pytest.mark.parametrize("change, error, match", [
    ({"finetune_games": lambda full: full[:, :30]}, GameArrayError, r"finetune_games has shape"),
    ({"finetune_games": lambda full: full[:0]}, ConfigError, r"finetune_games is empty"),
    ({"val_games": lambda full: full[:0]}, ConfigError, r"val_games is empty"),
])
def test_run_transfer_checks_the_fine_tuning_and_validation_games_before_pretraining(
        tmp_path, games, change, error, match):
    pretrain, full = games
    kwargs = {"finetune_games": full, "val_games": full,
              **{name: make(full) for name, make in change.items()}}
    with pytest.raises(error, match=match):
        run_transfer(CONFIG, pretrain_games=pretrain, out_dir=tmp_path / "t", finetune_steps=2,
                     progress=False, **kwargs)
    assert not (tmp_path / "t").exists()


def test_finetune_curves_refuse_a_config_that_does_not_measure_the_pretrained_model(
        tmp_path, games, pretrained):
    _, full = games
    with pytest.raises(ConfigError, match="eval_every=0"):
        finetune_curves(pretrained, dataclasses.replace(CONFIG, eval_every=0),
                        finetune_language="L0", finetune_games=full, val_games=full,
                        out_dir=tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists()


def test_finetune_curves_refuse_empty_val_games_before_training(tmp_path, games, pretrained):
    _, full = games
    with pytest.raises(ConfigError, match="val_games is empty"):
        finetune_curves(pretrained, CONFIG, finetune_language="L0", finetune_games=full,
                        val_games=full[:0], out_dir=tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists()


def test_a_resumed_run_without_the_step_0_measurement_is_refused(tmp_path, games, pretrained):
    # a fine-tuning run made without evaluations along the way, then continued by
    # finetune_curves (eval_every may change on resume): it has no pretrained-model point
    _, full = games
    config = dataclasses.replace(CONFIG, language_weights=[1.0, 0.0])
    train(dataclasses.replace(config, eval_every=0), train_games=full, val_games=full,
          out_dir=tmp_path / "ft", init_from=pretrained, progress=False)
    with pytest.raises(ConfigError, match="step 0"):
        finetune_curves(pretrained, CONFIG, finetune_language="L0", finetune_games=full,
                        val_games=full, out_dir=tmp_path / "ft", progress=False)


def test_finetune_curves_start_at_the_pretrained_model(tmp_path, games, pretrained):
    _, full = games
    result = finetune_curves(pretrained, CONFIG, finetune_language="L1", finetune_games=full,
                             val_games=full, out_dir=tmp_path / "ft", progress=False)
    assert result.steps == [0, 1, 2] and result.languages == ["L0", "L1"]
