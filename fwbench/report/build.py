"""Building a report from a results directory: filter the runs, tabulate each task, plot,
write report.md beside its tables and figures (all linked by relative paths).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pandas as pd

from fwbench import names
from fwbench.errors import FwbenchError
from fwbench.records import atomic_write
from fwbench.report import document, plots
from fwbench.report.capacity import capacity_table
from fwbench.report.claims import judge
from fwbench.report.cells import build_cells, check_columns, split_keys, tuned_keys
from fwbench.report.load import Loaded, load_runs, read_curve
from fwbench.report.select import Options, isnan, matching_preset, select_runs
from fwbench.report.pending import missing_points, pending_table, planned_points
from fwbench.report.probes import probe_rows
from fwbench.report.spec import ReportSpec, from_preset


@dataclasses.dataclass
class Section:
    """One task's part of the report: its spec, cells and the files drawn for it."""

    task: str
    spec: ReportSpec
    cells: pd.DataFrame
    splits: list[str]
    tables: dict[str, Path]
    figures: list[tuple[str, Path]]
    capacity: pd.DataFrame | None = None  # per group and row, where the spec asks for it
    claims: pd.DataFrame | None = None  # verdicts on the preset's claims, where it has some
    runs: pd.DataFrame | None = dataclasses.field(default=None, repr=False)  # the cells' runs
    reader: Any = dataclasses.field(default=None, repr=False)  # their curves, cached
    probes: pd.DataFrame | None = None  # memory-probe accuracy, where runs were probed
    # the preset's planned runs that no finished run covers, with their extrapolated cost
    pending: pd.DataFrame | None = None
    planned: list = dataclasses.field(default_factory=list, repr=False)  # every planned run


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    return path


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "all"


def task_section(task: str, runs: pd.DataFrame, loaded: Loaded, spec: ReportSpec,
                 out: Path, claims=()) -> Section:
    """Cells, verdicts on `claims`, tables and figures of one task (see `judged_section`)."""
    return write_section(judged_section(task, runs, loaded, spec, claims), out)


def judged_section(task: str, runs: pd.DataFrame, loaded: Loaded, spec: ReportSpec,
                   claims=()) -> Section:
    """Cells and verdicts of one task, nothing written yet (a bad claim stops the report
    before any file is)."""
    reader = functools.lru_cache(maxsize=None)(
        lambda rid, split, metric: read_curve(loaded.run_path(rid), split, metric))
    if spec.metrics:
        runs = side_by_side(runs, spec, loaded.config_keys)
    cells, splits = build_cells(runs, spec, loaded.config_keys, reader)
    cap = capacity_table(cells, runs, spec) if spec.capacity is not None else None
    verdicts = judge(claims, cells, runs, spec, reader) if claims else None
    if verdicts is not None and (verdicts["verdict"] == "not run").all():
        verdicts = None  # the runs hold none of the claims' cells (e.g. one sweep of a preset)
    probes = probe_rows(cells, loaded.run_path) if len(cells) else None
    return Section(task, spec, cells, splits, {}, [], cap, verdicts, runs, reader, probes)


def write_section(section: Section, out: Path) -> Section:
    """Write a judged section's tables and figures; return it with their paths."""
    task, spec, cells, splits, cap = (section.task, section.spec, section.cells,
                                      section.splits, section.capacity)
    runs, reader = section.runs, section.reader
    tables = {
        "csv": _write(out / "tables" / f"{slug(task)}.csv", document.csv_text(cells, spec)),
        "md": _write(out / "tables" / f"{slug(task)}.md",
                     document.tables_markdown(cells, spec, capacity=cap)),
        "tex": _write(out / "tables" / f"{slug(task)}.tex",
                      document.tables_latex(cells, spec, task, capacity=cap)),
    }
    if cap is not None:
        tables["capacity csv"] = _write(out / "tables" / f"{slug(task)}-capacity.csv",
                                        cap.to_csv(index=False, float_format="%.6g"))
    if section.claims is not None:
        tables["claims csv"] = _write(out / "tables" / f"{slug(task)}-claims.csv",
                                      section.claims.to_csv(index=False, float_format="%.6g"))
    if section.pending is not None:
        tables["pending csv"] = _write(out / "tables" / f"{slug(task)}-pending.csv",
                                       section.pending.to_csv(index=False, float_format="%.6g"))
    if section.probes is not None:
        tables["probe csv"] = _write(out / "tables" / f"{slug(task)}-probe.csv",
                                     section.probes.to_csv(index=False, float_format="%.6g"))
    section.tables = tables
    section.figures = figures_for(task, runs, cells, splits, spec, reader, out / "plots")
    return section


