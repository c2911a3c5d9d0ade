"""Means with 95% confidence intervals over seeds, steps to a threshold, and how long a curve
stays there.

The interval is Student's t on the seed values, mean ± t(0.975, n-1) s / sqrt(n) [C]: with 3-10
seeds it keeps close to its nominal coverage, where a percentile bootstrap cannot (with 3 seeds
its interval is the seeds' [min, max], which holds the true mean 75% of the time for a
symmetric distribution; docs/statistics.md has the measured coverage of both). The bootstrap
methods stay available by name for comparison (`fwbench.report.coverage`); their resampling
is seeded, so a report is reproducible bit for bit.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
METHOD = "t"
# how tables and report.md name each method's interval
METHODS = {"t": "t-interval", "percentile": "percentile bootstrap CI", "bca": "BCa bootstrap CI"}
RESAMPLES = 9999
BAND_RESAMPLES = 999  # per point of a curve: many points, a band needs less precision
RNG_SEED = 0


def interval_name(method: str = METHOD, level: float = LEVEL) -> str:
    """The interval as tables name it, e.g. '95% t-interval'."""
    return f"{level:.0%} {METHODS[method]}"


def interval(x, method: str = METHOD, level: float = LEVEL, resamples: int = RESAMPLES,
             axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the mean of finite values `x` along `axis`, vectorised over the others."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    if method == "t":
        mean, sem = x.mean(axis=axis), stats.sem(x, axis=axis)
        # scipy's t needs scale > 0; equal values (a common 0% error) give the point [m, m]
        low, high = stats.t.interval(level, n - 1, loc=mean, scale=np.where(sem > 0, sem, 1.0))
        return np.where(sem > 0, low, mean), np.where(sem > 0, high, mean)
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; known: {', '.join(METHODS)}")
    with warnings.catch_warnings():  # BCa warns (and gives NaN) where all values are equal
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((x,), np.mean, axis=axis, confidence_level=level, method=method,
                              n_resamples=resamples, batch=min(resamples, 1000),
                              rng=np.random.default_rng(RNG_SEED))
    return res.confidence_interval.low, res.confidence_interval.high


def clip(low, high, bounds: tuple[float, float] | None):
    """(low, high) intersected with the parameter's range `bounds` (None: unbounded).

    The mean of values in [a, b] lies in [a, b], so the part of an interval outside it never
    holds the mean: cutting it off keeps the coverage (a t-interval on three error rates can
    otherwise reach below 0)."""
    if bounds is None:
        return low, high
    return np.clip(low, *bounds), np.clip(high, *bounds)


def mean_ci(values, level: float = LEVEL, method: str = METHOD, resamples: int = RESAMPLES,
            bounds: tuple[float, float] | None = None) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values, the interval within `bounds` where given;
    the interval is NaN for fewer than 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, math.nan, 1
    low, high = clip(*interval(x, method, level, resamples), bounds)
    return float(x.mean()), float(low), float(high), n


def band(table: pd.DataFrame, level: float = LEVEL, method: str = METHOD,
         bounds: tuple[float, float] | None = None) -> pd.DataFrame:
    """Per column of `table` (rows: seeds, columns: steps, NaN where a seed has no value):
    mean, low, high (within `bounds` where given), n. Columns with the same number of values
    are computed together."""
    out = pd.DataFrame(index=table.columns, columns=["mean", "low", "high", "n"], dtype=float)
    values = table.to_numpy(dtype=float)
    counts = np.isfinite(values).sum(axis=0)
    for n in np.unique(counts):
        cols = np.flatnonzero(counts == n)
        if n == 0:
            continue
        # [n, len(cols)]: each column's finite values stacked (NaNs sorted to the end)
        stacked = np.sort(values[:, cols], axis=0)[:n]
        out.iloc[cols, 0] = stacked.mean(axis=0)
        out.iloc[cols, 3] = n
        if n < 2:
            continue
        low, high = clip(*interval(stacked, method, level, BAND_RESAMPLES, axis=0), bounds)
        out.iloc[cols, 1] = low
        out.iloc[cols, 2] = high
    return out


def first_crossing(curve: pd.DataFrame, threshold: float, lower_better: bool = True) -> float:
    """The first step whose value reaches `threshold` (<= if lower is better, else >=)."""
    hit = curve["value"] <= threshold if lower_better else curve["value"] >= threshold
    steps = curve.loc[hit, "step"]
    return float(steps.iloc[0]) if len(steps) else math.nan


def held_fraction(curve: pd.DataFrame, threshold: float, lower_better: bool = True) -> float:
    """The share of a curve's points from its first crossing of `threshold` on that are at or
    beyond it (1.0: it never fell back); NaN where it never reaches it."""
    hit = (curve["value"] <= threshold if lower_better else curve["value"] >= threshold)
    hit = hit.to_numpy()
    if not hit.any():
        return math.nan
    return float(hit[int(np.argmax(hit)):].mean())
