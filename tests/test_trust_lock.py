"""The run lock: exclusive under simultaneous starts, never taken from another host, stale
only when its holder is provably gone (pid and start time), mode 0644, complete when seen."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from trust_harness import dead_pid, lock_race

from fwbench.errors import FwbenchError
from fwbench.records import RunRecord
from fwbench.runlock import BOOT, HOST, LOCK_TTL_S, RunLock, start_time


def test_two_processes_starting_at_once_never_both_hold_it(tmp_path):
    both, neither = lock_race(tmp_path, 40)
    assert (both, neither) == (0, 0)


def test_the_lock_is_written_whole_with_mode_0644(tmp_path):
    lock = RunLock(tmp_path / "lock", "r")
    old = os.umask(0o077)  # a strict umask must not hide the holder from other hosts' users
    try:
        lock.acquire()
    finally:
        os.umask(old)
    holder = json.loads((tmp_path / "lock").read_text())
    assert holder == {"host": HOST, "boot": BOOT, "pid": os.getpid(),
                      "start": start_time(os.getpid())}
    assert stat.S_IMODE((tmp_path / "lock").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["lock"]  # no temporary file left
    lock.release()
    assert not (tmp_path / "lock").exists()


def test_another_hosts_lock_is_never_taken_while_its_heartbeat_is_fresh(tmp_path):
    path = tmp_path / "lock"
    path.write_text(json.dumps({"host": "node7", "boot": "b", "pid": dead_pid(), "start": "1"}))
    with pytest.raises(FwbenchError, match="being run by process .* on host node7"):
        RunLock(path, "r").acquire()
    old = time.time() - LOCK_TTL_S - 1  # its node died: the heartbeat stopped long ago
    os.utime(path, (old, old))
    lock = RunLock(path, "r")
    lock.acquire()
    assert json.loads(path.read_text())["host"] == HOST
    lock.release()


def test_a_reused_pid_does_not_block_but_a_live_holder_does(tmp_path):
    path = tmp_path / "lock"
    ppid = os.getppid()  # alive: as if the dead holder's pid had been given to it
    path.write_text(json.dumps({"host": HOST, "boot": BOOT, "pid": ppid, "start": "1"}))
    lock = RunLock(path, "r")
    lock.acquire()  # its start time differs: not the holder, a stale lock
    lock.release()
    path.write_text(json.dumps({"host": HOST, "boot": BOOT, "pid": ppid,
                                "start": start_time(ppid)}))
    with pytest.raises(FwbenchError, match=f"being run by process {ppid};"):
        lock.acquire()


def test_a_lock_left_in_a_finished_run_is_removed_when_the_run_is_next_met(tmp_path):
    rec = RunRecord.at(tmp_path, "r1")
    rec.path.mkdir(parents=True)
    rec.write_config({"run_id": "r1", "config": {"lr": 1}})
    rec.write_summary({"status": "completed"})
    # killed as it finished: its lock and a temporary file remain
    rec.lock_path.write_text(json.dumps({"host": HOST, "boot": BOOT, "pid": dead_pid(),
                                         "start": "1"}))
    (rec.path / ".config.json.abc.tmp").write_text("{")
    assert rec.finished({"lr": 1}).status == "completed"
    assert sorted(p.name for p in rec.path.iterdir()) == ["checksums.json", "config.json",
                                                          "summary.json"]
