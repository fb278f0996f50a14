"""`check_int`, the integer-argument check behind the toolkit's errors."""
import re

import numpy as np
import pytest

from mothello_fast.errors import (ConceptError, ConfigError, DatasetError, MothelloError,
                                  check_int)


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


def test_numpy_values_are_named_as_they_were_given():
    value = np.int64(-1)
    with pytest.raises(MothelloError, match=f"^{re.escape(f'seed={value!r}')}: expected an "
                                            "integer >= 0$"):
        check_int("seed", value, least=0)


@pytest.mark.parametrize("error", [MothelloError, DatasetError, ConfigError, ConceptError])
def test_the_error_is_of_the_class_asked_for(error):
    with pytest.raises(error) as info:
        check_int("n_games", 0, least=1, error=error)
    assert type(info.value) is error and isinstance(info.value, ValueError)


def test_the_default_error_is_the_base_class():
    with pytest.raises(MothelloError) as info:
        check_int("n", "x")
    assert type(info.value) is MothelloError
