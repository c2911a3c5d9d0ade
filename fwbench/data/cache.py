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


def digest_path(path: Path) -> Path:
    """Where the sha256 of a cached file is kept: beside it, as NAME.sha256."""
    return Path(path).with_name(Path(path).name + ".sha256")


def write_cached(path: Path, data: bytes) -> None:
    """Write a cache file atomically, its sha256 beside it (written first: a kill between the
    two leaves a file that fails its check and is rebuilt, never one that is believed)."""
    from fwbench.records import atomic_write

    atomic_write(digest_path(path), hashlib.sha256(data).hexdigest() + "\n")
    atomic_write(path, data)


def verify_cached(path: Path, what: str) -> None:
    """FwbenchError unless a cache file matches the sha256 written beside it; a file cached
    before digests were kept gets its digest now (it is checked from then on)."""
    digest = digest_path(path)
    if not digest.exists():
        from fwbench.records import atomic_write

        atomic_write(digest, sha256_of(path) + "\n")
        return
    if sha256_of(path) != digest.read_text().strip():
        raise FwbenchError(f"{what} {path} does not match its recorded sha256 (damaged or "
                           "edited); delete it to rebuild it")
