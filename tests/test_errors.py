"""`check_int` and `check_float`, the argument checks behind the toolkit's errors."""
import math
import re

import numpy as np
import pytest

from mothello_fast.errors import (ConceptError, ConfigError, DatasetError, KernelError,
                                  MothelloError, ProbeError, check_float, check_int)


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), np.int8(3), np.uint64(3)])
def test_integers_numpy_ones_included_come_back_as_python_ints(value):
    got = check_int("n", value)
    assert got == 3 and type(got) is int


def test_a_large_numpy_unsigned_integer_comes_back_exactly():
    assert check_int("seed", np.uint64(2**64 - 1), least=0, most=2**64 - 1) == 2**64 - 1


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, np.float64(2.0), "3", None,
                                   [3], np.array([3])])
def test_what_is_not_an_integer_is_refused(value):
    with pytest.raises(MothelloError, match=f"^{re.escape(f'n={value!r}')}: expected an integer$"):
        check_int("n", value)


@pytest.mark.parametrize("value", [True, np.bool_(True)])
def test_bools_are_refused_even_within_the_bounds(value):
    with pytest.raises(MothelloError, match="expected a positive integer"):
        check_int("n", value, least=1)


def test_bounds_are_inclusive():
    assert check_int("k", 2, least=2, most=5) == 2
    assert check_int("k", 5, least=2, most=5) == 5
    assert check_int("k", np.int16(-3), most=-3) == -3
    assert check_int("k", 0, least=0) == 0
    for value, kwargs in [(1, {"least": 2, "most": 5}), (6, {"least": 2, "most": 5}),
                          (-1, {"least": 0}), (0, {"least": 1}), (-2, {"most": -3})]:
        with pytest.raises(MothelloError, match=f"k={value}: expected"):
            check_int("k", value, **kwargs)


@pytest.mark.parametrize("kwargs, expected", [
    ({"least": 1}, "a positive integer"),
    ({"least": 0}, "an integer >= 0"),
    ({"least": 2}, "an integer >= 2"),
    ({"most": 7}, "an integer <= 7"),
    ({"least": 1, "most": 7}, "an integer in 1..7"),
    ({"least": 0, "most": 63}, "an integer in 0..63"),
    ({}, "an integer"),
])
def test_the_message_names_the_value_and_what_was_expected(kwargs, expected):
    with pytest.raises(MothelloError) as info:
        check_int("TrainConfig.batch_size", 2.5, **kwargs)
    assert str(info.value) == f"TrainConfig.batch_size=2.5: expected {expected}"


@pytest.mark.parametrize("check, value, bounds, expected", [
    (check_int, np.int64(-1), {"least": 0}, "an integer >= 0"),
    (check_float, np.float32(-0.5), {"low": 0}, "a finite number >= 0")])
def test_numpy_values_are_named_as_they_were_given(check, value, bounds, expected):
    message = f"seed={value!r}: expected {expected}"
    with pytest.raises(MothelloError, match=f"^{re.escape(message)}$"):
        check("seed", value, **bounds)


@pytest.mark.parametrize("check, value, bounds", [(check_int, 0, {"least": 1}),
                                                  (check_float, -1, {"low": 0})])
@pytest.mark.parametrize("error", [MothelloError, DatasetError, ConfigError, ConceptError,
                                   KernelError, ProbeError])
def test_the_error_is_of_the_class_asked_for(check, value, bounds, error):
    with pytest.raises(error) as info:
        check("n_games", value, **bounds, error=error)
    assert type(info.value) is error and isinstance(info.value, ValueError)


def test_the_default_error_is_the_base_class():
    with pytest.raises(MothelloError) as info:
        check_int("n", "x")
    assert type(info.value) is MothelloError


# -- check_float ------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.25, 0.25), (3, 3.0), (np.float32(0.5), 0.5), (np.float64(0.1), 0.1), (np.int64(2), 2.0),
    (-1e300, -1e300)])
def test_reals_numpy_ones_included_come_back_as_python_floats(value, expected):
    got = check_float("x", value)
    assert got == expected and type(got) is float


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_bools_are_not_numbers_even_within_the_bounds(value):
    with pytest.raises(MothelloError, match=re.escape(f"x={value!r}: expected a number in "
                                                      "[0, 1]")):
        check_float("x", value, low=0, high=1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan"),
                                   np.float32("inf"), 10**400])
