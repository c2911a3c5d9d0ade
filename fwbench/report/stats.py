"""Means with 95% bootstrap confidence intervals over seeds, and steps to a threshold.

Intervals come from `scipy.stats.bootstrap` with the percentile method [C]: BCa, scipy's
default, is undefined when every seed gives the same value (a common 0% error), and with
3 seeds no method does much better than [min, max]. Resampling is seeded, so a report is
reproducible bit for bit.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
RESAMPLES = 9999
BAND_RESAMPLES = 999  # per point of a curve: many points, a band needs less precision
RNG_SEED = 0


def mean_ci(values, level: float = LEVEL,
            resamples: int = RESAMPLES) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; the interval is NaN for fewer than 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, math.nan, 1
    res = stats.bootstrap((x,), np.mean, confidence_level=level, method="percentile",
                          n_resamples=resamples, rng=np.random.default_rng(RNG_SEED))
    ci = res.confidence_interval
    return float(x.mean()), float(ci.low), float(ci.high), n


def band(table: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Per column of `table` (rows: seeds, columns: steps, NaN where a seed has no value):
    mean, low, high, n. Columns with the same number of values are bootstrapped together."""
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.bootstrap((stacked,), np.mean, axis=0, confidence_level=level,
                                  method="percentile", n_resamples=BAND_RESAMPLES,
                                  rng=np.random.default_rng(RNG_SEED))
        out.iloc[cols, 1] = res.confidence_interval.low
        out.iloc[cols, 2] = res.confidence_interval.high
    return out


def first_crossing(curve: pd.DataFrame, threshold: float, lower_better: bool = True) -> float:
    """The first step whose value reaches `threshold` (<= if lower is better, else >=)."""
    hit = curve["value"] <= threshold if lower_better else curve["value"] >= threshold
    steps = curve.loc[hit, "step"]
    return float(steps.iloc[0]) if len(steps) else math.nan
