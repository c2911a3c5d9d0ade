"""Figures, drawn with matplotlib's Agg backend (no display needed), saved as PNG and SVG.

- convergence: each curve (validation error, training loss, ...) against updates, one panel
  per table column, one line per table row (its configuration chosen on validation named),
  mean over seeds with a 95% t-interval band where there are two seeds or more. A run stopped
  early keeps its last value to the end of the longest run (its stop marked with a short bar),
  so the mean is over the same seeds at every step rather than over the runs still going;
- heatmap: the table metric over two tuned settings (λ x η), one panel per value of the line
  setting (S), the configuration chosen on validation framed;
- line: the table metric against the line setting (S), the other tuned settings chosen on
  validation at each point and written beside it;
- against_columns: the table metric against its (numeric) columns, one line per row, with the
  capacity threshold where there is one (capacity: error against the number of stored pairs K;
  length generalisation: error against the test K).

Values are in the tables' units (a curve of the table's quantity too: valid/error is in percent
where test_error is); an axis whose values span more than two decades is logarithmic.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from fwbench import names
from fwbench.report.cells import CurveReader, choose, ordered
from fwbench.report.figstyle import legend_beside, log_if_decades, pyplot, save, style
from fwbench.report.spec import ReportSpec
from fwbench.report.stats import band, mean_ci, interval_name

__all__ = ["against_columns", "convergence", "heatmap", "line", "save"]


def curve_table(run_ids: list[str], split: str, metric: str, read: CurveReader) -> pd.DataFrame:
    """[runs, steps] values of one curve (NaN where a run has no value at a step)."""
    series = {rid: read(rid, split, metric).set_index("step")["value"] for rid in run_ids}
    series = {k: v for k, v in series.items() if len(v)}
    return pd.DataFrame(series).T.sort_index(axis=1) if series else pd.DataFrame()


def curve_scale(curve: str, spec: ReportSpec) -> float:
    """The table's display factor for a curve of the table's quantity (valid/error beside
    test_error), else 1."""
    return spec.scale if spec.metric.endswith(curve.split("/")[1]) else 1.0


def axis_label(key: str, scale: float) -> str:
    """'validation error (%)'."""
    return names.metric(key) + names.unit(scale)


def chosen_name(cell: pd.Series) -> str:
    """The cell's configuration chosen on validation, 'λ=0.9 η=0.5 S=1', or ''."""
    grid = cell.get("grid")
    if not isinstance(grid, list):
        return ""
    return next((names.assigns(p["settings"].items()) for p in grid if p["chosen"]), "")


def _carried(table: pd.DataFrame) -> tuple[pd.DataFrame, list[float]]:
    """Each run's last value carried to the last step of any run; the steps where runs that
    stopped early stopped."""
    last = [table.columns[np.flatnonzero(np.isfinite(r))[-1]] for r in table.to_numpy(float)]
    stops = [float(s) for s in last if s < table.columns[-1]]
    return table.ffill(axis=1), stops


def _draw_row(ax, table: pd.DataFrame, scale: float, k: int, label: str, bounds=None):
    """One row's mean (and band where n >= 2, within `bounds`); return its line and its last
    value."""
    table, stops = _carried(table)
    b = band(table, bounds=bounds)
    x = b.index.to_numpy(dtype=float)
    mean = b["mean"].to_numpy(dtype=float) * scale
    st = style(k)
    (handle,) = ax.plot(x, mean, color=st["color"], linestyle=st["linestyle"], label=label,
                        linewidth=1.3, clip_on=False)
    if (b["n"] >= 2).any():
        low = b["low"].to_numpy(dtype=float)
        low = np.maximum(low, 0) if np.nanmin(table.to_numpy(float)) >= 0 else low
        ax.fill_between(x, low * scale,
                        b["high"].to_numpy(dtype=float) * scale, color=st["color"], alpha=0.18,
                        linewidth=0)
    if stops:  # where runs stopped early: from there on they hold their last value
        ax.plot(stops, np.interp(stops, x, mean), linestyle="none", marker="|", markersize=9,
                color=st["color"], clip_on=False)
    return handle, mean[-1], int(b["n"].max()), bool(stops)


