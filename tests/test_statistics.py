"""Intervals against scipy.stats' own tests on fixed numbers, and the bootstrap against a
plain numpy percentile bootstrap."""
import math

import numpy as np
import pytest
from scipy import stats

from mothello_fast.errors import ConfigError
from mothello_fast.statistics import (Interval, bootstrap_ratio, bootstrap_ratio_difference,
                                      t_interval, welch_interval)

SEEDS_A = [0.612, 0.598, 0.633, 0.605]
SEEDS_B = [0.471, 0.52, 0.488]


@pytest.mark.parametrize("values", [SEEDS_A, SEEDS_B, [0.1, 0.9]])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_the_t_interval_is_scipys_one_sample_interval(values, confidence):
    ours = t_interval(values, confidence=confidence)
    theirs = stats.ttest_1samp(values, 0.0).confidence_interval(confidence)
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), rel=1e-12)
    assert ours.mean == pytest.approx(np.mean(values)) and ours.method == "t"
    assert ours.n == len(values)


def test_the_welch_interval_is_scipys_unequal_variance_interval():
    ours = welch_interval(SEEDS_A, SEEDS_B)
    theirs = stats.ttest_ind(SEEDS_A, SEEDS_B, equal_var=False).confidence_interval(0.95)
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), rel=1e-12)
    assert ours.mean == pytest.approx(np.mean(SEEDS_A) - np.mean(SEEDS_B))


def test_one_value_has_no_interval_and_none_is_missing():
    single = t_interval([0.7])
    assert single.mean == 0.7 and math.isnan(single.low) and single.method == "single"
    assert not single.above(0) and not single.below(1) and not single.known
    assert t_interval([]).method == "missing"
    assert welch_interval([0.5], [0.4, 0.3]).method == "single"


def test_identical_seeds_give_a_zero_width_interval():
    difference = welch_interval([0.5, 0.5], [0.4, 0.4])
    assert (difference.low, difference.high) == pytest.approx((0.1, 0.1))
    assert t_interval([0.3, 0.3, 0.3]).low == pytest.approx(0.3)


def _numpy_bootstrap(hits, counts, n, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hits), size=(n, len(hits)))
    ratios = hits[idx].sum(1) / counts[idx].sum(1)
    return np.percentile(ratios, [2.5, 97.5])


def test_the_bootstrap_over_games_agrees_with_a_plain_percentile_bootstrap():
    rng = np.random.default_rng(3)
    counts = rng.integers(40, 60, 100).astype(float)
    hits = counts * rng.uniform(0.5, 0.8, 100)
    ours = bootstrap_ratio(hits, counts, n_resamples=20000, seed=0)
    low, high = _numpy_bootstrap(hits, counts, 20000, 1)
    assert ours.mean == pytest.approx(hits.sum() / counts.sum())
    assert ours.low == pytest.approx(low, abs=2e-3) and ours.high == pytest.approx(high, abs=2e-3)
    # the normal approximation of a ratio's standard error, as a second check of the width
    se = np.std(hits / counts - ours.mean, ddof=1) / np.sqrt(len(hits))
    assert ours.high - ours.low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_the_paired_bootstrap_resamples_both_figures_on_the_same_games():
    rng = np.random.default_rng(4)
    counts = np.full(50, 59.0)
    shared = rng.uniform(20, 50, 50)              # game difficulty, common to both figures
    a, b = shared + 3.0, shared                   # a always 3 squares better per game
    paired = bootstrap_ratio_difference(a, b, counts, seed=0)
    assert paired.mean == pytest.approx(3 / 59)
    assert paired.high - paired.low < 1e-9        # the shared difficulty cancels exactly
    unpaired_width = (bootstrap_ratio(a, counts).high - bootstrap_ratio(a, counts).low)
    assert unpaired_width > 0.01


def test_the_bootstrap_is_seeded():
    hits, counts = np.arange(1.0, 11.0), np.full(10, 12.0)
    assert bootstrap_ratio(hits, counts, seed=5) == bootstrap_ratio(hits, counts, seed=5)


@pytest.mark.parametrize("bad, match", [(([1.0, np.nan], [2.0, 2.0]), "finite"),
                                        (([1.0], [2.0, 2.0]), "same non-empty shape"),
                                        (([1.0, 1.0], [0.0, 2.0]), "positive")])
def test_bad_bootstrap_inputs_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        bootstrap_ratio(*bad)


def test_a_confidence_outside_zero_one_is_refused():
    with pytest.raises(ConfigError, match="confidence=1.5"):
        t_interval([1.0, 2.0], confidence=1.5)


def test_intervals_round_trip_through_json_with_nan_as_null():
    single = t_interval([0.4])
    assert single.to_dict()["low"] is None
    assert Interval.from_dict(single.to_dict()).mean == 0.4
    both = t_interval(SEEDS_A)
    assert Interval.from_dict(both.to_dict()) == both
