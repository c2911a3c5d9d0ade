"""Table cells: runs grouped by (rows x columns) setting, tuned settings chosen on validation,
the metric averaged over seeds with its confidence interval.

Within a cell, runs may differ in three kinds of setting: replicates (seed, data_seed), which
are averaged; tuned hyper-parameters (a preset's `tune`; without a preset, what varies), of
which the combination with the best mean *validation* score is kept (the paper's grid search on validation: test
numbers never choose); and anything else (say K, or a budget), which splits the runs into
separate tables, one per group.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd

from fwbench.errors import FwbenchError
from fwbench.report.spec import REPLICATES, ReportSpec
from fwbench.report.stats import first_crossing, held_fraction, mean_ci

CurveReader = Callable[[str, str, str], pd.DataFrame]  # (run_id, split, metric) -> step, value


def check_columns(runs: pd.DataFrame, spec: ReportSpec) -> str | None:
    """FwbenchError for a layout or metric the runs lack; return the selection key."""
    for what, key in (("rows", spec.rows), ("columns", spec.columns)):
        if key not in runs.columns:
            raise FwbenchError(f"no setting {key!r} in the runs to use as table {what}; choose "
                               f"another with --{what}")
    if spec.metric not in runs.columns:
        numeric = [c for c in runs.columns if pd.api.types.is_numeric_dtype(runs[c])]
        raise FwbenchError(f"no run has summary key {spec.metric!r}; choose --metric from: "
                           + ", ".join(numeric))
    return spec.select_key(list(runs.columns))


def tuned_keys(runs: pd.DataFrame, spec: ReportSpec) -> list[str]:
    """Tuned settings that take more than one value within some cell."""
    return [k for k in spec.tune if k in runs.columns and _varies(runs, spec, k)]


def split_keys(runs: pd.DataFrame, spec: ReportSpec, config_keys: list[str]) -> list[str]:
    """Other settings that vary within some cell: each combination gets its own table."""
    fixed = {"task", spec.rows, spec.columns, *REPLICATES, *spec.tune}
    return [k for k in config_keys if k not in fixed and k in runs.columns
            and _varies(runs, spec, k)]


def _varies(runs: pd.DataFrame, spec: ReportSpec, key: str) -> bool:
    per_cell = runs.groupby([spec.rows, spec.columns], dropna=False)[key].nunique(dropna=False)
    return bool(len(per_cell)) and int(per_cell.max()) > 1


def candidates(cell: pd.DataFrame, tuned: list[str], select: str | None,
               lower_better: bool) -> list[tuple[tuple, pd.DataFrame, tuple]]:
    """(tuned values, their runs, rank) of each tuned setting of a cell, in the settings' order;
    the lowest rank is the best mean validation score. Settings whose runs all finished rank
    before those with diverged runs [C]."""
    if select is None or select not in cell.columns:
        raise FwbenchError(f"runs differ in {', '.join(tuned)} but there is no validation key to "
                           "choose on; give --select KEY (a summary key, never a test one)")
    out = []
    for values, runs in cell.groupby(tuned, dropna=False, sort=True):
        scores = runs[select].astype(float)
        mean = scores.mean() if scores.notna().any() else math.inf
        values = values if isinstance(values, tuple) else (values,)
        out.append((values, runs, (int(scores.isna().sum()), mean if lower_better else -mean)))
    return out


def varied_in(cell: pd.DataFrame, tuned: list[str]) -> list[str]:
    """The tuned settings that take more than one value in this cell."""
    return [k for k in tuned if cell[k].nunique(dropna=False) > 1]


def choose(cell: pd.DataFrame, tuned: list[str], select: str | None,
           lower_better: bool) -> tuple[pd.DataFrame, str]:
    """The runs of the tuned setting with the best mean validation score, and its label."""
    tuned = varied_in(cell, tuned)
    if not tuned:
        return cell, ""
    ranked = candidates(cell, tuned, select, lower_better)
    values, runs, _ = min(ranked, key=lambda c: c[2])  # the first of equals, as sorted
    label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(tuned, values))
    return runs, f"{label} (best of {len(ranked)})"


def grid_points(cell: pd.DataFrame, spec: ReportSpec, select: str | None,
                tuned: list[str]) -> list[dict[str, Any]]:
    """Every tuned setting of a cell: its values, the metric over seeds (display units), n, the
    mean selection score and whether it is the one chosen; empty where nothing is tuned."""
    tuned = varied_in(cell, tuned)
    if not tuned:
        return []
    ranked = candidates(cell, tuned, select, spec.select_lower(select))
    best = min(range(len(ranked)), key=lambda i: ranked[i][2])
    out = []
    for i, (values, runs, _) in enumerate(ranked):
        mean, low, high, n = mean_ci(runs[spec.metric].astype(float), bounds=spec.bounds)
        score = runs[select].astype(float)
        out.append({"settings": dict(zip(tuned, map(_whole, values))), "mean": mean * spec.scale,
                    "low": low * spec.scale, "high": high * spec.scale, "n": n,
                    "select": score.mean() * select_scale(spec, select)
                    if score.notna().any() else math.nan, "select_key": select,
                    "chosen": i == best})
    return out


def select_scale(spec: ReportSpec, select: str) -> float:
    """The table's display factor for a selection key of the same quantity (best_valid_error
    beside test_error), else 1."""
    return spec.scale if select.rsplit("_", 1)[-1] == spec.metric.rsplit("_", 1)[-1] else 1.0


def _whole(v: Any) -> Any:
    """16.0 -> 16: an integer setting comes back as a float where other tasks' runs lack it."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def cell_row(cell: pd.DataFrame, spec: ReportSpec, select: str | None, tuned: list[str],
             read_curve: CurveReader) -> dict[str, Any]:
    """One table cell: mean, CI, n, paper, difference, choice, steps to threshold, CPU time."""
    chosen, label = choose(cell, tuned, select, spec.select_lower(select))
    mean, low, high, n = mean_ci(chosen[spec.metric].astype(float), bounds=spec.bounds)
    diverged = int((chosen["status"] == "diverged").sum()) if "status" in chosen else 0
    row = {"n": n, "missing": len(chosen) - n, "diverged": diverged, "mean": mean * spec.scale,
           "low": low * spec.scale, "high": high * spec.scale}
    first = cell.iloc[0]
    paper = spec.paper_value(first[spec.rows], first[spec.columns])
    row["paper"] = paper if paper is not None else math.nan
    row["diff"] = row["mean"] - row["paper"]
    row["chosen"] = label
    if spec.threshold is not None:
        split, metric = spec.curves[0].split("/")
        steps = [first_crossing(read_curve(rid, split, metric), spec.threshold,
                                spec.lower_better) for rid in chosen["run_id"]]
        reached = [s for s in steps if not math.isnan(s)]
        row["steps_to_threshold"] = sum(reached) / len(reached) if reached else math.nan
        row["reached"] = f"{len(reached)}/{len(steps)}"
    if spec.tail is not None:  # the level a noisy curve ends at, less noisy than its last point
        split, metric = spec.curves[0].split("/")
        tails = pd.Series([read_curve(rid, split, metric)["value"].tail(spec.tail).mean()
                           for rid in chosen["run_id"]], dtype=float)
        t_mean, t_low, t_high, _ = mean_ci(tails, bounds=spec.curve_bounds(spec.curves[0]))
        row.update(tail_mean=t_mean * spec.scale, tail_low=t_low * spec.scale,
                   tail_high=t_high * spec.scale)
    row.update(learning_measures(chosen, spec, read_curve))
    cpu = chosen["cpu_s"].astype(float) if "cpu_s" in chosen else pd.Series(dtype=float)
    row["cpu_s"] = cpu.mean() if cpu.notna().any() else math.nan
    row["cell_cpu_h"] = cell["cpu_s"].astype(float).sum() / 3600 if "cpu_s" in cell else math.nan
    row["runs"] = list(chosen["run_id"])
    row["grid"] = grid_points(cell, spec, select, tuned)
    return row


