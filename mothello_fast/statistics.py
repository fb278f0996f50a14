"""Intervals for the study's numbers: across seeds, or over test games for one seed.

Every figure the study reports is an `Interval`: a mean with a 95% interval and the
way the interval was made.

- ``"t"``: Student's t interval of the mean of per-seed values (2 or more seeds; with
  2 seeds it is valid but wide, t = 12.7 on one degree of freedom);
- ``"welch"``: Welch's t interval of a difference of two means of per-seed values;
- ``"paired t"``: the t interval of per-seed differences, where the two figures come from
  cells of the same seeds (which share their games);
- ``"bootstrap"``: a percentile bootstrap over test games (one seed: the variation
  the test games cause, not the one seeds cause), by `scipy.stats.bootstrap`;
- ``"single"``: one value and nothing to make an interval from (low = high = nan).

An interval is "above" a value when its low end is, "below" when its high end is;
a nan interval is neither, so a decision made from it is inconclusive.

>>> t_interval([0.60, 0.62, 0.64]).round(4)
Interval(mean=0.62, low=0.5703, high=0.6697, n=3, method='t')
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, check_float, check_int, number_array

__all__ = ["Interval", "t_interval", "welch_interval", "bootstrap_ratio",
           "bootstrap_ratio_difference", "CONFIDENCE"]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """mean with a `confidence` interval [low, high] from `n` values (seeds or games)."""
    mean: float
    low: float
    high: float
    n: int
    method: str

    def above(self, value: float) -> bool:
        """The whole interval lies above `value` (False for a nan interval)."""
        return bool(self.low > value)

    def below(self, value: float) -> bool:
        """The whole interval lies below `value` (False for a nan interval)."""
        return bool(self.high < value)

    def contains(self, value: float) -> bool:
        """`value` lies in [low, high] (False for a nan interval)."""
        return bool(self.low <= value <= self.high)

    @property
    def known(self) -> bool:
        """Whether the interval has ends (not a single value, not missing)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    def round(self, digits: int) -> Interval:
        return Interval(*(round(v, digits) for v in (self.mean, self.low, self.high)),
                        self.n, self.method)

    def to_dict(self) -> dict:
        """JSON-ready: nan as None."""
        def number(v):
            return None if math.isnan(v) else float(v)
        return {"mean": number(self.mean), "low": number(self.low), "high": number(self.high),
                "n": self.n, "method": self.method}

    @classmethod
    def from_dict(cls, data: dict) -> Interval:
        def number(v):
            return math.nan if v is None else float(v)
        try:
            return cls(number(data["mean"]), number(data["low"]), number(data["high"]),
                       int(data["n"]), str(data["method"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"interval {data!r}: expected {{'mean', 'low', 'high', 'n', "
                              f"'method'}} of numbers and a name ({exc})") from None

    @classmethod
    def missing(cls) -> Interval:
        return cls(math.nan, math.nan, math.nan, 0, "missing")


MAX_RESAMPLES = 10**7   # past this a bootstrap's [resamples, games] arrays outgrow memory

def _values(values, name: str) -> np.ndarray:
    array = number_array(name, values, error=ConfigError).ravel()
    if not np.isfinite(array).all():
        raise ConfigError(f"{name} holds {array[~np.isfinite(array)][:3].tolist()}: expected "
                          "finite numbers")
    return array


def _confidence(confidence) -> float:
    return check_float("confidence", confidence, low=0, high=1, low_open=True, high_open=True,
                       error=ConfigError)


def t_interval(values, *, confidence: float = CONFIDENCE) -> Interval:
    """Student's t interval of the mean of `values` (float [n], one per seed):
    mean +- t_{n-1} s / sqrt(n). One value gives a ``"single"`` interval (nan ends);
    none, a ``"missing"`` one."""
    from scipy import stats

    values = _values(values, "values")
    confidence = _confidence(confidence)
    n = len(values)
    if n == 0:
        return Interval.missing()
    mean = float(values.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, "single")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, "t")


def welch_interval(a, b, *, confidence: float = CONFIDENCE) -> Interval:
    """Welch's t interval of mean(a) - mean(b) (float [n_a], [n_b]: per-seed values of
    two settings), with the Welch-Satterthwaite degrees of freedom. Fewer than two
    values on a side gives nan ends (method ``"single"``)."""
    from scipy import stats

    a, b = _values(a, "a"), _values(b, "b")
    confidence = _confidence(confidence)
    if len(a) == 0 or len(b) == 0:
        return Interval.missing()
    mean = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Interval(mean, math.nan, math.nan, min(len(a), len(b)), "single")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(mean, mean, mean, min(len(a), len(b)), "welch")
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    return Interval(mean, mean - half, mean + half, min(len(a), len(b)), "welch")


def _check_counts(hits, counts, name: str) -> tuple[np.ndarray, np.ndarray]:
    hits, counts = _values(hits, f"{name}hits"), _values(counts, f"{name}counts")
    if hits.shape != counts.shape or len(hits) == 0:
        raise ConfigError(f"{name}hits of shape {hits.shape} and {name}counts of shape "
                          f"{counts.shape}: expected the same non-empty shape [n_games]")
    if (counts <= 0).any():
        raise ConfigError(f"{name}counts holds {counts.min()}: expected positive position "
                          "counts")
    return hits, counts


def bootstrap_ratio(hits, counts, *, confidence: float = CONFIDENCE, n_resamples: int = 2000,
                    seed: int = 0) -> Interval:
    """Percentile bootstrap over games of sum(hits) / sum(counts).

    hits: float [n_games], the correct square predictions (or any per-game total) of
    each test game; counts: float [n_games], what each game's total is out of. Games
    are resampled with replacement, `n_resamples` times (seeded), by
    `scipy.stats.bootstrap`; one game gives a ``"single"`` interval."""
    from scipy import stats

    hits, counts = _check_counts(hits, counts, "")
    confidence = _confidence(confidence)
    n_resamples = check_int("n_resamples", n_resamples, least=1, most=MAX_RESAMPLES,
                            error=ConfigError)
    check_int("seed", seed, least=0, most=2**63 - 1, error=ConfigError)
    mean = float(hits.sum() / counts.sum())
    if len(hits) < 2:
        return Interval(mean, math.nan, math.nan, len(hits), "single")
    result = stats.bootstrap((hits, counts), lambda h, c, axis=-1: h.sum(axis) / c.sum(axis),
                             paired=True, vectorized=True, confidence_level=confidence,
                             n_resamples=n_resamples, method="percentile",
                             rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), len(hits), "bootstrap")


