"""Sweeps: grids of runs over settings and seeds, run here in parallel or on a Dask cluster.

    spec = plan(task="retrieval", grid={"model": ["irnn", "fastweights"]}, seeds=3)
    runs = build_runs(spec)                       # validated before anything runs
    with SweepDisplay(len(runs)) as display:
        outcome = run_sweep(runs, make_executor(results), results, display)
"""

from __future__ import annotations

from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.records import RunResult
from fwbench.sweep.display import SweepDisplay
from fwbench.sweep.execute import SweepOutcome, run_sweep
from fwbench.sweep.grid import RunSpec, SweepSpec, build_runs, parse_grid, run_state
from fwbench.sweep.plan import plan

__all__ = ["RunResult", "RunSpec", "SweepDisplay", "SweepOutcome", "SweepSpec", "build_runs",
           "check_executor_options", "make_executor", "parse_grid", "plan", "run_state",
           "run_sweep"]


def check_executor_options(jobs: int | None, scheduler: str | None) -> None:
    """FwbenchError for --jobs with --scheduler, a bad address or a bad job count."""
    if scheduler is not None:
        if jobs is not None:
            raise FwbenchError("--jobs and --scheduler conflict: --jobs runs processes here, "
                               "--scheduler on a Dask cluster; give one")
        if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://")):
            raise FwbenchError(f"invalid --scheduler {scheduler!r}: expected an address like "
                               "tcp://HOST:8786")
    if jobs is not None and jobs < 1:
        raise FwbenchError(f"invalid --jobs {jobs}: expected an integer >= 1")


def make_executor(results: Path, jobs: int | None = None, scheduler: str | None = None,
                  threads: int = 0, device: str = "auto", log: str = "tensorboard"):
    """A LocalExecutor (`jobs` processes) or, given a scheduler address, a ClusterExecutor.
    `log` is the tracker of local runs; cluster runs write none (their records come back as
    files when they end)."""
    check_executor_options(jobs, scheduler)
    if scheduler is not None:
        from fwbench.sweep.cluster import ClusterExecutor

        return ClusterExecutor(scheduler, results, threads=threads, device=device)
    from fwbench.sweep.local import LocalExecutor

    return LocalExecutor(results, jobs=jobs or 1, threads=threads, device=device, log=log)
