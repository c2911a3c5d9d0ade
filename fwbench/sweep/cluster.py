"""Running a sweep's runs on an existing Dask distributed cluster.

No shared filesystem is needed: a worker runs the experiment in a private temporary results
directory and sends the run directory's files back as bytes; this client writes them,
atomically, into its own results directory (summary.json last, so a run is never seen
finished before its records are complete). A partial local run is resumed on the cluster by
sending its files (checkpoint included) along with the task. Workers must have the same
fwbench installed; start them with one thread per run, e.g.
`dask worker tcp://HOST:8786 --nworkers 8 --nthreads 1`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import uuid
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.records import RunRecord, RunResult
from fwbench.sweep.execute import describe_error, execute_one

CONNECT_TIMEOUT_S = 20
WORKER_TIMEOUT_S = 60
SLOTS_REFRESH_S = 2  # how often the worker threads are counted


def remote_run(run_id: str, cfg_dict: dict, files: dict[str, bytes], threads: int,
               device: str) -> dict:
    """On a worker: run in a temporary results dir seeded with `files`; return the files."""
    with tempfile.TemporaryDirectory(prefix="fwbench-") as tmp:
        record = RunRecord.at(tmp, run_id)
        record.write_files(files)
        res = execute_one(run_id, cfg_dict, tmp, threads, device)
        # a finished run needs no checkpoint; an unfinished one keeps it to resume from
        out = record.read_files(checkpoint=not res.finished)
    return {"result": dataclasses.asdict(dataclasses.replace(res, path=None)), "files": out}


class ClusterExecutor:
    """Runs on the workers of the Dask scheduler at `address`; results come back here."""

    def __init__(self, address: str, results: Path, threads: int = 0, device: str = "auto",
                 worker_timeout: float | None = None):
        from distributed import Client

        self.address, self.results, self.device = address, Path(results), device
        worker_timeout = WORKER_TIMEOUT_S if worker_timeout is None else worker_timeout
        self.threads = threads or 1  # [C] small recurrent nets: one thread per run scales best
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise FwbenchError(f"cannot reach the Dask scheduler at {address} ({e}); start one "
                               "with `dask scheduler` and give its tcp://HOST:PORT") from None
        try:
            self.client.wait_for_workers(1, timeout=worker_timeout)
        except TimeoutError:
            self.client.close()
            raise FwbenchError(f"no Dask worker joined the scheduler at {address} within "
                               f"{worker_timeout:.0f} s; start workers with `dask worker "
                               f"{address}`") from None
        self.worker_timeout = worker_timeout
        self._ids: dict = {}
        self._slots, self._slots_at = 1, 0.0
        self._workers_gone_at: float | None = None

    def describe(self) -> str:
        return f"Dask cluster at {self.address} ({self.slots()} worker thread(s))"

    def slots(self) -> int:
        """Worker threads in the cluster (counted every few seconds: workers come and go)."""
        now = time.monotonic()
        if now - self._slots_at > SLOTS_REFRESH_S:
            threads = sum(self.client.nthreads().values())
            self._slots, self._slots_at = max(1, threads), now
            if threads:
                self._workers_gone_at = None
            elif self._workers_gone_at is None:
                self._workers_gone_at = now
        return self._slots

    def _abandoned(self) -> bool:
        """Whether the cluster has had no worker for longer than the worker timeout."""
        self.slots()
        gone = self._workers_gone_at
        return gone is not None and time.monotonic() - gone > self.worker_timeout

    def submit(self, run):
        files = RunRecord.at(self.results, run.run_id).read_files()  # a partial run resumes
        fut = self.client.submit(remote_run, run.run_id, run.cfg.to_dict(), files, self.threads,
                                 self.device, pure=False, key=f"{run.run_id}-{uuid.uuid4().hex}")
        self._ids[fut] = run.run_id
        return fut

    def wait(self, handles: list, timeout: float) -> list[tuple]:
        """Finished futures (polled: this client is not the process-wide default one)."""
        deadline = time.monotonic() + timeout
        while True:
            done = [fut for fut in handles if fut.done()]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if not done and handles and self._abandoned():  # bounded: never wait on no workers
            self.client.cancel(handles)
            error = (f"no Dask worker in the cluster for {self.worker_timeout:.0f} s (did the "
                     "workers crash? see their logs); run the sweep again to resume")
            return [(fut, RunResult(self._ids.pop(fut), "failed", error=error))
                    for fut in handles]
        return [(fut, self._collect(fut)) for fut in done]

    def _collect(self, fut) -> RunResult:
        run_id = self._ids.pop(fut)
        try:
            payload = fut.result()
            record = RunRecord.at(self.results, run_id)
            if payload["files"]:
                record.write_files(payload["files"])
            return dataclasses.replace(RunResult(**payload["result"]), path=record.path)
        except Exception as e:  # a worker that died (KilledWorker), a write that failed
            return RunResult(run_id, "failed", error=describe_error(e))

    def close(self, cancel: bool = False) -> None:
        if cancel and self._ids:
            self.client.cancel(list(self._ids))
        self.client.close()
