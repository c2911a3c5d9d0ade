"""The scorecard: every claim judged in the reports under RESULTS/report, on one page.

Each report with `[[claims]]` writes its verdicts to `tables/<task>-claims.csv`; the scorecard
reads those files (and each report's title and command), never the runs, so it says exactly
what the reports say. Per claim: where it was judged, the difference with its 95% interval, the
p-value, the verdict at 95% on its own and the Holm verdict over its report's comparisons.
A claim judged in several reports (a preset, its protocol, a sensitivity sweep) appears once
per report. No correction spans reports: each report is its own family.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

from fwbench import markdown
from fwbench.errors import FwbenchError
from fwbench.records import atomic_write
from fwbench.report.claims import p_text
from fwbench.report.command import BUILT_BY

NAME = "scorecard"
COMMAND = "--scorecard"
COLUMNS = ("report", "claim", "where", "metric", "better", "worse", "diff", "ci_low", "ci_high",
           "n", "p", "verdict", "holm", "decimals")
VERDICTS = ("supported", "contradicted", "inconclusive", "not run")


def _title(text: str) -> str:
    """A report.md's title: its first line, a heading."""
    first = text.splitlines()[:1]
    return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""


def _where(row: dict[str, str]) -> str:
    return ", ".join(p for p in (row.get("group", ""), row.get("cell", "")) if p) or "—"


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _decimals(text: str) -> int:
    """A report's decimals for its differences (4 where its table predates the column)."""
    d = _float(text)
    return 4 if math.isnan(d) else int(d)


def collect(root: Path) -> tuple[list[dict], dict[str, str]]:
    """(one row per judged comparison, each report's title) from the reports under `root`
    (RESULTS/report), in report order; the scorecard's own directory is skipped."""
    rows, titles = [], {}
    for report_md in sorted(root.glob("*/report.md")):
        report = report_md.parent.name
        text = report_md.read_text()
        built = BUILT_BY.search(text)
        if built is not None and COMMAND in built.group(1).split():
            continue
        files = sorted((report_md.parent / "tables").glob("*-claims.csv"))
        for path in files:
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    rows.append({"report": report, "claim": row["claim"], "where": _where(row),
                                 "metric": row.get("metric", ""),
                                 "better": row["better"], "worse": row["worse"],
                                 **{k: _float(row.get(k, "")) for k in
                                    ("diff", "ci_low", "ci_high", "n", "p")},
                                 "verdict": row["verdict"],
                                 "holm": row.get("holm") or row["verdict"],
                                 "decimals": _decimals(row.get("decimals", ""))})
        if files:
            titles[report] = _title(text)
    return rows, titles


def _num(x: float, d: int, signed: bool = False) -> str:
    if math.isnan(x):
        return "—"
    return f"{x:+.{d}f}" if signed else f"{x:.{d}f}"


def _counts(rows: list[dict], key: str) -> str:
    c = Counter(r[key] for r in rows)
    return ", ".join(f"{c[v]} {v}" for v in VERDICTS if c[v])


def markdown_page(rows: list[dict], titles: dict[str, str], command: str) -> str:
    from fwbench.version import __version__

    lines = ["# Scorecard: every claim judged in the reports\n",
             f"Built by `{command}` (fwbench {__version__}) from the verdict tables of "
             f"{len(titles)} report(s); every row links the report that judged it. "
             "Δ = mean(better) − mean(worse) in the report's units with its 95% t-interval "
             "(paired over shared seeds), p its two-sided p-value; verdict: at 95% on its own; "
             "Holm verdict: over the comparisons of its own report (family-wise 5%). No "
             "correction spans reports. Every row: [scorecard.csv](scorecard.csv).\n",
             f"Comparisons: {len(rows)}; verdicts {_counts(rows, 'verdict')}; Holm verdicts "
             f"{_counts(rows, 'holm')}.\n"]
    for report, title in titles.items():
        mine = [r for r in rows if r["report"] == report]
        lines.append(f"## [{report}](../{report}/report.md)\n\n{title}.\n")
        body = [[r["claim"], r["where"], r["metric"],
                 "—" if math.isnan(r["diff"]) else
                 f"{_num(r['diff'], r['decimals'], True)} [{_num(r['ci_low'], r['decimals'])}, "
                 f"{_num(r['ci_high'], r['decimals'])}]",
                 "0" if math.isnan(r["n"]) else str(int(r["n"])), p_text(r["p"]),
                 f"**{r['verdict']}**", f"**{r['holm']}**"] for r in mine]
        lines.append(markdown.table(["claim", "where", "metric", "Δ [95% CI]", "n", "p",
                                     "verdict", "Holm verdict"], body))
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and not math.isnan(v) else
                             "" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def build_scorecard(opts, into: Path | None = None) -> Path:
    """Write the scorecard of the reports under RESULTS/report (`opts`: fwbench.report.Options
    with scorecard set) into `into`, else --out, else RESULTS/report/scorecard; its directory.
    FwbenchError where no report has claims."""
    from fwbench.report.build import _forget_stale
    from fwbench.report.command import command_line

    root = Path(opts.results) / "report"
    if not root.is_dir():
        raise FwbenchError(f"no reports in {root}: build them with `fwbench report` first")
    rows, titles = collect(root)
    if not rows:
        raise FwbenchError(f"no report under {root} judges claims (tables/*-claims.csv); "
                           "report a preset with [[claims]] first")
    target = Path(into or opts.out or root / NAME)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "scorecard.csv", csv_text(rows))
    atomic_write(target / "report.md", markdown_page(rows, titles, command_line(opts)))
    _forget_stale(target, [target / "scorecard.csv", target / "report.md"])
    return target
