"""What every training loop shares: its settings, run record, device and checkpoints.

Weights are initialised from the learner's seed where the network is built
(`fwbench.network`); a learner writes metrics first, then the checkpoint that covers them, so a
resumed run continues from the last checkpoint with exactly the numbers of an uncut one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import torch

from fwbench.config import RunConfig
from fwbench.learners import checkpoint
from fwbench.records import RunRecord
from fwbench.tracking import NoTracker, open_tracker


# The process's CPU time when its previous run ended (0.0: none has, so the count starts with the
# process). A run's set-up is the CPU time from this mark to its first update: the imports too
# in a process's first run, only its own data and model in the later runs of a sweep's process.
_previous_run_end = 0.0


def setup_cpu(now: float) -> float:
    """CPU seconds this run's process spent on it before its first update (`now`)."""
    return now - _previous_run_end


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
        """Close the tracker (the run ended, one way or another); the next run's set-up starts."""
        global _previous_run_end
        self.tracker.close()
        _previous_run_end = time.process_time()

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
