"""Error classes. Every one is a ValueError whose message names the bad value
and what was expected; `check_int` and `check_float` are the argument checks that raise them."""
from __future__ import annotations

import math
import numbers

import numpy as np


class MothelloError(ValueError):
    """Base class of the toolkit's errors."""


class InvalidSquareError(MothelloError):
    """A square that is not 0..63 or a name that is not a1..h8."""


class IllegalMoveError(MothelloError):
    """A move that is not legal in its position."""


class GameArrayError(MothelloError):
    """A games array of the wrong dtype, shape or contents."""


class DatasetError(MothelloError):
    """A dataset directory that is missing, incomplete, corrupted or already present."""


class LanguageError(MothelloError):
    """A language, vocabulary or token sequence that does not fit."""


class CheckpointError(MothelloError):
    """A checkpoint that is truncated, corrupted or from an incompatible config."""


class ProbeError(MothelloError):
    """Probe inputs, labels or a saved probe that do not fit."""


class ConfigError(MothelloError):
    """A config file or override that names an unknown field or gives a bad value."""


class KernelError(MothelloError):
    """Inputs that a kernel does not handle (shape, dtype, device), or an unknown backend."""


class ConceptError(MothelloError):
    """Points, cluster labels, a dictionary or embeddings that the concept metrics,
    k-means, embedding geometry or unification do not accept."""


def number_array(name: str, values, *, dtype=np.float64,
                 error: type[MothelloError] = MothelloError) -> np.ndarray:
    """`values` (an array-like of numbers) as a numpy array of `dtype` (None: as it is),
    else `error` naming `name` (strings, objects, ragged lists)."""
    if isinstance(values, (str, bytes)) or values is None:
        raise error(f"{name}={values!r}: expected an array of numbers")
    try:
        array = np.asarray(values)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"dtype {array.dtype}")
        return array if dtype is None else array.astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} of {type(values).__name__}: expected an array of numbers "
                    f"({exc})") from None


def check_int(name: str, value, *, least: int | None = None, most: int | None = None,
              error: type[MothelloError] = MothelloError) -> int:
    """`value` as a Python int when it is an integer (numpy integers included, bools
    not) within [least, most]; else `error` naming `name`, the value and what was expected.

    >>> check_int("n", np.uint8(3), least=1)
    3
    >>> check_int("n", 0, least=1, error=ConfigError)
    Traceback (most recent call last):
    ...
    mothello_fast.errors.ConfigError: n=0: expected a positive integer
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        number = int(value)
        if (least is None or number >= least) and (most is None or number <= most):
            return number
    if least is not None and most is not None:
        expected = f"an integer in {least}..{most}"
    elif least == 1:
        expected = "a positive integer"
    elif least is not None:
        expected = f"an integer >= {least}"
    elif most is not None:
        expected = f"an integer <= {most}"
    else:
        expected = "an integer"
    raise error(f"{name}={value!r}: expected {expected}")


def check_float(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, strings: bool = False,
                error: type[MothelloError] = MothelloError) -> float:
    """`value` as a Python float when it is a finite real number (numpy ones included,
    bools not; numeric strings too with `strings`, for config files: YAML 1.1 reads
    ``1e-3`` as a string) within the bounds, each inclusive unless `low_open` or
    `high_open`; else `error` naming `name`, the value and what was expected.

    >>> check_float("dropout", np.float32(0.5), low=0, high=1, high_open=True)
    0.5
    >>> check_float("lr", "1e-3", low=0, low_open=True, strings=True)
    0.001
    >>> check_float("lr", float("inf"), low=0, low_open=True, error=ConfigError)
    Traceback (most recent call last):
    ...
    mothello_fast.errors.ConfigError: lr=inf: expected a finite number > 0
    """
    number = math.nan
    if (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))) \
            or (strings and isinstance(value, str)):
        try:
            number = float(value)
        except (ValueError, OverflowError):   # a string that is no number; an int past 1e308
            pass
    # comparisons, not math.isfinite: they also trace under torch.compile (a dynamic float)
    if -math.inf < number < math.inf \
            and (low is None or (number > low if low_open else number >= low)) \
            and (high is None or (number < high if high_open else number <= high)):
        return number
    expected = "a finite number"
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        expected = f"a number in {left}{low}, {high}{right}"
    elif low is not None:
        expected += f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        expected += f" {'<' if high_open else '<='} {high}"
    raise error(f"{name}={value!r}: expected {expected}")
