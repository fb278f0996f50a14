"""One rule for every derived seed: ``derive_seed(seed, role)``.

A study, a command or a test often needs several independent random streams from
one seed the user chose: the training games, the held-out games, the probe games,
the test games, the model's initialisation, a bootstrap. Adding offsets to the seed
(``seed + 1`` for the test games) makes the test games of seed 1 the probe games of
seed 2. Here every role gets its own stream from a `numpy.random.SeedSequence` of
the seed and the role's name, so

- the same (seed, role) always gives the same derived seed;
- two roles, or two seeds, give unrelated derived seeds (63-bit hashes: equal only
  with probability ~1e-19 a pair, never by an off-by-one);
- a derived seed is a non-negative integer below 2**63, valid wherever the toolkit
  takes a seed (games, torch, probes, k-means).

>>> derive_seed(0, "test-games") == derive_seed(0, "test-games")
True
>>> derive_seed(1, "test-games") != derive_seed(2, "probe-games")
True
"""
from __future__ import annotations

import hashlib

import numpy as np

from .errors import ConfigError, check_int

__all__ = ["derive_seed", "MAX_SEED"]

MAX_SEED = 2**64 - 1   # seeds the toolkit accepts: 0..2**64-1 (the engine's and torch's range)


def _role_words(role: str) -> list[int]:
    """The role's name as four 32-bit words (its sha256's first 16 bytes)."""
    digest = hashlib.sha256(role.encode("utf-8")).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def derive_seed(seed: int, role: str) -> int:
    """The seed of `role` (a name such as ``"test-games"``) under the root `seed`
    (0..2**64-1): an int in 0..2**63-1 drawn from ``SeedSequence([seed's two 32-bit
    words, role's four])``. `ConfigError` for a bad seed or an empty role."""
    seed = check_int("seed", seed, least=0, most=MAX_SEED, error=ConfigError)
    if not isinstance(role, str) or not role or not role.isprintable() \
            or any(0xD800 <= ord(c) <= 0xDFFF for c in role):
        raise ConfigError(f"role={role!r}: expected a non-empty printable name")
    entropy = [seed & 0xFFFFFFFF, seed >> 32, *_role_words(role)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int((int(state[1]) << 32 | int(state[0])) >> 1)
