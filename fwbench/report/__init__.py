"""Reports from a results directory alone (no torch): summary CSV, tables with
confidence intervals in the paper's layout, convergence plots, heatmaps, report.md.

    out, sections, loaded, runs = build_report(Options(results=Path("results"), preset="table1"))
"""

from fwbench.report.build import Options, build_report

__all__ = ["Options", "build_report"]
