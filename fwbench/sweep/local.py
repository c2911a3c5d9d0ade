"""Running a sweep's runs in worker processes on this machine, `jobs` at a time.

Workers are never forks of this process (which may have started torch's threads): they come
from a fork server that imported torch once, single-threaded ('forkserver'; 'spawn' where
there is none), so a new worker starts in milliseconds. Each run gets its thread count, which
the runner records in config.json. A run that crashes its process (a segfault, the OOM
killer) breaks the pool: the runs it held are reported failed (rerunning the sweep resumes
them) and a fresh pool serves the rest; even with one job, a crash never ends the sweep.
Workers die with their sweep: each watches the sweep's process (pid and start time) and,
once it is gone (kill -9, the OOM killer), interrupts its run, which records it and releases
its lock, then exits after a grace period whatever the run does.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.records import RunResult
from fwbench.runlock import start_time
from fwbench.sweep.execute import describe_error, execute_one

# The fork server preloads torch alone. Python starts it with `-c`, which puts the working
# directory first on its sys.path, and Python 3.11's fork server imports its preloads without
# the sweep's sys.path, so a preloaded fwbench would be whatever `fwbench` folder the working
# directory holds (another checkout's, an experiment worktree's) while the sweep itself runs
# the installed one. A worker takes the sweep's sys.path before it unpickles its task, so it
# imports fwbench as the sweep does (once per worker, a fraction of a second beside torch).
PRELOAD = ["torch"]
WATCH_S = 0.5  # how often a worker checks that its sweep lives
GRACE_S = 10.0  # how long an orphaned worker's run may take to record its interruption


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(jobs: int) -> int:
    """Threads per run so that `jobs` runs share the cores: max(1, cores // jobs)."""
    return max(1, cpu_count() // jobs)


def _worker_init(sweep_pid: int, sweep_start: str | None) -> None:
    """The sweep cancels a worker's run with SIGINT: make sure the worker listens, even when the
    sweep itself was started with SIGINT ignored (as a background job of a script is); and
    watch the sweep, whose worker's parent is the fork server, not the sweep."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=_watch, args=(sweep_pid, sweep_start), daemon=True,
                     name="fwbench-sweep-watch").start()


def _watch(sweep_pid: int, sweep_start: str | None) -> None:
    """Once the sweep is gone, interrupt this worker's run, then end the worker."""
    while start_time(sweep_pid) == sweep_start:
        threading.Event().wait(WATCH_S)
    os.kill(os.getpid(), signal.SIGINT)
    threading.Event().wait(GRACE_S)
    os._exit(1)


def _context():
    """A 'forkserver' context preloading torch and the runner, else 'spawn'."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class LocalExecutor:
    """Up to `jobs` runs at once, each in its own worker process."""

    def __init__(self, results: Path, jobs: int = 1, threads: int = 0, device: str = "auto",
                 log: str = "tensorboard"):
        if jobs < 1:
            raise FwbenchError(f"invalid --jobs {jobs}: expected an integer >= 1")
        if threads < 0:
            raise FwbenchError(f"invalid --threads {threads}: expected an integer >= 0")
        self.results, self.jobs, self.device, self.log = Path(results), jobs, device, log
        self.threads = threads or default_threads(jobs)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._ids: dict[cf.Future, str] = {}

    def describe(self) -> str:
        return f"{self.jobs} local process(es), {self.threads} thread(s) each"

    def slots(self) -> int:
        return self.jobs

    def submit(self, run) -> cf.Future:
        if self._pool is None:
            me = os.getpid()
            self._pool = cf.ProcessPoolExecutor(self.jobs, mp_context=_context(),
                                                initializer=_worker_init,
                                                initargs=(me, start_time(me)))
        fut = self._pool.submit(execute_one, run.run_id, run.cfg.to_dict(), str(self.results),
                                self.threads, self.device, self.log)
        self._ids[fut] = run.run_id
        return fut

    def wait(self, handles: list, timeout: float) -> list[tuple[cf.Future, RunResult]]:
        """Results of the runs that finished within `timeout` (a dead worker fails its runs)."""
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
