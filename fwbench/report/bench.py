"""The speed part of a report: every `fwbench bench` result set under RESULTS/bench, its table
and its figures, gathered in one report.md (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.records import atomic_write


def bench_sets(results: Path) -> list[Path]:
    """Directories under RESULTS/bench holding a bench.csv, by name."""
    root = Path(results) / "bench"
    return sorted(p.parent for p in root.glob("*/bench.csv"))


def build_bench_report(results: Path, out: Path | None = None) -> tuple[Path, int]:
    """Write OUT/report.md with each bench set's table and figures; (its path, figures)."""
    from fwbench.report.benchplot import plot_bench

    sets = bench_sets(results)
    if not sets:
        raise FwbenchError(f"no bench results in {Path(results) / 'bench'} (expected "
                           "DIR/bench.csv, written by `fwbench bench`)")
    out = Path(out) if out is not None else Path(results) / "report" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    lines, figures = ["# Speed: fwbench bench", ""], 0
    for d in sets:
        pngs = [] if _is_subject_table(d / "bench.csv") else [
            p for p in plot_bench(d / "bench.csv", out / d.name) if p.suffix == ".png"]
        figures += len(pngs)
        lines += [f"## {d.name}", ""]
        table = d / "bench.md"
        if table.exists():
            lines += [table.read_text().rstrip(), ""]
        lines += [f"![{d.name}]({os.path.relpath(p, out)})" for p in pngs] + [""]
    atomic_write(out / "report.md", "\n".join(lines))
    return out / "report.md", figures


def _is_subject_table(csv_path: Path) -> bool:
    """A table by subject (`fwbench bench --env`: environment steps/s; `--startup`: a run's
    fixed cost): a table, no figures."""
    with open(csv_path) as f:
        return "subject" in f.readline().strip().split(",")
