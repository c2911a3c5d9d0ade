"""kill -9 of a sweep: its workers follow it within seconds and leave their runs resumable;
two overlapping sweeps that reach one run both end well."""

from __future__ import annotations

import subprocess
import time

from trust_harness import TINY, command, kill_at

from fwbench.config import resolve
from fwbench.records import RunRecord, RunState

LONG = {**TINY, "max_steps": 100_000, "eval_every": 20}


def test_workers_die_with_a_killed_sweep_and_their_runs_stay_resumable(tmp_path):
    results = tmp_path / "r"
    models = ("irnn", "lstm")
    started = lambda: any((results / "runs").glob("*/checkpoint.pt"))  # noqa: E731
    left, gone_s = kill_at(command("sweep", results, LONG, models, jobs=2), after_s=2.0,
                           ready=started)
    assert left == 0 and gone_s < 15
    runs = list((results / "runs").iterdir())
    assert runs and all(RunRecord(p).state() is RunState.PARTIAL for p in runs)  # re-runnable


def test_a_second_sweep_waits_for_a_run_the_first_holds(tmp_path):
    results = tmp_path / "r"
    args = command("sweep", results, TINY, ("irnn",), jobs=1)
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = RunRecord.at(results, resolve("retrieval", "irnn", TINY).run_id)
    deadline = time.time() + 60
    while not run.lock_path.exists() and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert second.returncode == 0, second.stdout + second.stderr
    assert run.state() is RunState.DONE
