"""Mirroring a run's metric rows to TensorBoard event files beside its record.

    results/runs/<run_id>/tb/events.out.tfevents.*

Every row a learner writes to metrics.csv (step, split, metric, value) becomes the scalar
`split/metric` at `step`, flushed at once, so `tensorboard --logdir results/runs` shows the
curves of a sweep while it runs. metrics.csv stays the record; event files are a view of it
(not committed). On resume, metrics.csv drops the rows after the checkpoint and the learner
writes them again; the new event file starts with a purge marker at that step, so TensorBoard's
readers drop the earlier session's scalars from there on instead of showing them twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from fwbench.errors import FwbenchError

TRACKERS = ("tensorboard", "none")
DEFAULT = "tensorboard"
TB_DIR = "tb"


def check_log(name: str) -> str:
    """`name` if it is a tracker whose writer can be imported; FwbenchError otherwise."""
    if name not in TRACKERS:
        raise FwbenchError(f"invalid --log {name!r}: choose one of: {', '.join(TRACKERS)}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard's writer needs it)
        except ImportError:
            raise FwbenchError("--log tensorboard needs the tensorboard package (pip install "
                               "tensorboard), or give --log none") from None
    return name


class NoTracker:
    """Writes nothing (`--log none`)."""

    def write(self, rows: Iterable[tuple]) -> None:
        """Ignore the rows."""

    def close(self) -> None:
        """Nothing to close."""


class TensorBoardTracker:
    """Scalars `split/metric` in event files under `log_dir`, from step `first_step` on."""

    def __init__(self, log_dir: Path, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # the purge marker: readers drop scalars at steps >= first_step written before it
        self.writer = SummaryWriter(str(log_dir), purge_step=first_step)

    def write(self, rows: Iterable[tuple]) -> None:
        """Add (step, split, metric, value, elapsed_s) rows as scalars and flush them."""
        for step, split, metric, value, _elapsed in rows:
            self.writer.add_scalar(f"{split}/{metric}", float(value), int(step))
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def open_tracker(log: str, run_dir: Path, first_step: int):
    """The tracker named `log` for the run in `run_dir`, writing rows from `first_step` on."""
    if check_log(log) == "tensorboard":
        return TensorBoardTracker(Path(run_dir) / TB_DIR, first_step)
    return NoTracker()
