"""Running a sweep's runs on an existing Dask distributed cluster.

No shared filesystem is needed: a worker runs the experiment in a private temporary results
directory and sends the run directory's files back as bytes; this client writes them,
atomically, into its own results directory (summary.json last, so a run is never seen
finished before its records are complete). A partial local run is resumed on the cluster by
sending its files (checkpoint included) along with the task. While a run goes on, its worker
publishes a snapshot of its files in a Dask Variable after each new checkpoint: a task that
Dask reschedules because its worker died (preempted, out of memory) resumes from the latest
snapshot, and this client mirrors the snapshots into its results directory, so a sweep run
again later resumes from them too. Workers must have the same fwbench installed; start them
with one thread per run, e.g. `dask worker tcp://HOST:8786 --nworkers 8 --nthreads 1`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.records import MANIFEST, RunRecord, RunResult
from fwbench.sweep.execute import describe_error, execute_one

CONNECT_TIMEOUT_S = 20
WORKER_TIMEOUT_S = 60
SLOTS_REFRESH_S = 2  # how often the worker threads are counted
SNAPSHOT_EVERY_S = 10.0  # how often a worker looks for a new checkpoint to publish


def remote_run(run_id: str, cfg_dict: dict, files: dict[str, bytes], threads: int,
               device: str, snapshot: str | None = None, every: float = SNAPSHOT_EVERY_S
               ) -> dict:
    """On a worker: run in a temporary results dir seeded with `files` (or with the latest
    snapshot in the Variable `snapshot`, where an earlier attempt left one), publishing a
    snapshot after each new checkpoint; return the files."""
    var = _variable(snapshot)
    files = _latest(var) or files
    with tempfile.TemporaryDirectory(prefix="fwbench-") as tmp:
        record = RunRecord.at(tmp, run_id)
        record.write_files(files)
        stop = threading.Event()
        publisher = threading.Thread(target=_publish, args=(record, var, stop, every),
                                     daemon=True)
        if var is not None:
            publisher.start()
        try:
            res = execute_one(run_id, cfg_dict, tmp, threads, device)
        finally:
            stop.set()
            if publisher.is_alive():
                publisher.join()
        # a finished run needs no checkpoint; an unfinished one keeps it to resume from
        out = record.read_files(checkpoint=not res.finished)
    return {"result": dataclasses.asdict(dataclasses.replace(res, path=None)), "files": out}


def _variable(name: str | None):
    if name is None:
        return None
    from distributed import Variable

    return Variable(name)


def _latest(var) -> dict[str, bytes] | None:
    """The snapshot in `var`, if one was published; None otherwise."""
    if var is None:
        return None
    try:
        return var.get(timeout=1)
    except TimeoutError:
        return None


def snapshot(record: RunRecord) -> dict[str, bytes] | None:
    """The run's files as one consistent state (checkpoint included), or None before its first
    checkpoint. A checkpoint is described in the manifest before it is written, and the
    manifest keeps the previous entry: files read between two equal readings of the manifest
    are a state a resume accepts, as after a kill."""
    manifest = record.path / MANIFEST
    for _ in range(5):
        try:
            before = manifest.read_bytes()
        except FileNotFoundError:
            return None
        files = record.read_files()
        if files.get(MANIFEST) == before:
            return files if record.checkpoint_path.name in files else None
        time.sleep(0.05)
    return None


def _publish(record: RunRecord, var, stop: threading.Event, every: float) -> None:
    """Put a snapshot in `var` whenever the run's manifest (so its checkpoint) has changed."""
    last = None
    while not stop.wait(every):
        files = snapshot(record)
        if files is not None and files.get(MANIFEST) != last:
            var.set(files)
            last = files[MANIFEST]


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
        self._mirrored: dict = {}  # future -> manifest of the snapshot last written here
        self._mirrored_at = 0.0
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
        key = f"{run.run_id}-{uuid.uuid4().hex}"
        fut = self.client.submit(remote_run, run.run_id, run.cfg.to_dict(), files, self.threads,
                                 self.device, f"fwbench-snapshot-{key}", SNAPSHOT_EVERY_S,
                                 pure=False, key=key)
        self._ids[fut] = run.run_id
        self._mirrored[fut] = None
        return fut

    def _mirror(self, handles: list) -> None:
        """Write the newest snapshot of each running run here (at most every few seconds)."""
        now = time.monotonic()
        if now - self._mirrored_at < SNAPSHOT_EVERY_S:
            return
        self._mirrored_at = now
        from distributed import Variable

        for fut in handles:
            if fut.done() or fut not in self._ids:
                continue
            try:
                files = Variable(f"fwbench-snapshot-{fut.key}", client=self.client).get(
                    timeout=0.2)
            except TimeoutError:
                continue
            if files.get(MANIFEST) != self._mirrored.get(fut):
                RunRecord.at(self.results, self._ids[fut]).write_files(files)
                self._mirrored[fut] = files.get(MANIFEST)

    def wait(self, handles: list, timeout: float) -> list[tuple]:
        """Finished futures (polled: this client is not the process-wide default one)."""
        deadline = time.monotonic() + timeout
        self._mirror(handles)
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
        self._mirrored.pop(fut, None)
        self._forget_snapshot(fut)
        try:
            payload = fut.result()
            record = RunRecord.at(self.results, run_id)
            if payload["files"]:
                record.write_files(payload["files"])
            return dataclasses.replace(RunResult(**payload["result"]), path=record.path)
        except Exception as e:  # a worker that died (KilledWorker), a write that failed
            return RunResult(run_id, "failed", error=describe_error(e))

    def _forget_snapshot(self, fut) -> None:
        from distributed import Variable

        try:
            Variable(f"fwbench-snapshot-{fut.key}", client=self.client).delete()
        except Exception:  # the scheduler may be gone already; the snapshot goes with it
            pass

    def close(self, cancel: bool = False) -> None:
        if cancel and self._ids:
            self.client.cancel(list(self._ids))
        self.client.close()
