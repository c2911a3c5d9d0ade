"""Checkpoint files shared by the learners: written atomically with their sha256, and read
back as tensors only (`weights_only`), so a results folder can never run code."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from fwbench.errors import FwbenchError
from fwbench.records import RunRecord


def save(record: RunRecord, path: Path, payload) -> None:
    """torch.save `payload` to `path` atomically, its sha256 recorded first."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    record.write_sealed(path, buf.getvalue())


def load(record: RunRecord, path: Path, device: torch.device):
    """The payload saved at `path`; FwbenchError naming the file if it is damaged, or holds
    anything but tensors and plain containers (a pickled object would run code)."""
    data = record.read_sealed(path)  # sha256 first: torch does not check its archive's CRCs
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as e:  # any unreadable checkpoint is a corrupted run directory
        kind = ("holds objects other than tensors" if "GLOBAL" in str(e)  # a pickled callable
                else f"unreadable ({type(e).__name__})")
        raise FwbenchError(f"run directory {record.path} is corrupted: {Path(path).name} "
                           f"{kind}; refused, rerun with --force to start it over") from None
