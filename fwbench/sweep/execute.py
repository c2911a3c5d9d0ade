"""Running a sweep's runs through an executor, isolating failures, collecting outcomes.

An executor (local processes or a Dask cluster) offers `slots()`, `submit(run)`,
`wait(handles, timeout) -> [(handle, RunResult)]` and `close(cancel)`. The loop here keeps
at most `slots()` runs in flight, so "running" in the display means running, and one run's
failure is just one more result. Finished runs are recognised before submission and reported
without starting a process. A run another process holds (an overlapping sweep) is waited for,
then reported as that process left it (finished earlier) or resumed.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from fwbench.errors import EXIT_DIVERGED, FwbenchError
from fwbench.records import RunRecord, RunResult
from fwbench.runlock import RunHeld

EXIT_FAILED = 1
HELD_POLL_S = 1.0  # how often a run held by another process is checked for release


@dataclasses.dataclass
class SweepOutcome:
    results: list[RunResult]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if not r.finished]

    @property
    def exit_code(self) -> int:
        """0 if all completed; 1 if any run failed; else 3 if any diverged."""
        if self.failed:
            return EXIT_FAILED
        return EXIT_DIVERGED if self.count("diverged") else 0


def describe_error(e: BaseException) -> str:
    """One line: the message of a FwbenchError, else type, message and where it was raised."""
    if isinstance(e, FwbenchError):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}".replace("\n", " ")


def execute_one(run_id: str, cfg_dict: dict, results: str, threads: int,
                device: str = "auto", log: str = "none") -> RunResult:
    """Run one experiment in this process; any error becomes a failed RunResult. (`log`
    defaults to none: a cluster worker runs in a temporary directory, event files stay there.)"""
    t0 = time.time()
    try:
        from fwbench.config import from_dict
        from fwbench.runner import Execution, run_experiment

        cfg = from_dict(cfg_dict)
        exe = Execution(results=Path(results), device=device, threads=threads, progress=False,
                        log=log)
        while True:
            try:
                res = run_experiment(cfg, exe)
                break
            except RunHeld:  # another sweep runs it: its result is ours once it lets go
                time.sleep(HELD_POLL_S)
        return dataclasses.replace(res, wall_s=time.time() - t0)
    except Exception as e:  # isolation: a run's error must not stop the sweep
        return RunResult(run_id, "failed", error=describe_error(e), wall_s=time.time() - t0)


def finished_result(run, results: Path) -> RunResult | None:
    """The result of a run already finished in `results`, or None if it must run."""
    try:
        return RunRecord.at(results, run.run_id).finished(run.cfg.to_dict())
    except FwbenchError as e:
        return RunResult(run.run_id, "failed", error=str(e))


def run_sweep(runs: list, executor, results: Path, display) -> SweepOutcome:
    """Run every run not yet finished; return all outcomes in the order of `runs`."""
    by_id: dict[str, RunResult] = {}
    todo = deque()
    for run in runs:
        done = finished_result(run, results)
        if done is None:
            todo.append(run)
        else:
            by_id[run.run_id] = done
            display.finish(done)
    inflight: dict[Any, Any] = {}
    try:
        while todo or inflight:
            while todo and len(inflight) < executor.slots():
                run = todo.popleft()
                inflight[executor.submit(run)] = run
                display.start(run)
            display.refresh(slots=executor.slots(), queued=len(todo))
            for handle, res in executor.wait(list(inflight), timeout=0.5):
                inflight.pop(handle)
                by_id[res.run_id] = res
                display.finish(res)
    except BaseException:
        executor.close(cancel=True)
        raise
    executor.close(cancel=False)
    return SweepOutcome([by_id[r.run_id] for r in runs])