def test_nan_and_infinities_are_refused_even_without_bounds(value):
    with pytest.raises(MothelloError, match=f"^{re.escape(f'x={value!r}')}: expected a finite "
                                            "number$"):
        check_float("x", value)


@pytest.mark.parametrize("value", ["0.5", "1e-3", b"1", None, [0.5], np.array(0.5),
                                   np.array([0.5]), 1j])
def test_what_is_not_a_real_number_is_refused(value):
    with pytest.raises(MothelloError, match=f"^{re.escape(f'x={value!r}')}: expected a finite "
                                            "number$"):
        check_float("x", value)


def test_numeric_strings_are_taken_only_when_asked_for():
    assert check_float("lr", "1e-3", strings=True) == 0.001
    assert check_float("lr", " 2.5 ", low=0, strings=True) == 2.5
    for value in ("fast", "nan", "inf", "", b"1"):
        with pytest.raises(ConfigError, match=re.escape(f"lr={value!r}: expected a finite")):
            check_float("lr", value, strings=True, error=ConfigError)


@pytest.mark.parametrize("kwargs, inside, outside", [
    ({"low": 0}, [0, 0.0, 1e-300, 5], [-1e-300, -1]),
    ({"low": 0, "low_open": True}, [1e-300, 5], [0, 0.0, -1]),
    ({"high": 1}, [1, 1.0, -5], [1.0000001, 2]),
    ({"high": 1, "high_open": True}, [0.9999999, -5], [1, 1.0, 2]),
    ({"low": 0, "high": 1}, [0, 0.5, 1], [-0.1, 1.1]),
    ({"low": 0, "high": 1, "low_open": True, "high_open": True}, [1e-9, 0.5, 0.999], [0, 1]),
    ({"low": -2.5, "high": -0.5}, [-2.5, -1, -0.5], [-2.6, -0.4]),
])
def test_each_bound_is_inclusive_unless_open(kwargs, inside, outside):
    for value in inside:
        assert check_float("p", value, **kwargs) == value
    for value in outside:
        with pytest.raises(MothelloError, match=re.escape(f"p={value!r}: expected")):
            check_float("p", value, **kwargs)


@pytest.mark.parametrize("kwargs, expected", [
    ({"low": 0}, "a finite number >= 0"),
    ({"low": 0, "low_open": True}, "a finite number > 0"),
    ({"high": 1}, "a finite number <= 1"),
    ({"high": 1, "high_open": True}, "a finite number < 1"),
    ({"low": 0, "high": 1}, "a number in [0, 1]"),
    ({"low": 0, "high": 1, "high_open": True}, "a number in [0, 1)"),
    ({"low": 0, "high": 1, "low_open": True}, "a number in (0, 1]"),
    ({"low": 0, "high": 1, "low_open": True, "high_open": True}, "a number in (0, 1)"),
    ({"low": 0.5, "high": 2.5}, "a number in [0.5, 2.5]"),
    ({}, "a finite number"),
])
def test_the_float_message_names_the_value_and_what_was_expected(kwargs, expected):
    with pytest.raises(MothelloError) as info:
        check_float("TrainConfig.dropout", "x", **kwargs)
    assert str(info.value) == f"TrainConfig.dropout='x': expected {expected}"


# -- call sites that took bad values before check_float ----------------------------------

@pytest.mark.parametrize("dropout", [False, True, "0.1", math.nan, None])
def test_gpt_config_refuses_a_dropout_that_is_not_a_number(dropout):
    from mothello_fast.model import GPTConfig

    with pytest.raises(MothelloError, match=re.escape(f"GPTConfig.dropout={dropout!r}: "
                                                      "expected a number in [0, 1)")):
        GPTConfig(vocab_size=10, context_length=8, dropout=dropout)


def test_gpt_config_stores_a_numpy_dropout_as_a_python_float():
    from mothello_fast.model import GPTConfig

    config = GPTConfig(vocab_size=10, context_length=8, dropout=np.float32(0.25))
    assert config.dropout == 0.25 and type(config.dropout) is float


