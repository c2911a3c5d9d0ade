"""What a report measures and how it lays it out: from a preset's [paper] and [report]
tables, overridden by command-line options. Also: which runs belong to a preset.

Nothing here knows a metric's name: tables read a summary.json key (`metric`), settings are
chosen on another (`select`), curves read metrics.csv rows (`split/metric`), and `direction`
says whether lower or higher is better, so supervised and reinforcement-learning presets
report alike. Nor does it guess a metric's range from its name: `bounds` states it (e.g.
[0, 1] for an error or a rate), and intervals are cut to it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from fwbench.errors import FwbenchError
from fwbench.settings import ADDED_DEFAULTS, recorded

REPLICATES = ("seed", "data_seed")  # what a table cell averages over


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    metric: str = "test_error"
    select: str | None = None  # None: best_valid_<x> or valid_<x> for metric test_<x>
    direction: str = "lower"
    curves: tuple[str, ...] = ("valid/error", "train/loss")
    x_label: str = "updates"
    threshold: float | None = None
    tail: int | None = None  # mean of the last `tail` points of the first curve, per run
    # the mean of the first curve over each run (the area under it per point), with interval
    area: bool = False
    # with a threshold: the share of a run's points after it first reaches the threshold that
    # are still at or beyond it (how long runs stay there), over the runs that reached it
    held: bool = False
    # the largest (numeric) column value up to which every cell stays within this, in raw units
    # of `metric` (e.g. 0.1 for test error <= 10%), per row; see fwbench.report.capacity
    capacity: float | None = None
    rows: str = "model"
    columns: str = "hidden"
    scale: float = 1.0
    # settings chosen on validation where a cell's runs differ in them, the two of the heatmap and
    # the one of the line plot: which ones are hyper-parameters is the preset's to say
    tune: tuple[str, ...] = ()
    heatmap: tuple[str, ...] = ()
    line: str | None = None
    paper: dict[str, Any] = dataclasses.field(default_factory=dict)  # values[row][column]
    # several summary keys side by side: column label -> key; `columns` names the labels and
    # `metric` the values (e.g. eval length -> test_K8_error, ...)
    metrics: dict[str, str] = dataclasses.field(default_factory=dict)
    title: str = ""
    # the range of `metric` and of the first curve (which tails and thresholds read), e.g.
    # (0, 1) for an error or a rate: intervals are cut to it; None: unbounded
    bounds: tuple[float, float] | None = None
    # the range of further curves, split/metric -> (low, high), e.g. a training rate's
    curve_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    # settings pinned at one value in the report, for the runs whose model has them: a setting
    # some rows' models lack, which the sweep's shared settings cannot name (fast weights' lam
    # beside an IRNN); a run with another value (a tuned run of the same grid) is not the
    # report's. A table under a model's name pins settings for that model's runs alone, e.g.
    # { fastweights = { eta = 0.5 } } beside a model registered with eta = 0, so that another
    # sweep's grid over the model's settings stays out of this report's cells. Read by
    # fwbench.report.select; --protocol reports choose by trial instead
    pinned: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.direction not in ("lower", "higher"):
            raise FwbenchError(f"invalid direction {self.direction!r}: expected lower or higher")
        for c in self.curves:
            if c.count("/") != 1 or not all(c.split("/")):
                raise FwbenchError(f"invalid curve {c!r}: expected SPLIT/METRIC, e.g. valid/error")
        if self.tail is not None and (isinstance(self.tail, bool) or not isinstance(self.tail, int)
                                      or self.tail < 1):
            raise FwbenchError(f"invalid tail {self.tail!r}: expected a whole number of curve "
                               "points >= 1")
        if self.capacity is not None and (isinstance(self.capacity, bool) or not isinstance(
                self.capacity, (int, float)) or not math.isfinite(self.capacity)):
            raise FwbenchError(f"invalid capacity {self.capacity!r}: expected a number, the "
                               "threshold on the metric in its raw units (e.g. 0.1)")
        for curve, rng in self.curve_ranges.items():
            if not _is_range(rng):
                raise FwbenchError(f"invalid curve_ranges entry {curve} = {rng!r}: expected "
                                   "[low, high], two numbers with low < high, e.g. [0, 1]")
        if self.bounds is not None and not _is_range(self.bounds):
            raise FwbenchError(f"invalid bounds {self.bounds!r}: expected [low, high], two "
                               "numbers with low < high, e.g. [0, 1] for an error or a rate")
        for key in ("area", "held"):
            if not isinstance(getattr(self, key), bool):
                raise FwbenchError(f"invalid {key} {getattr(self, key)!r}: expected true or false")
        if not isinstance(self.pinned, dict) or any(
                isinstance(v, (list, tuple)) or (isinstance(v, dict) and any(
                    isinstance(x, (dict, list, tuple)) for x in v.values()))
                for v in self.pinned.values()):
            raise FwbenchError(f"invalid [report] pinned {self.pinned!r}: expected a table of "
                               "settings and one value each, e.g. { lam = 0.95, eta = 0.5 }, "
                               "or of models and such a table each, e.g. { fastweights = "
                               "{ eta = 0.5 } }")
        if self.held and self.threshold is None:
            raise FwbenchError("held measures runs against the threshold: give a threshold too")
        if self.rows == self.columns:
            raise FwbenchError(f"rows and columns are both {self.rows!r}: choose two settings")

    def curve_bounds(self, curve: str) -> tuple[float, float] | None:
        """The range of a curve's values: `bounds` for the first curve, else its entry in
        `curve_ranges`, else unbounded."""
        if self.curves and curve == self.curves[0]:
            return self.bounds
        rng = self.curve_ranges.get(curve)
        return tuple(rng) if rng is not None else None

    @property
    def lower_better(self) -> bool:
        return self.direction == "lower"

    def select_key(self, available: list[str]) -> str | None:
        """The summary key settings are chosen on; never a test key. A test accuracy with no
        validation accuracy beside it is chosen on the validation error (its complement)."""
        if self.select is not None:
            return self.select
        if self.metric.startswith("test_"):
            rest = self.metric[len("test_"):]
            names = [rest] + (["error"] if rest == "accuracy" else [])
            for key in (f"{p}_{r}" for r in names for p in ("best_valid", "valid")):
                if key in available:
                    return key
            return None
        return self.metric

    def select_lower(self, key: str | None) -> bool:
        """Whether a lower value of the selection key is better: errors and losses are, an
        accuracy is not, any other key goes the metric's way."""
        if key is not None and key.endswith(("_error", "_loss")):
            return True
        if key is not None and key.endswith("_accuracy"):
            return False
        return self.lower_better

    def paper_value(self, row: Any, column: Any) -> float | None:
        """The paper's number for a cell (already in display units), if it has one."""
        for rkey, cols in self.paper.items():
            if same_value(rkey, row) and isinstance(cols, dict):
                for ckey, v in cols.items():
                    if same_value(ckey, column):
                        return float(v)
        return None


