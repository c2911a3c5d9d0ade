"""What every training loop shares: its settings, run record, device and checkpoints.

Weights are initialised from the learner's seed where the network is built
(`fwbench.network`); a learner writes metrics first, then the checkpoint that covers them, so a
resumed run continues from the last checkpoint with exactly the numbers of an uncut one.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from fwbench.config import RunConfig
from fwbench.learners import checkpoint
from fwbench.records import RunRecord
from fwbench.tracking import NoTracker, open_tracker


class Learner:
    """A training loop for one run: `train()` returns the run's summary."""

    Config: ClassVar[type]
    summary: ClassVar[str] = ""

    def __init__(self, cfg: RunConfig, record: RunRecord, device: torch.device,
                 progress: bool = True, log: str = "none"):
        self.cfg, self.c, self.record, self.device = cfg, cfg.learner_cfg, record, device
        self.show_progress, self.log = progress, log
        self.tracker = NoTracker()

    def train(self) -> dict:
        """Train (or resume) the run; its summary."""
        raise NotImplementedError

    def start_tracking(self, last_step: int) -> None:
        """Open the run's tracker once metrics.csv keeps only rows up to `last_step`."""
        self.tracker = open_tracker(self.log, self.record.path, last_step + 1)

    def write_metrics(self, rows: list[tuple]) -> None:
        """Append rows to metrics.csv, then mirror them to the tracker."""
        self.record.append_metrics(rows)
        self.tracker.write(rows)

    def close(self) -> None:
        """Close the tracker (the run ended, one way or another)."""
        self.tracker.close()

    def save(self, path: Path, payload) -> None:
        """Write a checkpoint (or the best weights) atomically."""
        checkpoint.save(self.record, path, payload)

    def load(self, path: Path):
        """A checkpoint's payload, on this learner's device."""
        return checkpoint.load(self.record, path, self.device)

    def resume(self) -> dict | None:
        """The run's checkpoint, or None for a fresh start."""
        path = self.record.checkpoint_path
        return self.load(path) if path.exists() else None
