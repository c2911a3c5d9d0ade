"""Running a sweep's runs on this machine: one after another here, or in parallel processes.

With one job the runs execute in this process (no start-up cost; an exception still fails
only its run). With more, each run goes to a worker process started with 'spawn' (no state
inherited from the parent, no fork after torch has started threads). Either way the runner
gets the run's thread count and records it in config.json. If a worker dies (killed, out of memory), the pool breaks:
the runs it held are reported failed (rerunning the sweep resumes them) and a fresh pool
serves the rest.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.sweep.execute import RunResult, describe_error, execute_one


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(jobs: int) -> int:
    """Threads per run so that `jobs` runs share the cores: max(1, cores // jobs)."""
    return max(1, cpu_count() // jobs)


class InlineExecutor:
    """One run at a time, in this process; a run's handle is its id."""

    def __init__(self, results: Path, threads: int = 0, device: str = "auto"):
        self.results, self.device = Path(results), device
        self.threads = threads or default_threads(1)
        self._queue: list = []

    def describe(self) -> str:
        return f"this process, {self.threads} thread(s)"

    def slots(self) -> int:
        return 1

    def submit(self, run) -> str:
        self._queue.append(run)  # runs in wait(), after the display has shown it started
        return run.run_id

    def wait(self, handles: list, timeout: float) -> list[tuple[str, RunResult]]:
        run = self._queue.pop(0)
        return [(run.run_id, execute_one(run.run_id, run.cfg.to_dict(), str(self.results),
                                         self.threads, self.device))]

    def close(self, cancel: bool = False) -> None:
        self._queue.clear()


class LocalExecutor:
    """Up to `jobs` runs at once, each in its own worker process."""

    def __init__(self, results: Path, jobs: int = 1, threads: int = 0, device: str = "auto"):
        if jobs < 1:
            raise FwbenchError(f"invalid --jobs {jobs}: expected an integer >= 1")
        if threads < 0:
            raise FwbenchError(f"invalid --threads {threads}: expected an integer >= 0")
        self.results, self.jobs, self.device = Path(results), jobs, device
        self.threads = threads or default_threads(jobs)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._ids: dict[cf.Future, str] = {}

    def describe(self) -> str:
        return f"{self.jobs} local process(es), {self.threads} thread(s) each"

    def slots(self) -> int:
        return self.jobs

    def submit(self, run) -> cf.Future:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(self.jobs, mp_context=ctx)
        fut = self._pool.submit(execute_one, run.run_id, run.cfg.to_dict(), str(self.results),
                                self.threads, self.device)
        self._ids[fut] = run.run_id
        return fut

    def wait(self, handles: list, timeout: float) -> list[tuple[cf.Future, RunResult]]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out, broken = [], False
        for fut in done:
            run_id = self._ids.pop(fut)
            try:
                res = fut.result()
            except BrokenProcessPool:
                broken = True
                res = RunResult(run_id, "failed", error="its worker process died (killed or out "
                                "of memory); run the sweep again to resume it")
            except Exception as e:  # e.g. a result that could not be sent back
                res = RunResult(run_id, "failed", error=describe_error(e))
            out.append((fut, res))
        if broken:
            self.close(cancel=True)
        return out

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; with `cancel`, interrupt running runs (they record it)."""
        if self._pool is None:
            return
        if cancel:  # SIGINT lets each run write its 'interrupted' summary before exiting
            for proc in list((self._pool._processes or {}).values()):
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGINT)
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._pool = None
