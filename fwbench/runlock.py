"""The lock of a run directory: one process runs a run at a time.

A lock is a file created exclusively (O_EXCL) holding the pid of its process; a lock whose
process is gone is stale and taken over. This module alone knows that format and when a
holder counts as alive, so that making the lock exclusive across hosts (a pid alone is not
enough on a shared filesystem) changes this module and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

from fwbench.errors import FwbenchError


class RunLock:
    """The lock file of run `run_id` at `path`."""

    def __init__(self, path: Path, run_id: str):
        self.path, self.run_id = Path(path), run_id

    def holder(self) -> int | None:
        """The pid in the lock if that process is alive on this machine, else None."""
        pid = _read_pid(self.path)
        return pid if pid is not None and _alive(pid) else None

    def acquire(self) -> None:
        """Take the lock, replacing a stale one; FwbenchError if another live process has it."""
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid = self.holder()
                if pid is not None and pid != os.getpid():
                    raise FwbenchError(f"run {self.run_id} is being run by process {pid}; "
                                       "wait for it or stop it first") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return

    def release(self) -> None:
        if _read_pid(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