def convergence(cells: pd.DataFrame, spec: ReportSpec, read: CurveReader, stem: Path,
                title: str) -> list[Path]:
    """Curves x columns panels; a line (band where n >= 2) per table row."""
    plt = pyplot()
    columns = ordered(cells["column"], [])  # increasing, also where rows differ in columns
    rows = list(dict.fromkeys(cells["row"]))
    fig, axes = plt.subplots(len(spec.curves), len(columns), squeeze=False, sharex="col",
                             figsize=(4.2 * len(columns), 3.0 * len(spec.curves)),
                             gridspec_kw={"wspace": 0.4})  # room for a panel's scale label
    handles, seeds, stopped = {}, set(), False
    for j, col in enumerate(columns):
        for i, curve in enumerate(spec.curves):
            split, metric = curve.split("/")
            ax, scale, drawn = axes[i][j], curve_scale(curve, spec), []
            for k, row in enumerate(rows):
                hit = cells[(cells["row"] == row) & (cells["column"] == col)]
                table = curve_table(hit.iloc[0]["runs"], split, metric, read) if len(hit) \
                    else pd.DataFrame()
                if table.empty:
                    continue
                label = f"{row}: {chosen_name(hit.iloc[0])}" if chosen_name(hit.iloc[0]) \
                    else str(row)
                h, end, n, early = _draw_row(ax, table, scale, k, label,
                                            bounds=spec.curve_bounds(curve))
                stopped |= early
                handles.setdefault(label, (h, end))
                drawn.append(table.to_numpy(float).ravel() * scale)
                seeds.add(n)
            if i == 0 and not spec.metrics:  # side-by-side metrics share one set of curves
                ax.set_title(f"{names.setting(spec.columns)}={col}", fontsize=9)
            if j == 0:  # the quantity once per row of panels: longer labels would overlap
                ax.set_ylabel(axis_label(curve, scale))
            ax.grid(alpha=0.3)
            ax.margins(x=0.01)
            if drawn:
                log_if_decades(ax, np.concatenate(drawn))
            if i == len(spec.curves) - 1:
                ax.set_xlabel(spec.x_label)
    labels = list(handles)
    legend_beside(axes[0][-1], [handles[k][0] for k in labels], labels,
                  [handles[k][1] for k in labels], descending=not spec.lower_better)
    note = "; |: a run stopped early, its last value held to the end" if stopped else ""
    fig.suptitle(f"{title}: {_over_seeds(seeds)}{note}", fontsize=9)
    return save(fig, stem)


def _over_seeds(seeds: set[int]) -> str:
    """What a line is: 'mean over 3 seeds, 95% t-interval band' or 'one seed'."""
    most = max(seeds, default=0)
    if most < 2:
        return "one seed, no band"
    n = f"{most} seeds" if min(seeds) == most else f"{min(seeds)}-{most} seeds"
    return f"mean over {n}, {interval_name()} band"


def _point_values(runs: pd.DataFrame, keys: list[str], tuned: list[str], spec: ReportSpec,
                  select: str | None) -> pd.DataFrame:
    """Per combination of `keys`: the metric of the best other tuned setting (on validation)."""
    others = [k for k in tuned if k not in keys]
    out = []
    for values, grp in runs.groupby(keys, sort=True):
        chosen, _ = choose(grp, others, select, spec.lower_better)
        varied = [k for k in others if grp[k].nunique(dropna=False) > 1]
        mean, low, high, n = mean_ci(chosen[spec.metric].astype(float), bounds=spec.bounds)
        score = chosen[select].astype(float).mean() if select in chosen else math.nan
        values = values if isinstance(values, tuple) else (values,)
        out.append({**dict(zip(keys, values)), "mean": mean * spec.scale,
                    "low": low * spec.scale, "high": high * spec.scale, "n": n,
                    "score": score,
                    "others": names.assigns((k, chosen[k].iloc[0]) for k in varied)})
    return pd.DataFrame(out)


def _best(points: pd.DataFrame, spec: ReportSpec) -> int | None:
    """Index of the point chosen on validation (its mean selection score), if any."""
    scores = points["score"].astype(float)
    if not scores.notna().any():
        return None
    return int(scores.idxmin() if spec.lower_better else scores.idxmax())


