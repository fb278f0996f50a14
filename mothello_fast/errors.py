"""Error classes. Every one is a ValueError whose message names the bad value
and what was expected; `check_int` is the integer-argument check that raises them."""
from __future__ import annotations

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
