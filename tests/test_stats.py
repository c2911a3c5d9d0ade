"""Intervals over few seeds: measured coverage on known distributions, and paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fwbench.errors import FwbenchError
from fwbench.report.compare import compare, paired, unpaired
from fwbench.report.coverage import coverage
from fwbench.report.stats import interval, mean_ci

REPS = 2000  # coverage to about ±0.01 (binomial s.e. at 0.95: 0.005)


@pytest.mark.parametrize("method, low, high", [
    ("percentile", 0.70, 0.80),  # [min, max] of 3: 1 - 2 (1/2)^3 = 0.75
    ("t", 0.93, 0.97),
])
def test_coverage_of_three_normal_seeds(method, low, high):
    # the old percentile bootstrap covers far less than its 95%; Student's t is exact here
    assert low <= coverage("normal", 3, method, REPS) <= high


@pytest.mark.parametrize("distribution", ["lognormal", "error rate"])
def test_t_covers_skewed_seeds_better_than_the_percentile_bootstrap(distribution):
    t = coverage(distribution, 3, "t", REPS)
    boot = coverage(distribution, 3, "percentile", REPS)
    assert boot < 0.75 and 0.8 < t < 0.95 and t > boot + 0.1


def test_coverage_nears_nominal_at_ten_normal_seeds():
    assert 0.93 <= coverage("normal", 10, "t", REPS) <= 0.97
    assert coverage("normal", 10, "percentile", REPS) < 0.92  # still short at n = 10


def test_interval_is_vectorised_and_matches_scipy_t():
    x = np.random.default_rng(1).normal(size=(4, 5))
    low, high = interval(x, axis=1)
    for row, lo, hi in zip(x, low, high):
        ref = stats.ttest_1samp(row, 0.0).confidence_interval(0.95)
        assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert mean_ci([0.0, 0.0, 0.0])[1:] == (0.0, 0.0, 3)  # no spread: the point itself


def test_paired_difference_its_interval_and_effect():
    a = {0: 1.0, 1: 2.0, 2: 4.0, 3: 9.0}  # seed 3 is not shared
    b = {0: 3.0, 1: 3.5, 2: 7.0, 4: 0.0}
    c = compare(a, b)
    d = np.array([-2.0, -1.5, -3.0])
    assert c.paired and c.n == 3 and c.method == "paired t"
    assert c.diff == pytest.approx(d.mean()) and c.mean_a == pytest.approx(7 / 3)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.effect == pytest.approx(d.mean() / d.std(ddof=1))  # Cohen's d_z
    assert c.p_a_higher == 0.0  # a below b on every shared seed


def test_pairing_removes_seed_to_seed_variation():
    # b = a + 1 on every seed: the paired interval is the point 1; unpaired it holds 0
    a = np.array([0.0, 10.0, 20.0])
    c = paired(a + 1.0, a)
    assert (c.low, c.high) == (1.0, 1.0) and np.isnan(c.effect) and c.p_a_higher == 1.0
    u = unpaired(a + 1.0, a)
    assert u.low < 0 < u.high and not u.paired


def test_unpaired_is_welch_with_probability_of_improvement():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0, 8.0])
    c = compare(dict(enumerate(a)), {k + 10: v for k, v in enumerate(b)})  # no shared seeds
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert c.method == "Welch t" and c.n_a == 3 and c.n_b == 4
    assert (c.low, c.high) == pytest.approx((-3.0 - half, -3.0 + half))
    # of the 12 pairs (a, b), a > b in one (3, 2) and a tie in one (2, 2), counted half
    assert c.p_a_higher == pytest.approx(1.5 / 12)


def test_too_few_seeds_is_an_error():
    with pytest.raises(FwbenchError, match="at least 2 seeds"):
        compare({0: 1.0, 1: float("nan")}, {0: 2.0, 1: 3.0})