@pytest.mark.parametrize("finetune_lr", [True, math.inf, "1e-3", -1e-3])
def test_run_transfer_refuses_a_finetune_lr_that_is_not_a_positive_number(finetune_lr,
                                                                            tmp_path):
    from mothello_fast.othello import generate_games
    from mothello_fast.train import TrainConfig
    from mothello_fast.transfer import TRANSFER_PREFIX, run_transfer

    games = generate_games(4, seed=0, prefix=TRANSFER_PREFIX)
    # a one-step model, so that a check that let the value through fails fast
    config = TrainConfig(languages="atomic", n_layers=1, n_heads=1, d_model=8, d_mlp=8,
                         batch_size=2, max_steps=1, warmup_steps=0, eval_every=0,
                         eval_games=2, device="cpu", compile=False)
    with pytest.raises(ConfigError, match=re.escape(f"finetune_lr={finetune_lr!r}: expected a "
                                                    "finite number > 0")):
        run_transfer(config, pretrain_games=games, finetune_games=games, val_games=games,
                     out_dir=tmp_path, finetune_steps=10, finetune_lr=finetune_lr,
                     progress=False)
    assert not (tmp_path / "pretrain").exists()


@pytest.mark.parametrize("name", ["theta_a", "size_ratio"])
def test_calign_refuses_a_threshold_given_as_a_string(name):
    from mothello_fast.concepts import calign

    with pytest.raises(ConceptError, match=re.escape(f"{name}='0.5': expected a number in "
                                                     "[0, 1] (a fraction, not a percentage)")):
        calign([0], [0], [0], [0], {0: [0]}, **{name: "0.5"})


@pytest.mark.parametrize("fraction", [np.int64(0), np.float32(1.0), True])
def test_test_fraction_refuses_the_ends_and_bools(fraction):
    from mothello_fast.probes import check_test_fraction

    with pytest.raises(ProbeError, match=re.escape(f"test_fraction={fraction!r}: expected a "
                                                   "number in (0, 1)")):
        check_test_fraction(fraction)


# ---- bad inputs across the toolkit: each the toolkit's named error, never a crash ----

def _bad_inputs():
    import torch

    import mothello_fast as mf
    from mothello_fast.model import GPT, GPTConfig

    atomic = mf.LanguageSet.from_spec("atomic")
    games = mf.generate_games(4, seed=0)
    model = GPT(GPTConfig(vocab_size=10, context_length=5, n_layers=1, n_heads=1, d_model=8,
                          d_mlp=8)).eval()
    read_only = atomic.encode(games, "L0")
    for array in (read_only.tokens, read_only.move_index, read_only.move_end):
        array.flags.writeable = False
    return {
        "a language spec of None": (lambda: mf.LanguageSet.from_spec(None), "spec None"),
        "a dataset path of None": (lambda: mf.load_games(None), "path=None"),
        "a move list that is a number": (lambda: mf.Board.from_moves(5), "moves=5"),
        "more games than memory": (lambda: mf.generate_games(10**11, seed=0), "GiB"),
        "a batch larger than memory": (lambda: mf.Corpus(games, atomic, batch_size=10**9),
                                       "batch_size=1000000000"),
        "a token outside the vocabulary": (lambda: model(torch.tensor([[1, 12]])), "token 12"),
        "a read-only encode output": (lambda: atomic.encode(games, "L0", out=read_only),
                                      "writable"),
        "an opening cut by -1": (lambda: mf.generate_games(2, seed=0, prefix=[19, -1, 18]),
                                 "-1"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_a_bad_input_gets_a_named_error_that_names_it(case):
    call, words = _bad_inputs()[case]
    with pytest.raises(MothelloError, match=re.escape(words)):
        call()


def test_probes_take_any_strided_view_as_kmeans_does():
    from mothello_fast.probes import LinearProbe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (60, 64))
    X = (np.eye(3)[y].reshape(60, -1) + 0.01 * rng.standard_normal((60, 192)))
    reversed_probe = LinearProbe(epochs=3, seed=0).fit(X[::-1], y[::-1])
    copied_probe = LinearProbe(epochs=3, seed=0).fit(X[::-1].copy(), y[::-1].copy())
    for name, value in copied_probe.params_.items():
        np.testing.assert_array_equal(reversed_probe.params_[name].numpy(), value.numpy())
    assert reversed_probe.score(X[::-1], y[::-1]) == copied_probe.score(X[::-1].copy(), y[::-1])