def learning_measures(chosen: pd.DataFrame, spec: ReportSpec,
                      read_curve: CurveReader) -> dict[str, Any]:
    """The area under the first curve (its mean over each run, mean and interval over runs) and
    the share of points held at the threshold after reaching it, where the spec asks for them."""
    split, metric = spec.curves[0].split("/")
    curves = [read_curve(rid, split, metric) for rid in chosen["run_id"]] \
        if spec.area or spec.held else []
    out: dict[str, Any] = {}
    if spec.area:
        areas = pd.Series([c["value"].mean() for c in curves], dtype=float)
        mean, low, high, _ = mean_ci(areas, bounds=spec.curve_bounds(spec.curves[0]))
        out.update(area_mean=mean * spec.scale, area_low=low * spec.scale,
                   area_high=high * spec.scale)
    if spec.held:
        held = [held_fraction(c, spec.threshold, spec.lower_better) for c in curves]
        reached = [h for h in held if not math.isnan(h)]
        out["held"] = sum(reached) / len(reached) if reached else math.nan
    return out


def _equals(series: pd.Series, value: Any) -> pd.Series:
    """series == value, where NaN equals NaN (a setting some models lack)."""
    if isinstance(value, float) and math.isnan(value):
        return series.isna()
    return series == value


def ordered(values: pd.Series, preferred: list[Any]) -> list[Any]:
    """Distinct values: those of `preferred` first in its order, then numeric or text order."""
    from fwbench.report.spec import same_value

    distinct = list(dict.fromkeys(values.tolist()))
    first = [v for p in preferred for v in distinct if same_value(v, p)]
    rest = [v for v in distinct if v not in first]
    try:
        rest = sorted(rest)
    except TypeError:
        rest = sorted(rest, key=str)
    return list(dict.fromkeys(first + rest))


def build_cells(runs: pd.DataFrame, spec: ReportSpec, config_keys: list[str],
                read_curve: CurveReader) -> tuple[pd.DataFrame, list[str]]:
    """All cells of one task's runs, and the settings that split them into groups."""
    select = check_columns(runs, spec)
    tuned = tuned_keys(runs, spec)
    splits = split_keys(runs, spec, config_keys)
    out = []
    groups = runs.groupby(splits, dropna=False, sort=True) if splits else [((), runs)]
    for gvalues, grp in groups:
        gvalues = gvalues if isinstance(gvalues, tuple) else (gvalues,)
        label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(splits, gvalues))
        for r in ordered(grp[spec.rows], list(spec.paper)):
            for c in ordered(grp[spec.columns], []):
                cell = grp[_equals(grp[spec.rows], r) & _equals(grp[spec.columns], c)]
                if len(cell):
                    out.append({"group": label, "row": _whole(r), "column": _whole(c),
                                **cell_row(cell, spec, select, tuned, read_curve)})
    return pd.DataFrame(out), splits
