"""Run records: round trip, reuse, resume after interruption, force, divergence, corruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.learners import supervised
from fwbench.records import METRIC_COLUMNS, RunRecord
from fwbench.runner import Execution, run_experiment


def _run(cfg, results, **kw):
    return run_experiment(cfg, Execution(results=results, device="cpu", progress=False, **kw))


def _values(record: RunRecord):
    """Metric rows without their wall-clock column."""
    return [(r["step"], r["split"], r["metric"], r["value"]) for r in record.read_metrics()]


def test_round_trip(tiny, results):
    cfg = resolve("retrieval", "fastweights", tiny)
    out = _run(cfg, results)
    rec = RunRecord(out.path)
    assert out.path == results / "runs" / cfg.run_id and out.status == "completed"
    saved = json.loads(rec.config_path.read_text())
    assert saved["config"] == cfg.to_dict() and saved["flat"]["lam"] == 0.95
    env = saved["environment"]
    for key in ("fwbench", "torch", "python", "device", "threads", "git_commit"):
        assert key in env
    assert env["device"] == "cpu" and saved["seeds"] == {"seed": 0, "data_seed": 0}
    assert saved["start_time"] <= saved["end_time"]
    summary = json.loads(rec.summary_path.read_text())
    assert summary == out.summary
    assert 0.0 <= summary["test_error"] <= 1.0
    assert summary["test_accuracy"] == pytest.approx(1 - summary["test_error"])
    assert summary["steps"] == 12 and summary["state_size"] == 8 + 64
    rows = rec.read_metrics()
    assert tuple(rows[0]) == METRIC_COLUMNS
    steps = {(r["split"], r["metric"]): [] for r in rows}
    for r in rows:
        steps[(r["split"], r["metric"])].append(int(r["step"]))
    assert steps[("valid", "error")] == [4, 8, 12]
    assert steps[("train", "loss")] == [2, 4, 6, 8, 10, 12]
    assert steps[("test", "error")] == [12]
    assert rec.best_path.exists() and rec.checkpoint_path.exists()
    assert not rec.lock_path.exists()


def test_setup_cpu_counts_only_its_own_run_after_the_first_in_a_process(tiny, tmp_path):
    # a sweep's process runs one configuration after another: the second run's set-up must not
    # count the first run's training (nor this test process's imports) as its own
    first = _run(resolve("retrieval", "fastweights", tiny), tmp_path / "a")
    ended = time.process_time()
    second = _run(resolve("retrieval", "irnn", tiny), tmp_path / "b")
    spent = time.process_time() - ended
    assert 0 < second.summary["setup_cpu_s"] <= spent + 0.01
    assert first.summary["setup_cpu_s"] > 0


def test_same_config_and_seed_give_same_numbers(tiny, tmp_path):
    cfg = resolve("retrieval", "lstm", tiny)
    a, b = _run(cfg, tmp_path / "a"), _run(cfg, tmp_path / "b")
    assert _values(RunRecord(a.path)) == _values(RunRecord(b.path))
    c = _run(resolve("retrieval", "lstm", {**tiny, "seed": 1}), tmp_path / "a")
    assert c.run_id != a.run_id
    assert _values(RunRecord(c.path)) != _values(RunRecord(a.path))


def test_finished_run_is_reported_not_redone(tiny, results):
    cfg = resolve("retrieval", "irnn", tiny)
    first = _run(cfg, results)
    mtime = (first.path / "metrics.csv").stat().st_mtime_ns
    again = _run(cfg, results)
    assert again.reused and again.summary == first.summary
    assert (first.path / "metrics.csv").stat().st_mtime_ns == mtime
    forced = _run(cfg, results, force=True)
    assert not forced.reused and forced.summary["test_error"] == first.summary["test_error"]


class _InterruptAt(supervised.TrainProgress):
    step = 6

    def update(self, step, **fields):
        if step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop_at", [6, 9])
def test_interrupted_run_resumes_without_lost_or_duplicated_rows(tiny, tmp_path, monkeypatch,
                                                                  stop_at):
    cfg = resolve("retrieval", "fastweights", tiny)
    whole = _run(cfg, tmp_path / "whole")
    monkeypatch.setattr(_InterruptAt, "step", stop_at)
    monkeypatch.setattr(supervised, "TrainProgress", _InterruptAt)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "cut")
    rec = RunRecord(tmp_path / "cut" / "runs" / cfg.run_id)
    assert json.loads(rec.summary_path.read_text())["status"] == "interrupted"
    assert not rec.lock_path.exists()
    before = torch.load(rec.checkpoint_path, weights_only=True)["state"]["cpu"]
    monkeypatch.undo()
    resumed = _run(cfg, tmp_path / "cut")
    assert resumed.status == "completed" and not resumed.reused
    assert _values(rec) == _values(RunRecord(whole.path))
    assert resumed.summary["test_loss"] == whole.summary["test_loss"]
    # CPU time adds up across the interruption: what the checkpoint held, then the rest
    assert 0 < before < resumed.summary["train_cpu_s"]
    assert len(json.loads(rec.config_path.read_text())["resumed"]) == 1


def test_killed_process_resumes(tiny, tmp_path):
    """SIGKILL mid-run (no chance to clean up), then the same command finishes the run."""
    over = {**tiny, "max_steps": 400, "eval_every": 20, "log_every": 10, "n_train": 2048}
    cfg = resolve("retrieval", "fastweights", over)
    args = [sys.executable, "-m", "fwbench", "run", "--quiet", "--device", "cpu", "--threads",
            "1", "--results", str(tmp_path / "cut")] + [f"--{k}={v}" for k, v in over.items()]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "cut" / "runs" / cfg.run_id / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    rec = RunRecord(ckpt.parent)
    assert rec.read_summary() is None  # killed before finishing
    resumed = _run(cfg, tmp_path / "cut")
    whole = _run(cfg, tmp_path / "whole")
    assert resumed.status == "completed"
    assert _values(rec) == _values(RunRecord(whole.path))


def test_divergence_is_recorded(tiny, results):
    cfg = resolve("retrieval", "irnn", {**tiny, "lr": 1e9, "clip": 0.0, "w_scale": 3.0})
    out = _run(cfg, results)
    assert out.status == "diverged" and 1 <= out.summary["diverged_step"] <= 12
    again = _run(cfg, results)
    assert again.reused and again.status == "diverged"


def test_corrupted_run_directory_is_an_error_and_left_alone(tiny, results):
    cfg = resolve("retrieval", "irnn", {**tiny, "max_steps": 4})
    out = _run(cfg, results)
    cfg_file = out.path / "config.json"
    cfg_file.write_text("{ not json")
    (out.path / "summary.json").unlink()
    before = {p.name: p.read_bytes() for p in out.path.iterdir() if p.is_file()}  # not tb/
    with pytest.raises(FwbenchError, match="corrupted"):
        _run(cfg, results)
    assert {p.name: p.read_bytes() for p in out.path.iterdir() if p.is_file()} == before
    assert _run(cfg, results, force=True).status == "completed"


def test_corrupted_checkpoint_is_an_error(tiny, results):
    cfg = resolve("retrieval", "irnn", {**tiny, "max_steps": 4})
    out = _run(cfg, results)
    (out.path / "summary.json").unlink()
    (out.path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(FwbenchError, match="checkpoint.pt does not match its recorded sha256"):
        _run(cfg, results)
    assert (out.path / "checkpoint.pt").read_bytes() == b"garbage"
    (out.path / "checksums.json").unlink()  # a run recorded before checksums: torch decides
    with pytest.raises(FwbenchError, match="checkpoint.pt unreadable"):
        _run(cfg, results)


def test_a_run_in_progress_is_not_run_twice(tiny, results):
    cfg = resolve("retrieval", "irnn", tiny)
    path = results / "runs" / cfg.run_id
    path.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (path / "lock").write_text(str(sleeper.pid))
        with pytest.raises(FwbenchError, match="being run by process"):
            _run(cfg, results)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _run(cfg, results).status == "completed"  # a stale lock is taken over


def test_unwritable_results_directory(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FwbenchError, match="not writable"):
        _run(resolve("retrieval", "irnn", tiny), blocker / "results")


def test_threads_recorded(tiny, results):
    out = _run(resolve("retrieval", "irnn", {**tiny, "max_steps": 2}), results, threads=1)
    env = json.loads((out.path / "config.json").read_text())["environment"]
    assert env["threads"] == torch.get_num_threads() == 1


def test_early_stopping_counts_evaluations_without_a_lower_error(tiny, results):
    """With a zero learning rate the error never improves after the first evaluation."""
    cfg = resolve("retrieval", "irnn", {**tiny, "lr": 0.0, "patience": 2, "max_steps": 100})
    out = _run(cfg, results)
    assert out.summary["stopped_early"] and out.summary["steps"] == 4 * 3
    assert out.summary["best_step"] == 4


def test_killed_after_final_test_rows_does_not_duplicate_them(tiny, results):
    """A process killed between the test rows and summary.json: the rerun rescoring the test
    sets replaces those rows instead of adding a second copy."""
    cfg = resolve("retrieval", "irnn", {**tiny, "eval_K": (2,)})
    out = _run(cfg, results)
    rec = RunRecord(out.path)
    before = _values(rec)
    rec.summary_path.unlink()
    again = _run(cfg, results)
    assert again.status == "completed" and not again.reused
    assert _values(rec) == before
    assert sum(1 for r in rec.read_metrics() if r["split"] == "test_K2") == 2


def test_the_commit_is_read_once_per_process_as_the_code_fingerprint(monkeypatch):
    """A sweep's worker keeps the code it imported; a commit made while it works must not
    change what its later runs record."""
    import subprocess

    from fwbench import provenance

    calls, heads = [], iter(["aaaa\n", "bbbb\n"])

    def fake_run(cmd, **kw):
        calls.append(cmd)
        out = next(heads) if "rev-parse" in cmd else ""
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(provenance.subprocess, "run", fake_run)
    provenance.git_commit.cache_clear()
    try:
        assert provenance.git_commit() == "aaaa"
        assert provenance.git_commit() == "aaaa"  # HEAD has moved to bbbb since: not read
        assert len(calls) == 2  # rev-parse and status, once
    finally:
        provenance.git_commit.cache_clear()
