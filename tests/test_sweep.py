"""fwbench sweep: grid expansion, run-id stability, validation before running, skip and
resume, failure isolation, thread counts (tiny retrieval runs)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.sweep import build_runs, parse_grid, plan, run_state
from fwbench.sweep.grid import SweepSpec
from fwbench.sweep import make_executor
from fwbench.sweep.local import cpu_count

TINY = {"n_train": 256, "n_valid": 64, "n_test": 64, "max_steps": 20, "eval_every": 10,
        "embed": 8, "readout": 8, "batch_size": 32}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def sweep(*args: str):
    """`fwbench sweep` on tiny runs (hidden size 8 unless the arguments set it)."""
    hidden = [] if any("hidden" in a for a in args) else ["--set", "hidden=8"]
    return CliRunner().invoke(app, ["sweep", *TINY_ARGS, *hidden, "--quiet", *args])


def test_parse_grid():
    assert parse_grid(["model=irnn, fastweights", "--hidden=20,50"]) == {
        "model": ["irnn", "fastweights"], "hidden": ["20", "50"]}
    for bad in (["hidden"], ["hidden="], ["=1,2"], ["S=1", "S=2"]):
        with pytest.raises(FwbenchError):
            parse_grid(bad)


def test_points_are_the_product_with_seeds_outermost():
    spec = SweepSpec({"max_steps": 5}, {"model": ["a", "b"], "hidden": [1, 2, 3]}, (0, 1))
    points = spec.points()
    assert len(points) == 12 and all(p["max_steps"] == 5 for p in points)
    assert [p["seed"] for p in points] == [0] * 6 + [1] * 6
    assert [(p["model"], p["hidden"]) for p in points[:6]] == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]


def test_run_ids_are_stable_and_deduplicated():
    runs = build_runs(plan(sets=TINY, grid={"model": ["irnn", "fastweights"],
                                             "hidden": ["8", "12"]}, seeds=2))
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == 8
    # typed values, other axis order, the hidden size as a setting: the same experiments
    again = build_runs(plan(sets={**TINY, "hidden": 8}, grid={"seed": [1, 0],
                                                               "model": ["fastweights", "irnn"]}))
    assert len(again) == 4
    assert {r.run_id for r in again} == {r.run_id for r in runs if r.cfg.model_cfg.hidden == 8}
    direct = resolve("retrieval", "irnn", {**TINY, "hidden": 12, "seed": 1})
    assert direct.run_id in ids
    assert len(build_runs(plan(sets=TINY, grid={"lr": ["0.001", "1e-3"]}, seeds=1))) == 1


def test_plan_layers_preset_and_options(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('task = "retrieval"\nseeds = 2\n[settings]\nmax_steps = 7\n'
                      '[grid]\nmodel = ["irnn", "lstm"]\nhidden = [20, 50]\n'
                      '[sweeps.s]\nsettings = { model = "fastweights" }\ngrid = { S = [1, 2] }\n')
    spec = plan(preset=str(preset))
    assert spec.seeds == (0, 1) and spec.settings == {"task": "retrieval", "max_steps": 7}
    spec = plan(preset=str(preset), sets={"hidden": "8"}, grid={"max_steps": ["1", "2"]},
                seeds=1)
    assert spec.grid == {"model": ["irnn", "lstm"], "max_steps": ["1", "2"]}
    assert spec.settings["hidden"] == "8" and spec.seeds == (0,)
    spec = plan(preset=str(preset), sweep="s", model="fastweights")
    assert spec.grid == {"S": [1, 2]} and spec.settings["model"] == "fastweights"
    with pytest.raises(FwbenchError, match="conflicts with preset"):
        plan(preset=str(preset), task="other")
    with pytest.raises(FwbenchError, match="--seeds conflicts"):
        plan(grid={"seed": ["3", "4"]}, seeds=2)


@pytest.mark.parametrize("args, message", [
    (["--grid", "hiden=8,12"], "unknown setting 'hiden'"),
    (["--grid", "hidden=8,-1"], "invalid value -1 for hidden"),
    (["--grid", "model=irnn,fastweights", "--grid", "lam=0.9"], "sweep point (model=irnn"),
    (["--grid", "model=irnn,nope"], "unknown model 'nope'"),
    (["--grid", "seed=1,2", "--seeds", "2"], "--seeds conflicts"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "--jobs and --scheduler conflict"),
    (["--jobs", "0"], "invalid --jobs 0"),
    (["--scheduler", "127.0.0.1:1"], "invalid --scheduler"),
    (["--sweep", "lam_eta_S"], "give --preset too"),
    (["--preset", "table1", "--task", "mnist"], "conflicts with preset 'table1'"),
    (["--grid", "hidden"], "invalid --grid 'hidden'"),
    (["--grid", "hidden=8", "--set", "hidden=9"], "both fixed"),
])
def test_bad_input_fails_before_running(tmp_path, args, message):
    res = sweep("--results", str(tmp_path / "r"), *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()


def test_skip_finished_and_resume_interrupted(tmp_path):
    results = tmp_path / "r"
    args = ("--results", str(results), "--grid", "model=irnn,fastweights", "--threads", "1")
    res = sweep(*args)
    assert res.exit_code == 0 and "2 completed" in res.output, res.output
    runs = sorted((results / "runs").iterdir())
    done, cut = runs
    finished_before = json.loads((done / "summary.json").read_text())["finished"]
    metrics_before = (cut / "metrics.csv").read_text()
    # `cut` as if killed after its last checkpoint, before scoring its test set: no summary,
    # no test rows, a stale lock of a dead process
    (cut / "summary.json").unlink()
    lines = metrics_before.splitlines(keepends=True)
    (cut / "metrics.csv").write_text("".join(ln for ln in lines if ",test," not in ln))
    (cut / "lock").write_text("999999999")
    dry = sweep(*args, "--dry-run")
    assert "1 done, 1 partial" in dry.output and "partial" in dry.output
    res = sweep(*args)
    assert res.exit_code == 0 and "(1 finished earlier)" in res.output, res.output
    assert json.loads((done / "summary.json").read_text())["finished"] == finished_before
    assert json.loads((cut / "summary.json").read_text())["status"] == "completed"
    assert len(json.loads((cut / "config.json").read_text())["resumed"]) == 1
    after = [ln.rsplit(",", 1)[0] for ln in (cut / "metrics.csv").read_text().splitlines()]
    assert after == [ln.rsplit(",", 1)[0] for ln in metrics_before.splitlines()]  # but times
    assert run_state(results, cut.name) == "done"


def test_one_failure_never_stops_the_others(tmp_path):
    results = tmp_path / "r"
    runs = build_runs(plan(model="irnn", sets={**TINY, "hidden": 8},
                           grid={"lr": ["0.001", "1e30", "0.002"]}))
    broken = results / "runs" / runs[2].run_id  # a corrupted record: its config is not JSON
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{")
    res = sweep("--results", str(results), "--model", "irnn", "--grid", "lr=0.001,1e30,0.002",
                "--threads", "1")
    assert res.exit_code == 1, res.output  # 1: a run failed (3 would mean only divergence)
    assert "1 completed, 1 diverged, 1 failed" in res.output
    assert f"failed lr=0.002 ({runs[2].run_id}): run directory" in res.output
    assert f"diverged lr=1e+30 ({runs[1].run_id}) at step" in res.output
    assert json.loads((results / "runs" / runs[0].run_id / "summary.json").read_text())[
        "status"] == "completed"
    assert (broken / "config.json").read_text() == "{"  # left as it was
    shutil.rmtree(broken)
    res = sweep("--results", str(results), "--model", "irnn", "--grid", "lr=0.001,1e30",
                "--threads", "1")
    assert res.exit_code == 3 and "(2 finished earlier)" in res.output, res.output


def test_threads_default_to_cores_over_jobs_and_are_recorded(tmp_path):
    results = tmp_path / "r"
    cores = cpu_count()
    assert make_executor(results).threads == cores
    assert make_executor(results, jobs=2).threads == max(1, cores // 2)
    assert make_executor(results, jobs=10_000).threads == 1
    assert make_executor(results, jobs=2, threads=3).threads == 3
    res = sweep("--results", str(results), "--model", "irnn", "--threads", "1")
    assert res.exit_code == 0, res.output
    (run,) = (results / "runs").iterdir()
    assert json.loads((run / "config.json").read_text())["environment"]["threads"] == 1


@pytest.mark.parametrize("command", ["sweep", "run"])
def test_sigterm_interrupts_and_leaves_the_run_to_resume(tmp_path, command):
    """SIGTERM (kill, timeout, batch schedulers) stops a run or sweep as Ctrl-C does: the run
    records 'interrupted', the exit code is 143, and the run is left to resume. The process
    starts with SIGINT ignored, as a background job of a script does: the sweep must still be
    able to cancel its worker, or it would wait for the run to end."""
    results = tmp_path / "r"
    sets = {**TINY, "hidden": 8, "max_steps": 100_000, "eval_every": 50, "patience": 0}
    cfg = resolve("retrieval", "irnn", sets)
    args = [sys.executable, "-m", "fwbench", command, "--model", "irnn", "--quiet",
            "--threads", "1", "--results", str(results)]
    args += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] if command == "sweep" \
        else [f"--{k}={v}" for k, v in sets.items()]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    run = results / "runs" / cfg.run_id
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
    assert proc.returncode == 143, err.decode()
    assert b"terminated (SIGTERM)" in err and b"Traceback" not in err
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert not (run / "lock").exists()
    assert run_state(results, cfg.run_id) == "partial"  # the same command resumes it


def test_the_plan_shows_a_run_held_by_a_live_process_as_partial(tmp_path):
    run = tmp_path / "runs" / "held"
    run.mkdir(parents=True)
    (run / "lock").write_text(str(os.getppid()))  # alive, not this process
    assert run_state(tmp_path, "held") == "partial"  # the plan knows done, partial and new
    (run / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert run_state(tmp_path, "held") == "done"
    assert run_state(tmp_path, "other") == "new"


def test_workers_run_the_sweeps_fwbench_whatever_folder_it_starts_in(tmp_path):
    """The fork server starts in the working directory with it first on sys.path; a folder
    named fwbench there (another checkout, a worktree) must not be what the workers run."""
    decoy = tmp_path / "cwd" / "fwbench"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy fwbench was imported')\n")
    results = tmp_path / "r"
    script = os.path.join(os.path.dirname(sys.executable), "fwbench")
    args = [script, "sweep", *TINY_ARGS, "--set", "hidden=8", "--model", "irnn", "--quiet",
            "--jobs", "1", "--threads", "1", "--log", "none", "--results", str(results)]
    out = subprocess.run(args, cwd=decoy.parent, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (run,) = (results / "runs").iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
