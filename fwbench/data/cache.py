"""fwbench's data cache and file checksums, shared by every data set."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fwbench.errors import FwbenchError


def cache_dir() -> Path:
    """fwbench's data cache: $FWBENCH_CACHE, else $XDG_CACHE_HOME/fwbench, else ~/.cache/fwbench."""
    if os.environ.get("FWBENCH_CACHE"):
        return Path(os.environ["FWBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fwbench"


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """FwbenchError unless the file's sha256 is `expected`."""
    actual = sha256_of(path)
    if actual != expected:
        raise FwbenchError(f"checksum mismatch for {path}: sha256 {actual}, expected {expected}; "
                           "the file is corrupted or not the published one, so it is not used")
