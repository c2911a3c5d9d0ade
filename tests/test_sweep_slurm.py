"""fwbench sweep --slurm: the array job run through submitit's local executor (the same
submission, as processes on this machine) gives the runs of a local sweep; a preempted task is
requeued and resumes; the sbatch script asks for what the options say; submission errors are
one line, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from test_sweep_cluster import GRID, TINY, measurements

RUN_TIMEOUT_S = 120


@pytest.fixture
def local_cluster(monkeypatch):
    """submitit's LocalExecutor in place of sbatch: each array task a process here."""
    monkeypatch.setattr("fwbench.sweep.slurm.CLUSTER", "local")


def sweep(*args: str, tiny: list[str] = TINY):
    return CliRunner().invoke(app, ["sweep", *tiny, *args])


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_slurm_array_matches_local_sweep(tmp_path, local_cluster):
    local, array = tmp_path / "local", tmp_path / "array"
    res = sweep(*GRID, "--results", str(local), "--jobs", "2")
    assert res.exit_code == 0 and "4 completed" in res.output, res.output
    res = sweep(*GRID, "--results", str(array), "--slurm", "--cpus-per-task", "1")
    assert res.exit_code == 0 and "4 completed" in res.output, res.output
    assert "SLURM array job" in res.output and "4 task(s)" in res.output, res.output
    ids = sorted(p.name for p in (local / "runs").iterdir())
    assert ids == sorted(p.name for p in (array / "runs").iterdir()) and len(ids) == 4
    for rid in ids:
        rows, summary = measurements(array / "runs" / rid)
        assert len(rows) > 8 and summary["status"] == "completed"
        assert (rows, summary) == measurements(local / "runs" / rid)  # identical values
        env = json.loads((array / "runs" / rid / "config.json").read_text())["environment"]
        assert env["threads"] == 1  # --cpus-per-task
    assert len(list((array / "slurm").glob("*/*_result.pkl"))) == 4  # one task per run

    res = sweep(*GRID, "--results", str(array), "--slurm")
    assert res.exit_code == 0 and "(4 finished earlier)" in res.output, res.output
    assert "nothing to submit" in res.output
    assert len(list((array / "slurm").glob("*/*_result.pkl"))) == 4  # nothing resubmitted


def _array_tasks() -> list[psutil.Process]:
    tasks = []
    for p in psutil.Process().children(recursive=True):
        try:  # a child may end between the listing and the look at its command line
            if "submitit.core._submit" in " ".join(p.cmdline()):
                tasks.append(p)
        except psutil.Error:
            continue
    return tasks


@pytest.mark.slow
def test_preempted_task_is_requeued_and_resumes(tmp_path, local_cluster):
    # TINY's settings but a longer budget, so that the task is preempted mid-run
    tiny = [a if a != "max_steps=20" else "max_steps=2000" for a in TINY]
    one = ["--model", "irnn", "--threads", "1", "--quiet", "--set", "patience=0"]
    res = sweep(*one, "--results", str(tmp_path / "plain"), tiny=tiny)
    assert res.exit_code == 0 and "1 completed" in res.output, res.output
    [plain] = (tmp_path / "plain" / "runs").iterdir()

    results = tmp_path / "array"
    res = sweep(*one, "--results", str(results), "--slurm", "--no-wait", tiny=tiny)
    assert res.exit_code == 0 and "not waiting" in res.output, res.output
    run = results / "runs" / plain.name
    # preempted after its first checkpoint: SLURM's signal, sent as SLURM sends it
    wait_for(lambda: (run / "checkpoint.pt").exists(), "the first checkpoint")
    [task] = _array_tasks()
    task.send_signal(signal.SIGUSR2)
    wait_for(lambda: (run / "summary.json").exists(), "the requeued run")
    wait_for(lambda: not _array_tasks(), "the array task to end")
    assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1
    assert measurements(run) == measurements(plain)
    log = next((results / "slurm").glob("*/*_log.out")).read_text()
    assert "Requeued job" in log, log

    res = sweep(*one, "--results", str(results), "--slurm", tiny=tiny)
    assert res.exit_code == 0 and "(1 finished earlier)" in res.output, res.output


def _fake_slurm(tmp_path: Path, sbatch_body: str) -> Path:
    """A bin directory with an `srun` and an `sbatch` (that copies the script it is given)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", "exit 0"), ("sbatch", sbatch_body)):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_sbatch_script_asks_for_the_options(tmp_path, monkeypatch):
    script = tmp_path / "script.sh"
    bin_dir = _fake_slurm(tmp_path, f'cp "$1" {script}\necho "Submitted batch job 4242"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    results = tmp_path / "r"
    res = sweep(*GRID, "--results", str(results), "--slurm", "--no-wait", "--partition", "cpu",
                "--time-limit", "30", "--mem-gb", "4", "--cpus-per-task", "2",
                "--array-parallelism", "3", "--sbatch", "account=proj", "--sbatch",
                "mail-type=END")
    assert res.exit_code == 0, res.output
    assert "SLURM array job 4242 on partition cpu" in " ".join(res.output.split())
    text = script.read_text()
    for flag in ("--array=0-3%3", "--partition=cpu", "--time=30", "--mem=4GB",
                 "--cpus-per-task=2", "--account=proj", "--mail-type=END", "--signal=USR2@"):
        assert f"#SBATCH {flag}" in text, text
    assert len(list((results / "slurm").glob("4242_*/*_submitted.pkl"))) == 4


@pytest.mark.parametrize("case", ["no sbatch", "sbatch refuses", "bad option", "conflict",
                                  "stray option"])
def test_submission_errors_are_one_line(tmp_path, monkeypatch, case):
    bin_dir = _fake_slurm(tmp_path, 'echo "sbatch: error: invalid partition specified: nope" '
                                    '>&2\nexit 1')
    path = {"no sbatch": str(tmp_path / "empty")}.get(case, f"{bin_dir}{os.pathsep}/usr/bin")
    monkeypatch.setenv("PATH", path)
    args, message = {
        "no sbatch": (["--slurm"], "--slurm needs SLURM's sbatch and srun on PATH"),
        "sbatch refuses": (["--slurm", "--partition", "nope"],
                           "SLURM submission failed: sbatch: error: invalid partition"),
        "bad option": (["--slurm", "--sbatch", "account"], "invalid --sbatch 'account'"),
        "conflict": (["--slurm", "--jobs", "2"], "--slurm and --jobs conflict"),
        "stray option": (["--partition", "cpu"], "--partition is an option of --slurm"),
    }[case]
    results = tmp_path / "r"
    res = sweep(*GRID, "--results", str(results), *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, \
        res.output
    assert not results.exists()  # nothing written, not even the results directory


def test_refused_submission_leaves_an_existing_results_dir_as_it_was(tmp_path, monkeypatch):
    bin_dir = _fake_slurm(tmp_path, 'echo "sbatch: error: Batch job submission failed" >&2\n'
                                    'exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin")
    results = tmp_path / "r"
    (results / "slurm" / "17").mkdir(parents=True)
    (results / "slurm" / "17" / "17_0_log.out").write_text("an earlier job's log")
    before = sorted(results.rglob("*"))
    res = sweep(*GRID, "--results", str(results), "--slurm")
    assert res.exit_code == 2 and "Batch job submission failed" in res.output, res.output
    assert sorted(results.rglob("*")) == before
