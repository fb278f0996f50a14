"""Error classes. Every one is a ValueError whose message names the bad value
and what was expected."""


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
