"""Capacity: how far along the table's columns (say K, the stored pairs) each row keeps the
metric within a threshold (say error <= 10%, accuracy >= 90%).

A row's capacity is the last column value before its first failing cell, columns in numeric
order [C]: a row that fails at K = 24 and passes again at K = 32 has capacity 16, and the first
failing value (24) is reported beside it. A cell fails when its value is beyond the threshold
or it has no finite value (every run diverged). The capacity is taken on the mean over seeds
and, separately, on each seed's own row of values, whose range says how much it depends on the
seed; a seed counts once it has runs up to its first failing column (or in every column).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fwbench.errors import FwbenchError
from fwbench.report.spec import ReportSpec

COLUMNS = ("group", "row", "capacity", "first_failing", "tested_low", "tested_high", "seeds",
           "seed_low", "seed_high", "state_size", "params")


def passes(value: float, threshold: float, lower_better: bool) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return value <= threshold if lower_better else value >= threshold


def capacity_of(points: list[tuple[float, float]], threshold: float,
                lower_better: bool = True) -> tuple[float, float]:
    """(capacity, first failing column) of (column, value) points; NaN where there is none
    (capacity NaN: the first column already fails; first failing NaN: none fails)."""
    last = math.nan
    for column, value in sorted(points, key=lambda p: p[0]):
        if not passes(value, threshold, lower_better):
            return last, column
        last = column
    return last, math.nan


def _numeric(values: pd.Series, spec: ReportSpec) -> None:
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        raise FwbenchError(f"report capacity needs numeric columns; {spec.columns!r} holds "
                           + ", ".join(sorted({str(v) for v in values}))) from None


def _span(values: pd.Series) -> Any:
    """One value, or 'low-high' where it varies (softmax attention's cache grows with K)."""
    v = values.dropna()
    if v.empty:
        return math.nan
    lo, hi = int(v.min()), int(v.max())
    return lo if lo == hi else f"{lo}-{hi}"


def capacity_table(cells: pd.DataFrame, runs: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """One line per (group, row): capacity on the mean, per seed range, state size, params.

    `cells` are build_cells' (means already in display units), `runs` the runs they came from
    (raw metric, seed, state_size, params per run id). The threshold is in raw units.
    """
    if spec.capacity is None or cells.empty:
        return pd.DataFrame(columns=COLUMNS)
    _numeric(cells["column"], spec)
    threshold = spec.capacity * spec.scale
    by_id = runs.set_index("run_id")
    out = []
    for (group, row), rcells in cells.groupby(["group", "row"], sort=False):
        points = [(float(c), m) for c, m in zip(rcells["column"], rcells["mean"])]
        cap, fail = capacity_of(points, threshold, spec.lower_better)
        ids = [rid for ids in rcells["runs"] for rid in ids]
        mine = by_id.loc[ids]
        per_seed = []
        if "seed" in mine:
            in_order = [cell for _, cell in sorted(rcells.iterrows(),
                                                   key=lambda item: float(item[1]["column"]))]
            for seed in mine["seed"].dropna().unique():
                known = _seed_capacity(in_order, by_id, seed, spec, threshold)
                if known is not None:
                    per_seed.append(known)
        finite = [c for c in per_seed if not math.isnan(c)]  # NaN: below the first column
        out.append({
            "group": group, "row": row, "capacity": cap, "first_failing": fail,
            "tested_low": min(p[0] for p in points), "tested_high": max(p[0] for p in points),
            "seeds": len(per_seed),
            "seed_low": min(finite) if finite and len(finite) == len(per_seed) else math.nan,
            "seed_high": max(finite) if finite else math.nan,
            "state_size": _span(mine["state_size"]) if "state_size" in mine else math.nan,
            "params": _span(mine["params"]) if "params" in mine else math.nan,
        })
    return pd.DataFrame(out, columns=COLUMNS)


def _seed_capacity(cells: list[pd.Series], by_id: pd.DataFrame, seed: Any, spec: ReportSpec,
                   threshold: float) -> float | None:
    """One seed's capacity over cells in column order; None where one of its runs is missing
    before its first failing column (it is not known yet)."""
    points = []
    for cell in cells:
        hit = by_id.loc[cell["runs"]]
        hit = hit[hit["seed"] == seed]
        if not len(hit):
            return None
        value = float(hit[spec.metric].iloc[0]) * spec.scale
        points.append((float(cell["column"]), value))
        if not passes(value, threshold, spec.lower_better):
            break  # later columns cannot change it
    return capacity_of(points, threshold, spec.lower_better)[0]


def criterion(spec: ReportSpec) -> str:
    """What a passing cell satisfies, in display units: 'test_error <= 10'."""
    sign = "<=" if spec.lower_better else ">="
    return f"{spec.metric} {sign} {spec.capacity * spec.scale:g}"


def rows(table: pd.DataFrame, spec: ReportSpec) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one group's capacity table (strings)."""
    header = [spec.rows, f"capacity: last {spec.columns} with {criterion(spec)}",
              f"first {spec.columns} beyond", "per seed [min, max]", f"{spec.columns} tested",
              "state (floats)", "params"]
    body = []
    for _, r in table.iterrows():
        first = r["tested_low"]
        if math.isnan(r["capacity"]):
            cap = f"< {first:g}"  # fails at the first column
        elif math.isnan(r["first_failing"]):
            cap = f">= {r['capacity']:g}"  # never fails: at least the last column
        else:
            cap = f"{r['capacity']:g}"
        beyond = "none" if math.isnan(r["first_failing"]) else f"{r['first_failing']:g}"
        seeds = "—" if r["seeds"] < 2 else \
            f"[{_seed(r['seed_low'], first)}, {_seed(r['seed_high'], first)}] ({r['seeds']} seeds)"
        body.append([str(r["row"]), cap, beyond, seeds,
                     f"{r['tested_low']:g}-{r['tested_high']:g}", _count(r["state_size"]),
                     _count(r["params"])])
    return header, body


def _seed(x: float, first: float) -> str:
    return f"< {first:g}" if math.isnan(x) else f"{x:g}"


def _count(x: Any) -> str:
    if isinstance(x, str):
        lo, hi = x.split("-")
        return f"{int(lo):,}-{int(hi):,}"
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{int(x):,}"
