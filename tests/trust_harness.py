"""Attacks on the run records shared by the tests and tests/stress/measure_trust.py: the lock
under simultaneous starts, kill -9 of runs and sweeps at chosen moments, orphan counting."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from fwbench.runlock import BOOT, HOST, RunLock

TINY = {"n_train": 256, "n_valid": 64, "n_test": 64, "embed": 8, "readout": 8, "hidden": 8,
        "batch_size": 32, "eval_every": 10, "log_every": 5, "max_steps": 60, "patience": 0}


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _contender(root: Path, trials: int, barrier, out) -> None:
    held = []
    for t in range(trials):
        lock = RunLock(root / f"t{t}" / "lock", f"t{t}")
        barrier.wait()
        got = lock.try_acquire() is None
        barrier.wait()  # both have tried; a winner still holds it
        held.append(got)
        barrier.wait()
        if got:
            lock.release()
    out.put(held)


def lock_race(root: Path, trials: int) -> tuple[int, int]:
    """Two processes start on one lock at the same instant, `trials` times (every other
    trial over a stale lock of a dead process): (times both held it, times neither did)."""
    stale = {"host": HOST, "boot": BOOT, "pid": dead_pid(), "start": "1"}
    for t in range(trials):
        (root / f"t{t}").mkdir(parents=True)
        if t % 2:
            (root / f"t{t}" / "lock").write_text(json.dumps(stale))
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(root, trials, barrier, out)) for _ in "ab"]
    for p in procs:
        p.start()
    a, b = out.get(timeout=600), out.get(timeout=600)
    for p in procs:
        p.join()
    return sum(x and y for x, y in zip(a, b)), sum(not (x or y) for x, y in zip(a, b))


def tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment holds FWBENCH_TRUST_TAG=`tag`."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if f"FWBENCH_TRUST_TAG={tag}".encode() in (d / "environ").read_bytes():
                    if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(d.name))
            except OSError:
                continue
    return found


def command(kind: str, results: Path, sets: dict, models=("irnn",), jobs: int = 2) -> list:
    """`fwbench run` or `fwbench sweep` on `sets`."""
    base = [sys.executable, "-m", "fwbench", kind, "--quiet", "--results", str(results),
            "--threads", "1"]
    if kind == "run":
        return base + ["--model", models[0]] + [f"--{k}={v}" for k, v in sets.items()]
    return (base + ["--jobs", str(jobs)] + [a for m in models for a in ("--model", m)]
            + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")])


def kill_at(args: list, after_s: float, linger_s: float = 20.0, ready=None,
            ready_timeout_s: float = 120.0) -> tuple[int, float]:
    """Start `args`, kill -9 it `after_s` seconds later, counted from when `ready()` first
    holds (polled, at most `ready_timeout_s`; from the start without it): (processes of it
    still alive `linger_s` seconds after the kill, seconds until the last one went). A start
    slowed by a loaded machine then still reaches the state the kill is meant to find."""
    tag = uuid.uuid4().hex
    env = {**os.environ, "FWBENCH_TRUST_TAG": tag}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_ready = time.time() + ready_timeout_s
    while ready is not None and not ready() and proc.poll() is None and time.time() < t_ready:
        time.sleep(0.1)
    time.sleep(after_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    while tagged(tag) and time.time() - t0 < linger_s:
        time.sleep(0.2)
    left, gone_s = tagged(tag), time.time() - t0
    for pid in left:  # never leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    return len(left), gone_s


# what differs between two runs of one experiment: clocks, never numbers
TIMING_KEYS = ("wall_s", "train_wall_s", "train_cpu_s", "setup_cpu_s", "test_cpu_s", "finished",
               "steps_per_s", "env_steps_per_s")


def measurements(run_dir: Path) -> tuple[list, dict]:
    """A run's metric rows without wall-clock, and its summary without times."""
    rows = [line.split(",")[:4] for line in (run_dir / "metrics.csv").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in TIMING_KEYS:
        summary.pop(key, None)
    return rows, summary


def tree_digest(root: Path) -> str:
    """A digest of every path and file content under `root` (to prove nothing was touched)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()

