"""What a run record says about where and how it ran."""

from __future__ import annotations

import datetime as dt
import platform
import socket
import subprocess
import sys
from pathlib import Path

import fwbench


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """Commit of the fwbench source tree ("+dirty" if it has uncommitted changes), or None."""
    src = Path(fwbench.__file__).resolve().parent.parent
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


def environment(device: str, threads: int) -> dict:
    import numpy
    import torch

    info = {
        "fwbench": fwbench.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "host": socket.gethostname(), "git_commit": git_commit(), "device": device,
        "threads": threads,
    }
    if device.startswith("cuda"):
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
