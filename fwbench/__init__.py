"""fwbench: a benchmark suite for recurrent memory architectures and fast weights."""

from __future__ import annotations

from fwbench.version import __version__


def load_runs(path="results", metrics: bool = False):
    """Finished runs under `path` as pandas tables, without importing torch.

    Returns the summary table, one row per finished run (run_id, status, every setting, the
    numeric fields of summary.json); with `metrics=True`, the pair (summary, long metrics
    table with columns run_id, step, split, metric, value, elapsed_s). Unfinished or damaged
    run directories are left out; a results folder with no run at all is a FwbenchError.
    """
    from pathlib import Path

    from fwbench.report.load import runs_tables

    return runs_tables(Path(path), metrics)


__all__ = ["__version__", "load_runs"]