def heatmap(runs: pd.DataFrame, spec: ReportSpec, tuned: list[str], select: str | None,
            stem: Path, title: str) -> list[Path]:
    """The metric over heatmap[0] (rows) x heatmap[1] (columns), a panel per line value; the
    configuration chosen on validation framed."""
    plt = pyplot()
    ykey, xkey = spec.heatmap
    panel_key = spec.line if spec.line in tuned else None
    keys = [ykey, xkey] + ([panel_key] if panel_key else [])
    points = _point_values(runs, keys, tuned, spec, select)
    best = _best(points, spec)
    panels = sorted(points[panel_key].unique()) if panel_key else [None]
    ys, xs = sorted(points[ykey].unique()), sorted(points[xkey].unique())
    finite = points["mean"][np.isfinite(points["mean"])]
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0, 1)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(3.6 * len(panels), 3.4),
                             constrained_layout=True)
    cmap = plt.get_cmap("viridis_r" if spec.lower_better else "viridis")
    for n, (ax, pv) in enumerate(zip(axes[0], panels)):
        sub = points if pv is None else points[points[panel_key] == pv]
        grid = np.full((len(ys), len(xs)), np.nan)
        for i, p in sub.iterrows():
            a, b = ys.index(p[ykey]), xs.index(p[xkey])
            grid[a, b] = p["mean"]
            if i == best:
                ax.add_patch(plt.Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, linewidth=2.5,
                                           edgecolor="#D55E00", clip_on=False))
        im = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        for (a, b), v in np.ndenumerate(grid):
            shade = 0.5 if math.isnan(v) or vmax == vmin else (v - vmin) / (vmax - vmin)
            dark = sum(cmap(shade)[:3]) < 1.5  # white text on dark cells, black on light
            ax.text(b, a, "—" if math.isnan(v) else f"{v:.3g}", ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_xlabel(names.setting(xkey))
        if n == 0:
            ax.set_ylabel(names.setting(ykey))
        ax.set_title(names.assign(panel_key, pv) if pv is not None else "", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label=axis_label(spec.metric, spec.scale))
    chosen = names.assigns((k, points.loc[best, k]) for k in keys) if best is not None else "—"
    fig.suptitle(f"{title}\nmean over {_seeds(points)} per point; framed: chosen on "
                 f"validation ({chosen})", fontsize=9)
    return save(fig, stem)


def _seeds(points: pd.DataFrame) -> str:
    lo, hi = int(points["n"].min()), int(points["n"].max())
    return f"{hi} seed{'s' if hi > 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


def line(runs: pd.DataFrame, spec: ReportSpec, tuned: list[str], select: str | None,
         stem: Path, title: str) -> list[Path]:
    """The metric against the line setting, error bars where n >= 2, each point's other
    settings (chosen on validation) written beside it."""
    plt = pyplot()
    points = _point_values(runs, [spec.line], tuned, spec, select)
    x = points[spec.line].to_numpy(dtype=float)
    y = points["mean"].to_numpy(dtype=float)
    err = np.vstack([y - points["low"].to_numpy(dtype=float),
                     points["high"].to_numpy(dtype=float) - y])
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.errorbar(x, y, yerr=np.nan_to_num(err), capsize=3, clip_on=False, **style(0))
    for xi, yi, others in zip(x, y, points["others"]):
        ax.annotate(others, (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.set_xlabel(names.setting(spec.line))
    ax.set_ylabel(axis_label(spec.metric, spec.scale))
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    bars = "95% t-interval bars" if points["n"].max() >= 2 else "no bars (one seed)"
    ax.set_title(f"{title}\nmean over {_seeds(points)}, {bars}; beside each point: the other "
                 "settings chosen on validation", fontsize=8)
    return save(fig, stem)


def against_columns(cells: pd.DataFrame, spec: ReportSpec, stem: Path, title: str) -> list[Path]:
    """Each row's cells against the table columns (mean over seeds, t-interval bars where
    n >= 2), the capacity threshold dotted; a log2 axis when the columns span more than a
    factor of 8, a log metric axis where the values span decades."""
    plt = pyplot()
    rows = list(dict.fromkeys(cells["row"]))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    xs = sorted({float(c) for c in cells["column"]})
    handles, labels, ends, lows = [], [], [], []
    for k, row in enumerate(rows):
        mine = cells[cells["row"] == row].assign(x=lambda d: d["column"].astype(float))
        mine = mine.sort_values("x")
        y = mine["mean"].to_numpy(dtype=float)
        # an error or a rate is never below 0: a t-interval reaching past it is cut there
        low = mine["low"].to_numpy(dtype=float)
        low = np.maximum(low, 0) if (cells["mean"].dropna() >= 0).all() else low
        lows.append(low)
        err = np.vstack([y - low,
                         mine["high"].to_numpy(dtype=float) - y])
        h = ax.errorbar(mine["x"].to_numpy(dtype=float), y, yerr=np.nan_to_num(err),
                        markersize=3.5, capsize=2, clip_on=False, **style(k))
        handles.append(h)
        labels.append(str(row))
        ends.append(y[-1] if len(y) else math.nan)
    if spec.capacity is not None:
        h = ax.axhline(spec.capacity * spec.scale, color="black", linestyle=":", linewidth=1)
        handles.append(h)
        labels.append(f"capacity threshold ({spec.capacity * spec.scale:g})")
        ends.append(spec.capacity * spec.scale)
    if xs and xs[0] > 0 and xs[-1] / xs[0] > 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel(names.setting(spec.columns))
    ax.set_ylabel(axis_label(spec.metric, spec.scale))
    ax.margins(x=0.03, y=0.05)
    # the bars' lower ends count too: a bar reaching 0 needs the linear part near 0 (on a plain
    # log axis it would run to minus infinity)
    log_if_decades(ax, np.concatenate([cells["mean"].to_numpy(dtype=float), *lows]))
    ax.grid(alpha=0.3)
    legend_beside(ax, handles, labels, ends, descending=True)
    n = cells["n"].astype(int)
    seeds = f"{n.max()} seeds" if n.min() == n.max() else f"{n.min()}-{n.max()} seeds"
    bars = f"{interval_name()} bars" if n.max() >= 2 else "one seed, no bars"
    ax.set_title(f"{title}: mean over {seeds}, {bars}", fontsize=9)
    return save(fig, stem)
