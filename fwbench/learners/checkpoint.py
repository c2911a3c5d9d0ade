"""Checkpoint files shared by the learners: written atomically, unreadable ones reported."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from fwbench.errors import FwbenchError
from fwbench.records import atomic_write


def save(path: Path, payload) -> None:
    """torch.save `payload` to `path` atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, buf.getvalue())


def load(path: Path, run_dir: Path, device: torch.device):
    """The payload saved at `path`; an unreadable file means a corrupted run directory."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # any unreadable checkpoint is a corrupted run directory
        raise FwbenchError(f"run directory {run_dir} is corrupted: {Path(path).name} "
                           f"unreadable ({type(e).__name__}); rerun with --force") from None
