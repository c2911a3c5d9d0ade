"""fwbench sweep on a Dask cluster started on 127.0.0.1 by the test: the same results as
local processes, files written back by the client, finished runs skipped, partial resumed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from trust_harness import measurements

TINY = ["--set", "n_train=256", "--set", "n_valid=64", "--set", "n_test=64", "--set",
        "max_steps=20", "--set", "eval_every=10", "--set", "hidden=8", "--set", "embed=8",
        "--set", "readout=8", "--set", "batch_size=32"]
GRID = ["--grid", "model=irnn,fastweights", "--seeds", "2", "--threads", "1", "--quiet"]
START_TIMEOUT_S = 60


def _start(args: list[str], log: Path) -> subprocess.Popen:
    # own session: the test can end the process and everything it started, and nothing else
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=log.parent)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@dataclasses.dataclass
class Cluster:
    address: str
    worker: subprocess.Popen


def _cluster(tmp_path, nanny: bool):
    """A scheduler on 127.0.0.1 with one worker (one thread), stopped afterwards; under a
    nanny, which restarts the worker if it dies."""
    info = tmp_path / "scheduler.json"
    procs = [_start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                     "--no-dashboard", "--scheduler-file", str(info)], tmp_path / "sched.log")]
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, (tmp_path / "sched.log").read_text()
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        (tmp_path / "worker").mkdir()
        procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1",
                             "--nworkers", "1", *([] if nanny else ["--no-nanny"]),
                             "--no-dashboard", "--host", "127.0.0.1", "--local-directory",
                             str(tmp_path / "worker")], tmp_path / "worker.log"))
        yield Cluster(address, procs[1])
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture
def cluster(tmp_path):
    yield from _cluster(tmp_path, nanny=False)


@pytest.fixture
def nanny_cluster(tmp_path):
    yield from _cluster(tmp_path, nanny=True)


def cut_short(run_dir: Path) -> None:
    """Make a finished run look killed before it scored its test set."""
    (run_dir / "summary.json").unlink()
    lines = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    (run_dir / "metrics.csv").write_text("".join(ln for ln in lines if ",test," not in ln))


def sweep(*args: str):
    return CliRunner().invoke(app, ["sweep", *TINY, *GRID, *args])


@pytest.mark.slow
def test_cluster_sweep_matches_local_processes(tmp_path, cluster, monkeypatch):
    scheduler = cluster.address
    local, remote = tmp_path / "local", tmp_path / "remote"
    res = sweep("--results", str(local), "--jobs", "2")
    assert res.exit_code == 0 and "4 completed" in res.output, res.output
    res = sweep("--results", str(remote), "--scheduler", scheduler)
    assert res.exit_code == 0 and "4 completed" in res.output, res.output
    ids = sorted(p.name for p in (local / "runs").iterdir())
    assert ids == sorted(p.name for p in (remote / "runs").iterdir()) and len(ids) == 4
    for rid in ids:
        rows, summary = measurements(remote / "runs" / rid)
        assert len(rows) > 8 and summary["status"] == "completed"
        assert (rows, summary) == measurements(local / "runs" / rid)  # identical values
        # the client wrote the records; a finished run needs no checkpoint, and no lock is left
        assert sorted(p.name for p in (remote / "runs" / rid).iterdir()) == [
            "best.pt", "checksums.json", "config.json", "metrics.csv", "summary.json"]
        env = json.loads((remote / "runs" / rid / "config.json").read_text())["environment"]
        assert env["threads"] == 1

    res = sweep("--results", str(remote), "--scheduler", scheduler)
    assert res.exit_code == 0 and "(4 finished earlier)" in res.output, res.output

    # a local run cut short (after its last checkpoint, before its test rows and summary) is
    # resumed on the cluster from the files the client sends
    partial = tmp_path / "partial"
    shutil.copytree(local / "runs" / ids[0], partial / "runs" / ids[0])
    cut_short(partial / "runs" / ids[0])
    flat = json.loads((partial / "runs" / ids[0] / "config.json").read_text())["flat"]
    res = CliRunner().invoke(app, ["sweep", *TINY, "--model", flat["model"], "--set",
                                   f"seed={flat['seed']}", "--threads", "1", "--quiet",
                                   "--results", str(partial), "--scheduler", scheduler])
    assert res.exit_code == 0 and "1 to resume, 0 new" in res.output, res.output
    resumed = partial / "runs" / ids[0]
    assert len(json.loads((resumed / "config.json").read_text())["resumed"]) == 1
    assert measurements(resumed) == measurements(local / "runs" / ids[0])
    assert not (resumed / "checkpoint.pt").exists()

    # a worker that dies mid-run: the sweep ends (bounded) with the run failed, exit code 1
    monkeypatch.setattr("fwbench.sweep.cluster.WORKER_TIMEOUT_S", 1)
    threading.Timer(2.5, _stop, [cluster.worker]).start()
    long_run = [a.replace("max_steps=20", "max_steps=1000000") for a in TINY]
    res = CliRunner().invoke(app, ["sweep", *long_run, "--set",
                                   "patience=0", "--model", "irnn", "--quiet", "--results",
                                   str(tmp_path / "killed"), "--scheduler", scheduler])
    assert res.exit_code == 1 and "no Dask worker in the cluster for 1 s" in res.output, \
        res.output


def test_unreachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr("fwbench.sweep.cluster.CONNECT_TIMEOUT_S", 1)
    res = sweep("--results", str(tmp_path / "r"), "--scheduler", "tcp://127.0.0.1:9")
    assert res.exit_code == 2 and "cannot reach the Dask scheduler" in res.output, res.output
    assert not (tmp_path / "r").exists()



@pytest.mark.slow
def test_a_run_whose_worker_dies_resumes_from_its_last_snapshot(tmp_path, nanny_cluster,
                                                                 monkeypatch):
    import psutil
    from distributed import Client

    monkeypatch.setattr("fwbench.sweep.cluster.SNAPSHOT_EVERY_S", 0.5)
    # long enough (seconds, on an idle machine too) that the worker dies mid-run, after its
    # first snapshot and before the run ends
    longer = [a.replace("max_steps=20", "max_steps=3000").replace("eval_every=10",
                                                                    "eval_every=50") for a in TINY]
    one = ["sweep", *longer, "--model", "irnn", "--set", "patience=0", "--threads", "1",
           "--quiet"]
    res = CliRunner().invoke(app, [*one, "--results", str(tmp_path / "plain"), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    [plain] = (tmp_path / "plain" / "runs").iterdir()

    def kill_worker_after_first_snapshot():
        with Client(nanny_cluster.address, timeout=20, set_as_default=False) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                names = [k for k in client.run_on_scheduler(
                    lambda dask_scheduler: list(dask_scheduler.extensions["variables"]
                                                .variables))]
                if any(n.startswith("fwbench-snapshot-") for n in names):
                    break
                time.sleep(0.1)
            [pid] = client.run(os.getpid).values()
        psutil.Process(pid).kill()  # the nanny starts a new worker; Dask reruns the task

    killer = threading.Thread(target=kill_worker_after_first_snapshot)
    killer.start()
    res = CliRunner().invoke(app, [*one, "--results", str(tmp_path / "remote"), "--scheduler",
                                   nanny_cluster.address])
    killer.join()
    assert res.exit_code == 0 and "1 completed" in res.output, res.output
    run = tmp_path / "remote" / "runs" / plain.name
    assert len(json.loads((run / "config.json").read_text())["resumed"]) >= 1  # not restarted
    assert measurements(run) == measurements(plain)
