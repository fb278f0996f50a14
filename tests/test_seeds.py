"""One rule for derived seeds: the same (seed, role) gives the same seed; different roles
or seeds never coincide, so no two roles draw the same games by accident."""
import numpy as np
import pytest

from mothello_fast.cell import DATA_ROLES
from mothello_fast.errors import ConfigError
from mothello_fast.othello import generate_games
from mothello_fast.seeds import derive_seed

ROLES = [f"{r}-games" for r in DATA_ROLES] + ["training", "probes", "transfer-training"]


def test_a_derived_seed_is_a_pure_function_of_seed_and_role():
    assert derive_seed(7, "test-games") == derive_seed(7, "test-games")
    assert 0 <= derive_seed(2**64 - 1, "x") < 2**63


def test_no_two_roles_or_seeds_share_a_derived_seed():
    derived = [derive_seed(seed, role) for seed in range(200) for role in ROLES]
    assert len(set(derived)) == len(derived)
    # nor does a derived seed equal a plain seed a user would type
    assert not set(derived) & set(range(10**6))


def test_the_offsets_of_old_no_longer_make_one_seed_s_test_games_another_s_probe_games():
    # seed + 1 for the test games made seed 1's test games seed 2's probe games
    tests = generate_games(5, seed=derive_seed(1, "test-games"))
    probes = generate_games(5, seed=derive_seed(2, "probe-games"))
    assert not np.array_equal(tests, probes)


@pytest.mark.parametrize("seed, role", [(-1, "a"), (2**64, "a"), (1.0, "a"), (0, ""), (0, 3)])
def test_bad_seeds_and_roles_are_named(seed, role):
    with pytest.raises(ConfigError, match="seed=|role="):
        derive_seed(seed, role)
