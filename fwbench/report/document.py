"""The text of a report: per-task table files and report.md, which embeds the tables and links
the figures by paths relative to itself, so it reads well on a code-hosting site.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from fwbench import markdown
from fwbench.report import tables
from fwbench.report.capacity import criterion, rows as capacity_rows
from fwbench.report.pending import pending_markdown
from fwbench.report.spec import ReportSpec
from fwbench.report import claims as claims_table
from fwbench.report.stats import interval_name

MAX_NAMED_SKIPS = 20


def _groups(cells: pd.DataFrame):
    return list(cells.groupby("group", sort=False)) if len(cells) else []


def metric_title(spec: ReportSpec) -> str:
    scale = f" x{spec.scale:g}" if spec.scale != 1 else ""
    return f"{spec.metric}{scale} ({spec.direction} is better)"


def csv_text(cells: pd.DataFrame, spec: ReportSpec) -> str:
    return tables.csv_table(cells, spec)


def _capacity_of(capacity: pd.DataFrame | None, label: str) -> pd.DataFrame | None:
    if capacity is None:
        return None
    mine = capacity[capacity["group"] == label]
    return mine if len(mine) else None


def capacity_caption(spec: ReportSpec) -> str:
    return (f"Capacity: per {spec.rows}, the last {spec.columns} with mean {criterion(spec)} "
            f"before the first that is not ({spec.columns} "
            "in increasing order; per seed: the same on each seed's own runs)")


def tables_markdown(cells: pd.DataFrame, spec: ReportSpec, level: int = 3,
                    capacity: pd.DataFrame | None = None) -> str:
    """Paper-layout and detail tables of every group (and capacity, if given), as Markdown."""
    parts = []
    for label, g in _groups(cells):
        if label:
            parts.append(f"{'#' * level} {label}\n")
        with_paper = g["paper"].notna().any()
        caption = "paper vs. ours" if with_paper else "ours"
        parts.append(f"**{metric_title(spec)}, {caption}** (mean [{interval_name()}] over "
                     "seeds)\n")
        parts.append(markdown.table(*tables.layout_rows(g, spec)))
        cap = _capacity_of(capacity, label)
        if cap is not None:
            parts.append(f"\n**{capacity_caption(spec)}**\n")
            parts.append(markdown.table(*capacity_rows(cap, spec)))
        parts.append("\n**Per cell**\n")
        parts.append(markdown.table(*tables.detail_rows(g, spec)))
        parts += grid_markdown(g, spec)
    return "\n".join(parts)


def grid_markdown(cells: pd.DataFrame, spec: ReportSpec) -> list[str]:
    """Every grid point of each cell whose runs differ in tuned settings."""
    parts = []
    for _, cell in cells.iterrows():
        if isinstance(cell.get("grid"), list) and cell["grid"]:
            parts.append(f"\n**Every grid point: {spec.rows}={cell['row']}, "
                         f"{spec.columns}={cell['column']}** (mean [{interval_name()}] over "
                         "seeds; ✓: chosen on validation, its test number is the cell's)\n")
            parts.append(markdown.table(*tables.grid_rows(cell, spec)))
    return parts


def tables_latex(cells: pd.DataFrame, spec: ReportSpec, task: str,
                 capacity: pd.DataFrame | None = None) -> str:
    """Paper-layout table of every group (and capacity, if given), as LaTeX (booktabs)."""
    parts = []
    for label, g in _groups(cells):
        where = f"{task}{' (' + label + ')' if label else ''}"
        caption = f"{where}: {metric_title(spec)}, mean [{interval_name()}] over seeds"
        parts.append(tables.latex(*tables.layout_rows(g, spec), caption=caption))
        cap = _capacity_of(capacity, label)
        if cap is not None:
            parts.append(tables.latex(*capacity_rows(cap, spec),
                                      caption=f"{where}: {capacity_caption(spec)}"))
    return "\n".join(parts)


def claims_markdown(verdicts: pd.DataFrame, spec: ReportSpec) -> str:
    """The verdict table of a task's claims, with how it is read."""
    return ("### Claims\n\n"
            "Each claim compares two models' cells of the tables above (their chosen runs): "
            "Δ = mean(better) − mean(worse) with its 95% t-interval, paired over the seeds both "
            "share (effect d: Cohen's d_z), Welch's otherwise (Cohen's d); P(better wins): the "
            "share of seed pairs the better model wins. **supported**: the interval lies wholly "
            "on the claimed side of 0; **contradicted**: wholly on the other; "
            "**inconclusive**: it holds 0. Each verdict is at 95% on its own; p: the same "
            "test's two-sided p-value; Holm verdict: the verdict where Holm's step-down "
            "correction over this table's comparisons rejects no difference at family-wise 5%, "
            "else inconclusive (the one to quote when several claims are read together).\n\n"
            + markdown.table(*claims_table.rows(verdicts, spec)))