def side_by_side(runs: pd.DataFrame, spec: ReportSpec, config_keys: list[str]) -> pd.DataFrame:
    """One row per run and `spec.metrics` label: the label in column `spec.columns`, that
    key's value in column `spec.metric`, so each key becomes a table column."""
    if spec.columns in config_keys:
        raise FwbenchError(f"report columns {spec.columns!r} is a setting of the runs; with "
                           "metrics side by side, columns names their labels (e.g. \"test K\")")
    missing = [k for k in spec.metrics.values() if k not in runs.columns]
    if missing:
        raise FwbenchError(f"no run has summary keys {', '.join(missing)}; the report's metrics "
                           "name summary.json keys")
    parts = []
    for label, key in spec.metrics.items():
        part = runs.copy()
        part[spec.columns] = int(label) if str(label).isdigit() else label
        part[spec.metric] = runs[key]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def figures_for(task, runs, cells, splits, spec, reader, plot_dir) -> list[tuple[str, Path]]:
    """Convergence per group; metric against the columns where there is a capacity or the
    columns are metrics side by side (error against test K); heatmap and line plot per cell
    that sweeps those settings."""
    figs = []
    select = check_columns(runs, spec)
    tuned = tuned_keys(runs, spec)
    for g, (label, gcells) in enumerate(cells.groupby("group", sort=False)):
        name = figure_name(task, label)
        title = f"{task} ({label})" if label else task
        curve_cells = gcells  # metrics side by side share their runs' curves: draw them once
        if spec.metrics:
            curve_cells = gcells[gcells["column"] == gcells["column"].iloc[0]]
        if spec.capacity is not None or (spec.metrics and _numeric(gcells["column"])):
            kind = "capacity" if spec.capacity is not None else f"against-{slug(spec.columns)}"
            png = plots.against_columns(gcells, spec, plot_dir / f"{name}-{kind}", title)[0]
            what = "Capacity" if spec.capacity is not None else \
                f"{names.metric(spec.metric)} against {spec.columns}"
            figs.append((f"{what}: {title}", png))
        png = plots.convergence(curve_cells, spec, reader, plot_dir / f"{name}-curves",
                                title)[0]
        figs.append((f"Convergence: {title}", png))
        for _, cell in gcells.iterrows():
            cruns = _cell_runs(runs, splits, cell, spec)
            ctuned = [k for k in tuned if cruns[k].nunique() > 1]
            ctitle = f"{title}, {spec.rows}={cell['row']}, {spec.columns}={cell['column']}"
            cname = slug(f"{name}-{cell['row']}-{cell['column']}")
            if spec.heatmap and all(k in ctuned for k in spec.heatmap):
                png = plots.heatmap(cruns, spec, ctuned, select, plot_dir / f"{cname}-heatmap",
                                    ctitle)[0]
                figs.append((f"{' x '.join(map(names.setting, spec.heatmap))}: {ctitle}", png))
            if spec.line is not None and spec.line in ctuned:
                png = plots.line(cruns, spec, ctuned, select, plot_dir / f"{cname}-{spec.line}",
                                 ctitle)[0]
                figs.append((f"{names.setting(spec.line)}: {ctitle}", png))
    return figs


MAX_KEY = 32  # characters of a group's label kept in its figures' names


def figure_name(task: str, label: str) -> str:
    """`task-label`, short and stable: a label longer than MAX_KEY (a report on the whole
    results root splits on many settings) is cut and a hash of the whole label added, so the
    same group keeps the same name on every rebuild and two groups never share one."""
    key = slug(label) if label else ""
    if len(key) > MAX_KEY:
        digest = hashlib.sha1(label.encode()).hexdigest()[:6]
        key = f"{key[:MAX_KEY - 7].rstrip('_.=-')}-{digest}"
    return slug(f"{task}-{key}") if key else slug(task)


def _numeric(values: pd.Series) -> bool:
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def _cell_runs(runs: pd.DataFrame, splits: list[str], cell: pd.Series, spec) -> pd.DataFrame:
    """Every run of one cell (all tuned settings, all seeds)."""
    ids = set(cell["runs"])
    first = runs[runs["run_id"].isin(ids)].iloc[0]
    mask = (runs[spec.rows] == cell["row"]) & (runs[spec.columns] == cell["column"])
    for k in splits:
        mask &= runs[k].isna() if isnan(first[k]) else runs[k] == first[k]
    return runs[mask]