def _is_range(bounds: Any) -> bool:
    return (isinstance(bounds, (list, tuple)) and len(bounds) == 2
            and all(_number(b) is not None for b in bounds) and _number(bounds[0]) < _number(
                bounds[1]))


def from_preset(preset, sweep: str | None = None, **overrides: Any) -> ReportSpec:
    """The spec a preset's [paper]/[report] tables describe (with the [sweeps.X.report] table
    of the sweeps `sweep` names on top), with non-None overrides on top of that."""
    paper = dict(preset.paper) if preset is not None else {}
    rep = preset.report_table(sweep) if preset is not None else {}
    rep.pop("sweeps", None)  # which runs, not how to report them: see in_preset
    fields = {f.name for f in dataclasses.fields(ReportSpec)}
    unknown = sorted(set(rep) - fields)
    if unknown:
        raise FwbenchError(f"preset {preset.name!r}: unknown [report] keys {unknown}; allowed: "
                           + ", ".join(sorted(fields - {"paper", "title"})))
    values: dict[str, Any] = {k: paper[k] for k in ("metric", "scale", "rows", "columns")
                              if k in paper}
    values.update(rep)  # [report] refines [paper]
    values["paper"] = paper.get("values", {})
    if preset is not None:
        values["title"] = preset.title or preset.name
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("curves", "tune", "heatmap", "bounds"):
        if key in values:
            values[key] = tuple(values[key])
    if len(values.get("heatmap", ())) not in (0, 2):
        raise FwbenchError("report heatmap must name two settings, e.g. [\"lam\", \"eta\"]")
    return ReportSpec(**values)


def same_value(a: Any, b: Any) -> bool:
    """Equality across TOML, JSON and strings: 20 == 20.0 == "20", [1, 2] == (1, 2) == "1,2"
    (the run table holds lists as 'a,b' strings)."""
    if isinstance(a, str) and isinstance(b, (list, tuple)):
        a = a.split(",") if a else []
    if isinstance(b, str) and isinstance(a, (list, tuple)):
        b = b.split(",") if b else []
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same_value(x, y) for x, y in zip(a, b)))
    fa, fb = _number(a), _number(b)
    if fa is not None and fb is not None:
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
    return str(a).lower() == str(b).lower() if isinstance(a, bool) or isinstance(b, bool) \
        else str(a) == str(b)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        out = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def in_preset(flat: dict[str, Any], preset, sweep: str | None = None,
              sets: dict[str, Any] | None = None) -> bool:
    """Whether a run (its flat config) is one of the preset's grids (or of the named sweeps
    `sweep` names, a name or a pattern).

    Settings the preset fixes must match, swept ones must take one of the listed values (a
    setting added after a run was recorded counts at its default, `fwbench.settings.recorded`);
    settings it does not mention are free, and so are seeds [C]. `sets` are the `--set`
    overrides the sweep was run with: they replace the preset's value or axis, as in a sweep.
    """
    if not same_value(flat.get("task"), preset.task):
        return False
    sets = sets or {}
    grids = [preset.sweep(n) for n in preset.sweep_names(sweep)] if sweep is not None \
        else list(preset.report_grids().values())
    for settings, grid in grids:
        settings = {**settings, **sets}
        grid = {k: v for k, v in grid.items() if k not in sets}
        if all(same_value(recorded(flat, k), v) for k, v in settings.items() if k != "task") \
                and all(any(same_value(recorded(flat, k), x) for x in vals)
                        for k, vals in grid.items()):
            return True
    return False


def has_settings(runs: pd.DataFrame, settings: dict[str, Any]) -> pd.Series:
    """Whether each run has every one of `settings`; a setting added after a run was recorded
    counts at its default (`fwbench.settings.recorded`), any other absent one matches nothing."""
    mask = pd.Series(True, index=runs.index)
    for key, value in settings.items():
        if key not in runs.columns and key not in ADDED_DEFAULTS:
            return pd.Series(False, index=runs.index)
        column = runs[key] if key in runs.columns else pd.Series(None, index=runs.index)
        mask &= column.map(lambda v, want=value, k=key: same_value(recorded({k: v}, k), want)
                           ).astype(bool)  # bool even where there is no run
    return mask