def probes_markdown(probes: pd.DataFrame, spec: ReportSpec) -> str:
    """The memory probe's tables (`fwbench probe`), with how they are read."""
    from fwbench.report.probes import probe_tables

    parts = ["### Memory probe\n\nA linear read-out fitted on 70% of the probe's examples at "
             "each step, on the trained model's frozen states, scored on the rest; mean over "
             "the cell's probed runs (n); chance: always the most frequent training label.\n"]
    for caption, header, body in probe_tables(probes, spec.rows, spec.columns):
        parts.append(f"**{caption}**\n\n" + markdown.table(header, body))
    return "\n".join(parts)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def provenance_line(command: str, codes: list) -> str:
    """Which command and fwbench built the report, and which code made its runs."""
    from fwbench.version import __version__

    versions = sorted({c for c in codes if c})
    unrecorded = sum(not c for c in codes)
    parts = [f"{len(versions)} version{'' if len(versions) == 1 else 's'} "
             f"({', '.join(f'`{v}`' for v in versions)})"] if versions else []
    if unrecorded:
        parts.append(f"unrecorded for {unrecorded} run{'' if unrecorded == 1 else 's'} (made "
                     "before runs recorded a fingerprint of their code)")
    return (f"Built by `{command}` (fwbench {__version__}). Code that made the runs: "
            f"{'; '.join(parts)}.\n")


def _header(loaded, runs: pd.DataFrame, title: str, out: Path) -> list[str]:
    cpu = runs["cpu_s"].sum() / 3600 if "cpu_s" in runs else math.nan
    measured = int(runs["train_cpu_s"].notna().sum()) if "train_cpu_s" in runs else 0
    how = "training wall time x threads"
    if measured:  # runs that recorded their process's CPU time use it
        how = (f"the process's CPU time in training for {measured} of them, {how} for the "
               "others" if measured < len(runs) else "the process's CPU time in training")
    lines = [f"# {title or 'fwbench report'}\n",
             f"{len(runs)} finished runs from `{loaded.root}` "
             f"({(runs['status'] == 'diverged').sum()} diverged); CPU time of these runs: "
             f"{cpu:.2f} h ({how}). Every run's settings and final "
             f"metrics: [summary.csv]({_rel(out / 'summary.csv', out)}).\n",
             f"Cells give the mean over seeds with a {interval_name()} (Student's t on the seed "
             "values: mean ± t(0.975, n − 1) s/√n, scipy.stats.t; with 3-10 seeds its coverage "
             "is 95% for normal values and 84-88% for skewed ones, against 65-90% for a "
             "percentile bootstrap: docs/statistics.md); n is the number of seeds. "
             "Where a cell's runs differ in tuned settings, the setting with the best "
             "mean validation score is chosen and its test number reported (never chosen on "
             "test).\n"]
    if loaded.skipped:
        named = ", ".join(f"`{n}` ({why})" for n, why in loaded.skipped[:MAX_NAMED_SKIPS])
        more = len(loaded.skipped) - MAX_NAMED_SKIPS
        lines.append(f"Skipped {len(loaded.skipped)} run directories: {named}"
                     + (f" and {more} more" if more > 0 else "") + ".\n")
    return lines


def report_markdown(sections: list, loaded, runs: pd.DataFrame, out: Path,
                    title: str = "", command: str = "fwbench report") -> str:
    """The whole report.md."""
    lines = _header(loaded, runs, title, out)
    lines.insert(1, provenance_line(command, [loaded.codes.get(r) for r in runs["run_id"]]))
    for s in sections:
        lines.append(f"## {s.task}\n")
        if s.spec.title:
            lines.append(f"Layout and paper values from preset: {s.spec.title}.\n")
        if s.splits:
            lines.append(f"Runs differ in {', '.join(s.splits)}: one table per combination.\n")
        lines.append(tables_markdown(s.cells, s.spec, capacity=s.capacity))
        if s.claims is not None:
            lines.append(claims_markdown(s.claims, s.spec))
        if getattr(s, "probes", None) is not None:
            lines.append(probes_markdown(s.probes, s.spec))
        if getattr(s, "pending", None) is not None:
            lines.append(pending_markdown(s.pending, s.planned, s.runs, s.spec))
        links = " · ".join(f"[{kind.upper()}]({_rel(p, out)})" for kind, p in s.tables.items())
        lines.append(f"Tables: {links}\n")
        for caption, png in s.figures:
            svg = png.with_suffix(".svg")
            lines.append(f"**{caption}** ([SVG]({_rel(svg, out)}))\n\n"
                         f"![{caption}]({_rel(png, out)})\n")
    return "\n".join(lines)