def bootstrap_ratio_difference(hits_a, hits_b, counts, *, confidence: float = CONFIDENCE,
                               n_resamples: int = 2000, seed: int = 0) -> Interval:
    """Paired percentile bootstrap over games of sum(hits_a)/sum(counts) -
    sum(hits_b)/sum(counts): two figures measured on the same test games (float
    [n_games] each), the games resampled together."""
    from scipy import stats

    hits_a, counts = _check_counts(hits_a, counts, "")
    hits_b, _ = _check_counts(hits_b, counts, "")
    confidence = _confidence(confidence)
    n_resamples = check_int("n_resamples", n_resamples, least=1, most=MAX_RESAMPLES,
                            error=ConfigError)
    check_int("seed", seed, least=0, most=2**63 - 1, error=ConfigError)
    mean = float((hits_a.sum() - hits_b.sum()) / counts.sum())
    if len(counts) < 2:
        return Interval(mean, math.nan, math.nan, len(counts), "single")
    result = stats.bootstrap((hits_a, hits_b, counts),
                             lambda a, b, c, axis=-1: (a.sum(axis) - b.sum(axis)) / c.sum(axis),
                             paired=True, vectorized=True, confidence_level=confidence,
                             n_resamples=n_resamples, method="percentile",
                             rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), len(counts), "bootstrap")