def build_report(opts: Options, into: Path | None = None
                 ) -> tuple[Path, list[Section], Loaded, pd.DataFrame]:
    """Write the report (into `into` if given, else where `opts` say, which report.md names as
    its command); return its directory, sections, the loaded and the selected runs."""
    from fwbench.presets import load
    from fwbench.report.command import command_line

    if (opts.sweep is not None or opts.sets) and opts.preset is None:
        raise FwbenchError("--sweep and --set describe a preset's sweep: give --preset too")
    preset = load(opts.preset) if opts.preset else None
    if preset is not None and opts.task is not None and opts.task != preset.task:
        raise FwbenchError(f"--task {opts.task} conflicts with preset {preset.name!r}, which is "
                           f"for task {preset.task!r}")
    if preset is not None and opts.sweep is not None:
        preset.sweep_names(opts.sweep)  # an unknown sweep name is an error
    loaded = load_runs(opts.results)
    runs = select_runs(loaded, opts, preset)
    name = "-".join(n for n in (preset.name if preset else "", slug(opts.sweep) if opts.sweep
                                else "") if n)
    out = into or opts.out or Path(opts.results) / "report" / name
    judged = []  # every task judged before any file is written
    for task in sorted(runs["task"].unique()):
        truns = runs[runs["task"] == task]
        source = preset or matching_preset(truns, loaded.config_keys, task)
        spec = from_preset(source, opts.sweep if source is preset else None,
                           **_overrides(opts, source, truns, loaded.config_keys))
        claims = source.claims if source is not None else ()
        section = judged_section(task, truns, loaded, spec, claims)
        if preset is not None and source is preset and not opts.where:  # what is left?
            section.planned = planned_points(preset, opts.preset, opts.sweep, opts.sets)
            missing = missing_points(section.planned, truns, spec)
            section.pending = pending_table(missing, truns, spec) if missing else None
        judged.append(section)
    sections = [write_section(s, Path(out)) for s in judged]
    _write(Path(out) / "summary.csv", summary_csv(runs, loaded))
    _write(Path(out) / "report.md", document.report_markdown(
        sections, loaded, runs, Path(out), title=preset.title if preset else "",
        command=command_line(opts)))
    written = [Path(out) / "summary.csv", Path(out) / "report.md"]
    for sec in sections:
        written += list(sec.tables.values())
        written += [p for _, png in sec.figures for p in (png, png.with_suffix(".svg"))]
    _forget_stale(Path(out), written)
    return Path(out), sections, loaded, runs


def _overrides(opts: Options, source, runs: pd.DataFrame, config_keys: list[str]
               ) -> dict[str, Any]:
    """The options' overrides; without a preset, on top of the sweep's own tuning (see
    `sweep_tuning`), the metric's units as `fwbench run` and the sweep print them, and the
    ranges of errors and accuracies (fractions)."""
    given = {k: v for k, v in opts.overrides.items() if v is not None}
    if source is not None:
        return given
    metric = given.get("metric", "test_error")
    curves = given.get("curves") or ReportSpec.curves
    units = {"scale": names.default_scale(metric), "bounds": names.default_bounds(metric),
             "curve_ranges": {c: r for c in curves[1:] if (r := names.default_bounds(c))}}
    return {**sweep_tuning(runs, config_keys, given), **units, **given}


def sweep_tuning(runs: pd.DataFrame, config_keys: list[str], given: dict[str, Any]
                 ) -> dict[str, Any]:
    """A report without a preset treats every setting that varies within a table cell as a
    hyper-parameter chosen on validation (each grid point a row of the grid table); the first
    two numeric ones (most values first) make the heatmap and a third the line plot. No setting is named here: a
    preset's [report] table says otherwise where it knows better."""
    base = from_preset(None, **{k: given[k] for k in ("rows", "columns", "metric", "select")
                                if k in given})
    if base.select_key(list(runs.columns)) is None:  # nothing to choose on: split instead
        return {}
    # the settings with the most values first (ties by name): a λ x η x S grid with three
    # λ gives the λ x η heatmap and the line over S
    varied = sorted(split_keys(runs, base, config_keys),
                    key=lambda k: (-runs[k].nunique(dropna=False), k.casefold()))
    numeric = [k for k in varied if _numeric(runs[k])]
    tuning: dict[str, Any] = {"tune": tuple(varied)}
    if len(numeric) >= 2:
        tuning["heatmap"] = tuple(numeric[:2])
    if len(numeric) >= 3:
        tuning["line"] = numeric[2]
    return tuning


MANIFEST = ".fwbench-report"  # the files the last report in a directory wrote


def _forget_stale(out: Path, written: list[Path]) -> None:
    """Delete what the previous report here wrote and this one did not (a plot of a group
    that is gone); files no report wrote are left alone. Then record this report's files."""
    now = {str(p.relative_to(out)) for p in written}
    manifest = out / MANIFEST
    before = set(manifest.read_text().split("\n")) if manifest.is_file() else set()
    for rel in before - now - {""}:
        stale = out / rel
        if stale.is_file() and out.resolve() in stale.resolve().parents:
            stale.unlink()
    atomic_write(manifest, "\n".join(sorted(now)) + "\n")


def summary_csv(runs: pd.DataFrame, loaded) -> str:
    """One row per run: run id, status, settings, summary metrics (the runs' own columns, in
    their records' order)."""
    buf = io.StringIO()
    loaded.table_of(list(runs["run_id"])).dropna(axis=1, how="all").to_csv(buf, index=False)
    return buf.getvalue()
