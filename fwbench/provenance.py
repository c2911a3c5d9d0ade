"""What a run record says about where and how it ran."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import platform
import socket
import subprocess
import sys
from pathlib import Path

from fwbench.version import __version__

_PACKAGE = Path(__file__).resolve().parent  # the fwbench package folder


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@functools.cache
def git_commit() -> str | None:
    """Commit of the fwbench source tree ("+dirty" if it has uncommitted changes), or None.
    Read once per process, as the code fingerprint is: a sweep's worker runs the code it
    imported, so a tree that moves on during a long sweep must not change what its later runs
    record."""
    src = _PACKAGE.parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--",
                                "fwbench"], capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


# The code that computes a run's numbers: the models, the training loops and optimiser, the
# tasks with their data and environments, the networks around a model, and the resolution of
# settings (defaults live there). Left out: how runs are stored, scheduled, displayed and
# reported (records, sweep, report, commands, progress, tracking), which never changes a number.
CODE_DIRS = ("models", "learners", "tasks", "data", "envs")
CODE_FILES = ("agent.py", "classifier.py", "network.py", "config.py", "settings.py")
CODE_SUFFIXES = (".py", ".c")  # the C kernel of the fused fast-weights path counts too


def code_files(root: Path | None = None) -> list[Path]:
    """The source files the code fingerprint covers, in a fixed order."""
    root = Path(root) if root is not None else _PACKAGE
    found = [root / f for f in CODE_FILES if (root / f).is_file()]
    for d in CODE_DIRS:
        found += [p for p in (root / d).rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def files_digest(paths: list[Path], root: Path) -> str:
    """The sha256 hex digest over the names (relative to `root`) and contents of `paths`."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(root: Path | None = None) -> str:
    """A short hash over the names and contents of `code_files(root)` (fwbench's own)."""
    root = Path(root) if root is not None else _PACKAGE
    return files_digest(code_files(root), root)[:16]


@functools.cache
def code_fingerprint() -> str:
    """The fingerprint of the code this process runs (computed once)."""
    return fingerprint()


def environment(device: str, threads: int) -> dict:
    import numpy
    import torch

    info = {
        "fwbench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "host": socket.gethostname(), "git_commit": git_commit(), "device": device,
        "threads": threads, "code": code_fingerprint(),
    }
    if device.startswith("cuda"):
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
