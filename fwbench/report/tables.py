"""Rendering cells as tables: the paper's layout (rows x columns, with the paper's number, ours
and the difference side by side) and a per-cell detail table, in Markdown, CSV and LaTeX.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fwbench import names
from fwbench.report.cells import ordered
from fwbench.report.spec import ReportSpec
from fwbench.report.stats import interval_name

CSV_COLUMNS = ("group", "row", "column", "n", "missing", "diverged", "mean", "low", "high",
               "paper", "diff", "chosen", "steps_to_threshold", "reached", "tail_mean", "tail_low", "tail_high",
               "area_mean", "area_low", "area_high", "held", "cpu_s", "cell_cpu_h")


def fmt(x: Any, decimals: int) -> str:
    """A number for a table: fixed decimals, '—' for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float):
        return f"{x:.{decimals}f}"
    return str(x)


def decimals(spec: ReportSpec) -> int:
    return 2 if spec.scale >= 10 else 4


def ours(cell: pd.Series, d: int) -> str:
    """'mean [low, high]' (just the mean with a single seed); diverged runs are said."""
    lost = int(cell.get("diverged", 0) or 0)
    if lost and cell["n"] == 0:
        return f"diverged ({lost}/{lost})"
    note = f" ({lost} of {lost + cell['n']} diverged)" if lost else ""
    return with_ci(cell["mean"], cell["low"], cell["high"], d) + note


def with_ci(mean: float, low: float, high: float, d: int) -> str:
    """'mean [low, high]', or the mean alone where there is no interval (one seed)."""
    if math.isnan(low):
        return fmt(mean, d)
    return f"{fmt(mean, d)} [{fmt(low, d)}, {fmt(high, d)}]"


def signed(x: float, d: int) -> str:
    return "—" if math.isnan(x) else f"{x:+.{d}f}"


def _grid(cells: pd.DataFrame) -> tuple[list, list]:
    """Rows in the cells' order; columns in increasing order, also where rows have different
    columns (cells come row by row)."""
    return list(dict.fromkeys(cells["row"])), ordered(cells["column"], [])


def _cell(cells: pd.DataFrame, r: Any, c: Any) -> pd.Series | None:
    hit = cells[(cells["row"] == r) & (cells["column"] == c)]
    return hit.iloc[0] if len(hit) else None


def layout_rows(cells: pd.DataFrame, spec: ReportSpec) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the paper-layout table of one group (strings)."""
    d = decimals(spec)
    rows, cols = _grid(cells)
    with_paper = cells["paper"].notna().any()
    header = [spec.rows]
    for c in cols:
        name = f"{spec.columns}={c}"
        header += [f"{name} paper", f"{name} ours", f"{name} Δ"] if with_paper else [name]
    body = []
    for r in rows:
        line = [str(r)]
        for c in cols:
            cell = _cell(cells, r, c)
            if cell is None:
                line += ["—"] * (3 if with_paper else 1)
            elif with_paper:
                line += [fmt(cell["paper"], d), ours(cell, d), signed(cell["diff"], d)]
            else:
                line.append(ours(cell, d))
        body.append(line)
    return header, body


def detail_rows(cells: pd.DataFrame, spec: ReportSpec) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-cell detail table of one group (strings)."""
    d = decimals(spec)
    header = [spec.rows, spec.columns, "n", "mean", interval_name(), "paper", "Δ"]
    extra = [("chosen on validation", "chosen", None) if cells["chosen"].astype(bool).any()
             else None,
             ("missing", "missing", None) if cells["missing"].sum() else None,
             (f"{spec.x_label} to {spec.threshold:g}", "steps_to_threshold", 0)
             if "steps_to_threshold" in cells else None,
             ("reached", "reached", None) if "reached" in cells else None,
             (f"mean of last {spec.tail} {spec.curves[0]}", "tail", d)
             if "tail_mean" in cells else None,
             (f"mean {spec.curves[0]} over the run", "area", d) if "area_mean" in cells else None,
             ("share held after reaching", "held", 2) if "held" in cells else None,
             ("CPU s/run", "cpu_s", 1),
             # with summary keys side by side every column holds the same runs: a per-cell sum
             # would count each run once per column
             None if spec.metrics else ("cell CPU h", "cell_cpu_h", 3)]
    extra = [e for e in extra if e is not None]
    header += [e[0] for e in extra]
    body = []
    for _, cell in cells.iterrows():
        ci = "—" if math.isnan(cell["low"]) else \
            f"[{fmt(cell['low'], d)}, {fmt(cell['high'], d)}]"
        line = [str(cell["row"]), str(cell["column"]), str(cell["n"]), fmt(cell["mean"], d), ci,
                fmt(cell["paper"], d), signed(cell["diff"], d)]
        line += [with_ci(cell[f"{key}_mean"], cell[f"{key}_low"], cell[f"{key}_high"], dd)
                 if key in ("tail", "area") else fmt(cell[key], dd) if dd is not None
                 else str(cell[key]) for _, key, dd in extra]
        body.append(line)
    return header, body


def grid_rows(cell: pd.Series, spec: ReportSpec) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one cell's every-grid-point table: the tuned settings, the metric
    (mean [interval] over seeds), n and the mean selection score, the chosen one marked."""
    d = decimals(spec)
    points = cell["grid"]
    keys = list(points[0]["settings"])
    header = [names.setting(k) for k in keys] + [
        f"{names.metric(spec.metric)}{names.unit(spec.scale)}", "n",
        f"{names.metric(points[0]['select_key'])} (mean)", "chosen on validation"]
    body = [[names.value(p["settings"][k]) for k in keys]
            + [with_ci(p["mean"], p["low"], p["high"], d), str(p["n"]), fmt(p["select"], d),
               "✓" if p["chosen"] else ""] for p in points]
    return header, body


def csv_table(cells: pd.DataFrame, spec: ReportSpec) -> str:
    """All cells, raw numbers in display units, with run ids; column names from the layout."""
    df = cells.reindex(columns=[c for c in CSV_COLUMNS if c in cells] + ["runs"]).copy()
    df["runs"] = df["runs"].map(lambda ids: ";".join(ids))
    df = df.rename(columns={"row": spec.rows, "column": spec.columns, "low": "ci_low",
                            "high": "ci_high"})
    return df.to_csv(index=False, float_format="%.6g")


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "—": "--"}


def tex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def latex(header: list[str], body: list[list[str]], caption: str = "") -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [r"\begin{table}[ht]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_escape(s) for s in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
