"""The lock of a run directory: one process runs a run at a time, on one host or many.

A lock is a small JSON file naming its holder: host, boot id, pid and the process's start
time. It is written whole to a private temporary file and then hard-linked to the lock's
name, which fails if a lock exists, so a lock is never seen empty or half-written, and of
two processes starting at the same instant exactly one gets it (link is atomic on local
filesystems and on NFS, unlike flock).

A lock of this host is stale only when its holder is provably gone: no process with its pid
and start time runs (a reused pid has another start time). A lock of another host cannot be
checked from here, so its holder touches it every HEARTBEAT_S seconds while it lives; only
one untouched for LOCK_TTL_S (a preempted or crashed node) is stale. Stale locks are removed
under a host-local flock of the run directory, and another host's by renaming it aside and
checking it was the stale one, so two processes breaking one stale lock do not remove each
other's fresh lock. This module alone knows that format.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fwbench.errors import FwbenchError

MODE = 0o644
HEARTBEAT_S = 30.0  # how often a holder touches its lock
LOCK_TTL_S = 600.0  # another host's lock untouched this long is stale (its node died)


class RunHeld(FwbenchError):
    """The run is being run by another process (which may finish it)."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: pid and start time alone
        return ""


def start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "" if _pid_exists(pid) else None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ')' may hold spaces


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST, BOOT = socket.gethostname(), _boot_id()


def me() -> dict[str, Any]:
    """This process as a lock's holder."""
    return {"host": HOST, "boot": BOOT, "pid": os.getpid(), "start": start_time(os.getpid())}


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder named in a lock file, None if there is none; {} if it is unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as e:  # unreadable here, perhaps not elsewhere: never stale
        return {"host": f"unknown ({e.strerror})", "pid": None}
    with contextlib.suppress(ValueError):
        obj = json.loads(text)
        if isinstance(obj, int):  # an older lock holding just a pid, on this host
            return {"host": HOST, "boot": BOOT, "pid": obj, "start": None}
        if isinstance(obj, dict) and isinstance(obj.get("pid"), int):
            return obj
    return {}


def _age(path: Path) -> float:
    try:
        return time.time() - Path(path).stat().st_mtime
    except OSError:
        return 0.0


def is_stale(holder: dict[str, Any], path: Path) -> bool:
    """Whether the holder of the lock at `path` is gone: for this host, its process; for
    another, its heartbeat."""
    if not holder:  # unreadable: never written by this format, which links complete files
        return True
    if holder.get("host") != HOST or holder.get("boot", BOOT) != BOOT:
        return holder.get("pid") is not None and _age(path) > LOCK_TTL_S
    started = start_time(holder["pid"])
    if started is None:
        return True
    return holder.get("start") is not None and started != "" and started != holder["start"]


def describe(holder: dict[str, Any]) -> str:
    where = "" if holder.get("host") == HOST else f" on host {holder.get('host')}"
    return f"process {holder.get('pid')}{where}"


class RunLock:
    """The lock file of run `run_id` at `path`."""

    def __init__(self, path: Path, run_id: str):
        self.path, self.run_id = Path(path), run_id
        self._mine: dict[str, Any] | None = None
        self._beat: threading.Event | None = None

    def holder(self) -> dict[str, Any] | None:
        """The live (or possibly live, on another host) holder of the lock, else None."""
        holder = read_holder(self.path)
        return None if holder is None or is_stale(holder, self.path) else holder

    def try_acquire(self) -> dict[str, Any] | None:
        """Take the lock if free or stale; None when taken, else the holder that has it."""
        mine = me()
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, MODE)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(mine))
            os.chmod(tmp, MODE)  # whatever the umask: readable by other hosts' users
            while True:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    holder = read_holder(self.path)
                    if holder is not None and not self._break(holder):
                        return holder
                    continue
                self._mine = mine
                self._start_heartbeat()
                return None
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> None:
        """Take the lock; FwbenchError if another process holds it."""
        holder = self.try_acquire()
        if holder is not None:
            raise RunHeld(f"run {self.run_id} is being run by {describe(holder)}; "
                               "wait for it or stop it first")

    def _break(self, seen: dict[str, Any]) -> bool:
        """Remove the lock if it still holds the stale `seen`; whether it is gone now."""
        if not is_stale(seen, self.path):
            return False
        with _host_mutex(self.path.parent):  # one breaker at a time on this host
            if read_holder(self.path) != seen:
                return True
            if seen.get("host") == HOST:  # only this host's processes break it: we alone
                self.path.unlink(missing_ok=True)
                return True
            aside = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.broken.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.path, aside)
                if read_holder(aside) != seen:  # another host's breaker was first: put back
                    with contextlib.suppress(FileExistsError):
                        os.link(aside, self.path)
                aside.unlink()
        return True

    def _start_heartbeat(self) -> None:
        """Touch the lock every HEARTBEAT_S while held, so other hosts see this process live."""
        stop = self._beat = threading.Event()
        path = self.path

        def beat():
            while not stop.wait(HEARTBEAT_S):
                with contextlib.suppress(OSError):
                    os.utime(path)
        threading.Thread(target=beat, name="fwbench-lock-heartbeat", daemon=True).start()

    def release(self) -> None:
        if self._beat is not None:
            self._beat.set()
            self._beat = None
        if self._mine is not None and read_holder(self.path) == self._mine:
            self.path.unlink(missing_ok=True)
        self._mine = None


@contextlib.contextmanager
def _host_mutex(directory: Path):
    """An flock of `directory`: it serialises this host's processes, which is all a stale
    lock's removal needs (other hosts never remove this host's locks)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock: best effort
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
