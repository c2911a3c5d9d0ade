"""Two models compared on one metric: the difference of their means with a 95% interval and an
effect size. Paired where they share seeds (same seed and data, so seed-to-seed variation
cancels), Welch's unpaired t where fewer than two seeds are shared.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Hashable, Mapping

import numpy as np
from scipy import stats

from fwbench.errors import FwbenchError
from fwbench.report.stats import LEVEL


@dataclasses.dataclass(frozen=True)
class Comparison:
    """mean(a) - mean(b) over `n` seeds (paired) or `n_a` and `n_b` seeds (unpaired)."""

    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    n_a: int
    n_b: int
    paired: bool
    effect: float  # Cohen's d_z (paired) or d (unpaired, pooled s.d.); NaN if no spread
    p_a_higher: float  # P(a > b) over paired seeds or over all pairs of seeds; ties count 1/2
    p_value: float = math.nan  # two-sided, of the same t test as the interval (H0: no difference)

    @property
    def n(self) -> int:
        return self.n_a if self.paired else min(self.n_a, self.n_b)

    @property
    def method(self) -> str:
        return "paired t" if self.paired else "Welch t"


def _finite(values: Mapping[Hashable, float]) -> dict[Hashable, float]:
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


def _ci(result, mean: float, spread: float, level: float) -> tuple[float, float]:
    """A scipy t-test's interval; the point [mean, mean] where the data have no spread."""
    if spread == 0:
        return mean, mean
    ci = result.confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high)


def _p_value(result, diff: float, spread: float) -> float:
    """The t test's two-sided p; with no spread, 0 for a difference and 1 for none (the
    interval is then the point [diff, diff])."""
    if spread == 0:
        return 0.0 if diff != 0 else 1.0
    return float(result.pvalue)


def _p_higher(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) with ties counted as half: the Mann-Whitney U statistic over n_a n_b."""
    return float((np.sign(a[:, None] - b[None, :]).mean() + 1) / 2)


def paired(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Comparison:
    """a[i] and b[i] from the same seed: the paired t interval of mean(a - b) and d_z."""
    d = a - b
    sd = float(d.std(ddof=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_rel(a, b)
        low, high = _ci(test, float(d.mean()), sd, level)
    p = float((np.sign(d).mean() + 1) / 2)
    effect = float(d.mean() / sd) if sd > 0 else math.nan
    return Comparison(float(a.mean()), float(b.mean()), float(d.mean()), low, high, len(a),
                      len(b), True, effect, p, _p_value(test, float(d.mean()), sd))


def unpaired(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Comparison:
    """Independent seeds: Welch's t interval of mean(a) - mean(b) and Cohen's d."""
    diff = float(a.mean() - b.mean())
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                       / (len(a) + len(b) - 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=False)
        low, high = _ci(test, diff, pooled, level)
    effect = diff / pooled if pooled > 0 else math.nan
    return Comparison(float(a.mean()), float(b.mean()), diff, low, high, len(a), len(b), False,
                      effect, _p_higher(a, b), _p_value(test, diff, pooled))


def compare(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
            level: float = LEVEL) -> Comparison:
    """Values keyed by seed (any hashable, e.g. (seed, data_seed)); NaNs dropped. Paired on the
    shared seeds where there are at least two, else unpaired; FwbenchError under 2 seeds."""
    a, b = _finite(a), _finite(b)
    if min(len(a), len(b)) < 2:
        raise FwbenchError(f"a comparison needs at least 2 seeds of each side, got {len(a)} "
                           f"and {len(b)}")
    shared = [k for k in a if k in b]
    if len(shared) >= 2:
        return paired(np.array([a[k] for k in shared]), np.array([b[k] for k in shared]), level)
    return unpaired(np.array(list(a.values())), np.array(list(b.values())), level)
