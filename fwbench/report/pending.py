"""What a preset plans and its report does not hold yet: the grid points (settings x seeds, as
`fwbench sweep` expands them) that no finished run covers, and what they would cost.

The cost of a missing point is extrapolated from the finished runs of its table row (say a
model): their CPU seconds per update against the table's column (say K, which sets the sequence
length), a least-squares line where the row has runs at two or more columns, else in proportion
to the column from its one column (an upper bound beyond it wherever an update has a fixed
cost), times the point's budget of updates (`max_steps`). Early stopping ends most runs before
their budget, so the figure at the full budget is an upper bound too; the share of it the
finished runs used is reported beside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fwbench import markdown
from fwbench.report.spec import ReportSpec, has_settings, same_value

COLUMNS = ("row", "column", "seed", "max_steps", "cpu_s_per_update", "basis", "cpu_h")


def planned_points(preset, given: str, sweep: str | None, sets: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    """Every run the preset's sweeps would make (the main grid and the report's sweeps, or the
    sweeps `sweep` names), each a dict of settings with its seed, as `fwbench sweep` plans
    them, a point two sweeps share kept once; `given` is the preset's name or path as the
    command gave it."""
    from fwbench.sweep.plan import plan

    names = preset.sweep_names(sweep) if sweep is not None else list(preset.report_grids())
    points: dict[tuple, dict[str, Any]] = {}
    for name in names:
        for point in plan(preset=given, sweep=name, sets=sets).points():
            points.setdefault(tuple(sorted((k, str(v)) for k, v in point.items())), point)
    return list(points.values())


def _key(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _row_runs(runs: pd.DataFrame, row: Any, spec: ReportSpec) -> pd.DataFrame:
    """The runs of one table row (say one model)."""
    if spec.rows not in runs:
        return runs.iloc[:0]
    return runs[[same_value(v, row) for v in runs[spec.rows]]]


def missing_points(points: list[dict[str, Any]], runs: pd.DataFrame,
                   spec: ReportSpec) -> list[dict[str, Any]]:
    """The points no run of `runs` matches in every setting the point names (a run's setting
    missing from its record counts at its default, as in `has_settings`)."""
    by_row: dict[Any, pd.DataFrame] = {}
    out = []
    for point in points:
        row = point.get(spec.rows)
        if _key(row) not in by_row:
            by_row[_key(row)] = _row_runs(runs, row, spec)
        settings = {k: v for k, v in point.items() if k != "task"}
        if not has_settings(by_row[_key(row)], settings).any():
            out.append(point)
    return out


def _fit(rows: pd.DataFrame, spec: ReportSpec):
    """(predict(column) -> CPU s per update, basis) from a row's finished runs; predict is
    None where nothing can be said (no run, or columns that are not numbers)."""
    if "cpu_s" not in rows or "steps" not in rows:
        return None, "no CPU time recorded"
    y = rows["cpu_s"].astype(float).to_numpy() / rows["steps"].astype(float).to_numpy()
    if spec.columns not in rows:  # columns that label summary keys side by side: whole runs
        y = y[np.isfinite(y) & (y > 0)]
        if not len(y):
            return None, "no finished run"
        mean = float(y.mean())
        return (lambda c: mean), f"mean of {len(y)} run{'' if len(y) == 1 else 's'}"
    try:
        x = rows[spec.columns].astype(float).to_numpy()
    except (TypeError, ValueError):
        return None, f"{spec.columns} is not a number"
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[ok], y[ok]
    if not len(x):
        return None, "no finished run"
    distinct = np.unique(x)
    if len(distinct) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        basis = f"line over {len(distinct)} {spec.columns}"
        return (lambda c: slope * c + intercept), basis
    x0, y0 = float(distinct[0]), float(y.mean())
    if x0 <= 0:
        return (lambda c: y0), f"one {spec.columns}"
    return (lambda c: y0 * c / x0), f"∝ {spec.columns} from {spec.columns} = {x0:g}"


def _budget(point: dict[str, Any], rows: pd.DataFrame) -> float:
    if point.get("max_steps") is not None:
        return float(point["max_steps"])
    if "max_steps" in rows and rows["max_steps"].notna().any():
        return float(rows["max_steps"].astype(float).median())
    return math.nan


def pending_table(points: list[dict[str, Any]], runs: pd.DataFrame,
                  spec: ReportSpec) -> pd.DataFrame:
    """One row per missing point: its row, column and seed, the budget, the extrapolated CPU
    seconds per update (and how) and CPU hours at the full budget (NaN where unknown)."""
    fits: dict[Any, tuple] = {}
    out = []
    for point in points:
        row = point.get(spec.rows)
        if _key(row) not in fits:
            mine = _row_runs(runs, row, spec)
            fits[_key(row)] = (*_fit(mine, spec), mine)
        predict, basis, mine = fits[_key(row)]
        column = point.get(spec.columns)
        per_update = math.nan
        if predict is not None:
            try:
                per_update = float(predict(math.nan if column is None else float(column)))
            except (TypeError, ValueError):
                per_update = math.nan
            if not per_update > 0:  # a line extrapolated below zero says nothing
                per_update = math.nan
        budget = _budget(point, mine)
        out.append({"row": row, "column": column, "seed": point.get("seed"),
                    "max_steps": budget, "cpu_s_per_update": per_update, "basis": basis,
                    "cpu_h": per_update * budget / 3600})
    order = {r: i for i, r in enumerate(dict.fromkeys(_key(p["row"]) for p in out))}
    out.sort(key=lambda p: (order[_key(p["row"])], _sortable(p["column"]), _sortable(p["seed"])))
    return pd.DataFrame(out, columns=list(COLUMNS))


def _sortable(value: Any) -> tuple:
    """Numbers in numeric order before anything else, in text order."""
    key = _key(value)
    return (0, key, "") if isinstance(key, float) else (1, 0.0, key)


def budget_share(runs: pd.DataFrame) -> float:
    """The mean share of their budget (`max_steps`) the finished runs used."""
    if "steps" not in runs or "max_steps" not in runs:
        return math.nan
    share = runs["steps"].astype(float) / runs["max_steps"].astype(float)
    share = share[np.isfinite(share)]
    return float(share.mean()) if len(share) else math.nan


def _columns_text(mine: pd.DataFrame, planned: dict[Any, int]) -> str:
    if mine["column"].isna().all():  # runs that span every column (summary keys side by side)
        return "every one"
    parts = []
    for column, group in mine.groupby("column", sort=False):
        text = str(column)
        if len(group) < planned.get(_key(column), len(group)):
            text += f" ({len(group)} of {planned[_key(column)]})"
        parts.append(text)
    return ", ".join(parts)


def _num(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def pending_markdown(table: pd.DataFrame, points: list[dict[str, Any]], runs: pd.DataFrame,
                     spec: ReportSpec) -> str:
    """The section on the planned runs not yet run: per row the columns missing, the runs, the
    CPU seconds per update extrapolated and the CPU hours at the full budget, with a total."""
    planned: dict[tuple, int] = {}
    for p in points:
        key = (_key(p.get(spec.rows)), _key(p.get(spec.columns)))
        planned[key] = planned.get(key, 0) + 1
    share = budget_share(runs)
    used = f"; the finished runs used {share:.0%} of theirs on average" \
        if math.isfinite(share) else ""
    how = (f"CPU seconds per update against {spec.columns}, a least-squares line, or from a "
           f"single {spec.columns} in proportion to it (an upper bound beyond it wherever an "
           "update has a fixed cost)") if table["column"].notna().any() else \
        "their mean CPU seconds per update"
    one = len(table) == 1
    lines = [f"### Planned, not yet run\n\n{len(table)} run{'' if one else 's'} of the "
             f"preset's grid (settings x seeds, as `fwbench sweep` plans them) "
             f"{'has' if one else 'have'} no finished run here. {'Its' if one else 'Their'} "
             f"CPU time is extrapolated from each {spec.rows}'s finished runs: {how}, times "
             f"the full budget of updates (early stopping ends most runs sooner{used}).\n"]
    header = [spec.rows, f"{spec.columns} not yet run", "runs", "CPU s/update", "basis",
              "CPU h at full budget"]
    body = []
    for row, mine in table.groupby("row", sort=False):
        counts = {c: n for (r, c), n in planned.items() if r == _key(row)}
        per = mine["cpu_s_per_update"]
        per_text = "—" if per.isna().all() else (
            _num(per.min()) if math.isclose(per.min(), per.max())
            else f"{_num(per.min())}-{_num(per.max())}")
        hours = mine["cpu_h"].sum(min_count=1) if mine["cpu_h"].notna().all() else math.nan
        body.append([str(row), _columns_text(mine, counts), str(len(mine)), per_text,
                     str(mine["basis"].iloc[0]), _num(hours)])
    known = table["cpu_h"].notna()
    unknown = int((~known).sum())
    total = _num(table.loc[known, "cpu_h"].sum()) if known.any() else "—"
    if unknown:
        total += f" (and {unknown} run{'' if unknown == 1 else 's'} without an estimate)"
    body.append(["all", "", str(len(table)), "", "", total])
    lines.append(markdown.table(header, body))
    return "\n".join(lines)
