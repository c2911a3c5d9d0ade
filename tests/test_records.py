"""atomic_write: whole content or the old file, never a temporary left behind; ordinary modes.
The run directory: its path from a run id, its state, its lock, its files and its result."""

from __future__ import annotations

import json
import os
import stat

import pytest

from fwbench.errors import FwbenchError
from fwbench.records import (RunRecord, RunResult, RunState, atomic_write, is_final,
                              run_path)


def test_replaces_whole_content_with_the_mode_open_would_give(tmp_path):
    path = tmp_path / "out.csv"
    atomic_write(path, "first\n")
    atomic_write(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.csv"
    atomic_write(path, "old\n")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


# ---- the run directory: path, state, lock, files, result

def _record(tmp_path, status=None, config=None) -> RunRecord:
    rec = RunRecord.at(tmp_path, "r1")
    rec.path.mkdir(parents=True)
    if config is not None:
        rec.write_config({"run_id": "r1", "config": config})
    if status is not None:
        rec.write_summary({"status": status})
    return rec


def test_a_run_lives_under_runs_by_its_id(tmp_path):
    assert RunRecord.at(tmp_path, "abc").path == tmp_path / "runs" / "abc" == run_path(tmp_path,
                                                                                       "abc")
    assert RunRecord.at(tmp_path, "abc").run_id == "abc"


@pytest.mark.parametrize("status, state", [(None, RunState.PARTIAL),
                                           ("interrupted", RunState.PARTIAL),
                                           ("completed", RunState.DONE),
                                           ("diverged", RunState.DONE)])
def test_state_follows_the_summary(tmp_path, status, state):
    assert RunRecord.at(tmp_path, "r1").state() is RunState.NEW
    assert _record(tmp_path, status).state() is state


def test_state_of_an_unreadable_summary_is_partial(tmp_path):
    rec = _record(tmp_path)
    rec.summary_path.write_text("{broken")
    assert rec.state() is RunState.PARTIAL


def test_a_live_lock_makes_an_unfinished_run_running_but_not_a_finished_one(tmp_path):
    rec = _record(tmp_path, "interrupted")
    rec.lock_path.write_text(str(os.getppid()))  # a live process other than this one
    assert rec.state() is RunState.RUNNING
    assert rec.lock.holder()["pid"] == os.getppid()
    rec.write_summary({"status": "completed"})
    assert rec.state() is RunState.DONE
    rec.lock_path.write_text("999999999")  # a process that is gone: a stale lock
    rec.write_summary({"status": "interrupted"})
    assert rec.lock.holder() is None and rec.state() is RunState.PARTIAL


def test_the_lock_refuses_another_live_process_and_replaces_a_stale_one(tmp_path):
    rec = _record(tmp_path)
    rec.lock_path.write_text(str(os.getppid()))
    with pytest.raises(FwbenchError, match=f"run r1 is being run by process {os.getppid()}"):
        rec.acquire()
    assert rec.lock_path.read_text() == str(os.getppid())  # untouched
    rec.release()  # not ours: stays
    assert rec.lock_path.exists()
    rec.lock_path.write_text("999999999")
    with rec.locked():
        assert json.loads(rec.lock_path.read_text())["pid"] == os.getpid()
        assert rec.lock.holder()["pid"] == os.getpid()
    assert not rec.lock_path.exists()


def test_finished_reports_a_final_summary_of_the_same_config(tmp_path):
    rec = _record(tmp_path, "interrupted", config={"lr": 1})
    assert rec.finished({"lr": 1}) is None
    rec.write_summary({"status": "diverged", "loss": "nan"})
    res = rec.finished({"lr": 1})
    assert (res.run_id, res.status, res.reused, res.path) == ("r1", "diverged", True, rec.path)
    assert res.summary["loss"] == "nan" and res.finished
    assert RunRecord.at(tmp_path, "new").finished({"lr": 1}) is None


def test_finished_refuses_a_corrupted_directory(tmp_path):
    rec = _record(tmp_path, "completed", config={"lr": 1})
    with pytest.raises(FwbenchError, match="does not match the run id"):
        rec.finished({"lr": 2})
    rec.summary_path.write_text("{broken")
    with pytest.raises(FwbenchError, match="summary.json does not match its recorded sha256"):
        rec.finished({"lr": 1})
    (rec.path / "checksums.json").unlink()  # a record from before checksums: JSON decides
    with pytest.raises(FwbenchError, match="summary.json unreadable"):
        rec.finished({"lr": 1})


def test_files_copy_a_record_summary_last_and_drop_a_finished_runs_checkpoint(tmp_path,
                                                                              monkeypatch):
    src = _record(tmp_path / "a", "completed", config={"lr": 1})
    src.checkpoint_path.write_bytes(b"ckpt")
    (src.path / "stray.txt").write_text("not part of a record")
    assert set(src.read_files()) == {"config.json", "checksums.json", "summary.json",
                                     "checkpoint.pt"}
    files = src.read_files(checkpoint=False)
    assert set(files) == {"config.json", "checksums.json", "summary.json"}
    dst = _record(tmp_path / "b")
    dst.checkpoint_path.write_bytes(b"old")
    written = []
    real = atomic_write
    monkeypatch.setattr("fwbench.records.atomic_write",
                        lambda path, data: (written.append(path.name), real(path, data)))
    dst.write_files(files)
    assert written == ["config.json", "checksums.json", "summary.json"]
    assert dst.read_files() == files and not dst.lock_path.exists()
    assert dst.state() is RunState.DONE


def test_only_completed_and_diverged_are_final():
    assert [s for s in ("completed", "diverged", "interrupted", "failed", None)
            if RunResult("r", s).finished] == ["completed", "diverged"]
    assert is_final("completed") and not is_final("interrupted")
