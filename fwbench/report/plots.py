"""Figures, drawn with matplotlib's Agg backend (no display needed), saved as PNG and SVG.

- convergence: each curve (validation error, training loss, ...) against updates, one panel
  per table column, one line per table row, mean over seeds with a 95% t-interval band;
- heatmap: the table metric over two tuned settings (lam x eta), one panel per value of the
  line setting (S);
- line: the table metric against the line setting (S), the other tuned settings chosen on
  validation at each point;
- against_columns: the table metric against its (numeric) columns, one line per row, with the
  capacity threshold (capacity curves: error against the number of stored pairs K).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fwbench.records import atomic_write
from fwbench.report.cells import CurveReader, choose, ordered
from fwbench.report.spec import ReportSpec
from fwbench.report.stats import band, mean_ci


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fwbench"  # the same SVG ids on every run
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.svg (atomically); return their paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
        path = stem.parent / f"{stem.name}.{fmt}"  # a stem may hold dots (lr=0.001)
        atomic_write(path, buf.getvalue())
        paths.append(path)
    _pyplot().close(fig)
    return paths


def curve_table(run_ids: list[str], split: str, metric: str, read: CurveReader) -> pd.DataFrame:
    """[runs, steps] values of one curve (NaN where a run has no value at a step)."""
    series = {rid: read(rid, split, metric).set_index("step")["value"] for rid in run_ids}
    series = {k: v for k, v in series.items() if len(v)}
    return pd.DataFrame(series).T.sort_index(axis=1) if series else pd.DataFrame()


def convergence(cells: pd.DataFrame, spec: ReportSpec, read: CurveReader, stem: Path,
                title: str) -> list[Path]:
    """Curves x columns panels; a line with its CI band per table row."""
    plt = _pyplot()
    columns = ordered(cells["column"], [])  # increasing, also where rows differ in columns
    rows = list(dict.fromkeys(cells["row"]))
    fig, axes = plt.subplots(len(spec.curves), len(columns), squeeze=False, sharex="col",
                             figsize=(4.2 * len(columns), 3.0 * len(spec.curves)))
    palette = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    colours = lambda k: palette(k % palette.N)  # noqa: E731  (distinct up to 20 rows)
    for j, col in enumerate(columns):
        for i, curve in enumerate(spec.curves):
            split, metric = curve.split("/")
            ax = axes[i][j]
            for k, row in enumerate(rows):
                hit = cells[(cells["row"] == row) & (cells["column"] == col)]
                if not len(hit):
                    continue
                table = curve_table(hit.iloc[0]["runs"], split, metric, read)
                if table.empty:
                    continue
                b = band(table, bounds=spec.curve_bounds(curve))
                x = b.index.to_numpy(dtype=float)
                ax.plot(x, b["mean"].to_numpy(dtype=float), color=colours(k), label=str(row),
                        linestyle="-" if k < 10 else "--")
                ax.fill_between(x, b["low"].to_numpy(dtype=float),
                                b["high"].to_numpy(dtype=float), color=colours(k),
                                alpha=0.2, linewidth=0)
            if i == 0 and not spec.metrics:  # side-by-side metrics share one set of curves
                ax.set_title(f"{spec.columns}={col}", fontsize=9)
            ax.set_ylabel(f"{split} {metric}")
            ax.grid(alpha=0.3)
            if i == len(spec.curves) - 1:
                ax.set_xlabel(spec.x_label)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title} (mean over seeds, 95% CI band)", fontsize=10)
    return save(fig, stem)


def _point_values(runs: pd.DataFrame, keys: list[str], tuned: list[str], spec: ReportSpec,
                  select: str | None) -> pd.DataFrame:
    """Per combination of `keys`: the metric of the best other tuned setting (on validation)."""
    others = [k for k in tuned if k not in keys]
    out = []
    for values, grp in runs.groupby(keys, sort=True):
        chosen, _ = choose(grp, others, select, spec.lower_better)
        mean, low, high, n = mean_ci(chosen[spec.metric].astype(float), bounds=spec.bounds)
        values = values if isinstance(values, tuple) else (values,)
        out.append({**dict(zip(keys, values)), "mean": mean * spec.scale,
                    "low": low * spec.scale, "high": high * spec.scale, "n": n})
    return pd.DataFrame(out)


def heatmap(runs: pd.DataFrame, spec: ReportSpec, tuned: list[str], select: str | None,
            stem: Path, title: str) -> list[Path]:
    """The metric over heatmap[0] (rows) x heatmap[1] (columns), a panel per line value."""
    plt = _pyplot()
    ykey, xkey = spec.heatmap
    panel_key = spec.line if spec.line in tuned else None
    keys = [ykey, xkey] + ([panel_key] if panel_key else [])
    points = _point_values(runs, keys, tuned, spec, select)
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
        for _, p in sub.iterrows():
            grid[ys.index(p[ykey]), xs.index(p[xkey])] = p["mean"]
        im = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        for (a, b), v in np.ndenumerate(grid):
            shade = 0.5 if math.isnan(v) or vmax == vmin else (v - vmin) / (vmax - vmin)
            dark = sum(cmap(shade)[:3]) < 1.5  # white text on dark cells, black on light
            ax.text(b, a, "—" if math.isnan(v) else f"{v:.3g}", ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_xlabel(xkey)
        if n == 0:
            ax.set_ylabel(ykey)
        ax.set_title(f"{panel_key}={pv:g}" if pv is not None else "", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label=f"{spec.metric} x{spec.scale:g}")
    fig.suptitle(f"{title}: mean {spec.metric} over seeds", fontsize=10)
    return save(fig, stem)


def line(runs: pd.DataFrame, spec: ReportSpec, tuned: list[str], select: str | None,
         stem: Path, title: str) -> list[Path]:
    """The metric against the line setting, with 95% CI error bars."""
    plt = _pyplot()
    points = _point_values(runs, [spec.line], tuned, spec, select)
    x = points[spec.line].to_numpy(dtype=float)
    y = points["mean"].to_numpy(dtype=float)
    err = np.vstack([y - points["low"].to_numpy(dtype=float),
                     points["high"].to_numpy(dtype=float) - y])
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", capsize=3)
    ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.set_xlabel(spec.line)
    ax.set_ylabel(f"{spec.metric} x{spec.scale:g}")
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}: other settings chosen on validation", fontsize=9)
    return save(fig, stem)


def against_columns(cells: pd.DataFrame, spec: ReportSpec, stem: Path, title: str) -> list[Path]:
    """Each row's cells against the table columns (mean over seeds, 95% CI error bars), the
    capacity threshold dashed; a log2 axis when the columns span more than a factor of 8."""
    plt = _pyplot()
    rows = list(dict.fromkeys(cells["row"]))
    palette = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    xs = sorted({float(c) for c in cells["column"]})
    for k, row in enumerate(rows):
        mine = cells[cells["row"] == row].assign(x=lambda d: d["column"].astype(float))
        mine = mine.sort_values("x")
        y = mine["mean"].to_numpy(dtype=float)
        err = np.vstack([y - mine["low"].to_numpy(dtype=float),
                         mine["high"].to_numpy(dtype=float) - y])
        ax.errorbar(mine["x"].to_numpy(dtype=float), y, yerr=np.nan_to_num(err), marker="o",
                    markersize=3, capsize=2, color=palette(k % palette.N), label=str(row),
                    linestyle="-" if k < 10 else "--")
    if spec.capacity is not None:
        ax.axhline(spec.capacity * spec.scale, color="black", linestyle=":", linewidth=1,
                   label=f"capacity threshold ({spec.capacity * spec.scale:g})")
    if xs and xs[0] > 0 and xs[-1] / xs[0] > 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel(spec.columns)
    ax.set_ylabel(f"{spec.metric} x{spec.scale:g}" if spec.scale != 1 else spec.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves
    ax.set_title(f"{title}: mean over seeds, 95% CI", fontsize=9)
    return save(fig, stem)
