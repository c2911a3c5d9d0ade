"""Run records on disk: one directory per run, written atomically.

    results/runs/<run_id>/
        config.json     resolved config + provenance (versions, commit, device, seeds, times)
        metrics.csv     long format: step, split, metric, value, elapsed_s
        summary.json    final metrics and status (completed | diverged | interrupted)
        checkpoint.pt   latest training state (resume point)
        best.pt         model weights at the best validation score
        lock            present while a process is running the run (holds its pid)

metrics.csv rows are appended and fsynced before the checkpoint that covers them is written;
on resume, rows after the checkpoint's step are dropped, so nothing is lost or duplicated.
This module imports no torch: checkpoints are read and written by the learners.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from fwbench.errors import FwbenchError

METRIC_COLUMNS = ("step", "split", "metric", "value", "elapsed_s")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would make it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask can only be read by setting it


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def ensure_writable(root: Path) -> Path:
    """Create `root` if needed and prove a file can be written there."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise FwbenchError(f"results directory {root} is not writable ({e.strerror or e}); "
                           "choose another with --results") from None
    return root


class RunRecord:
    """The files of one run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.csv"
        self.summary_path = self.path / "summary.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.best_path = self.path / "best.pt"
        self.lock_path = self.path / "lock"

    @property
    def run_id(self) -> str:
        return self.path.name

    # ---- config and summary
    def read_config(self) -> dict[str, Any]:
        try:
            cfg = read_json(self.config_path)
            if not isinstance(cfg, dict) or "config" not in cfg:
                raise ValueError("no 'config' section")
            return cfg
        except (OSError, ValueError) as e:
            raise FwbenchError(f"run directory {self.path} is corrupted: config.json unreadable "
                               f"({e}); rerun with --force to start it over") from None

    def read_summary(self) -> dict[str, Any] | None:
        if not self.summary_path.exists():
            return None
        try:
            return read_json(self.summary_path)
        except (OSError, ValueError) as e:
            raise FwbenchError(f"run directory {self.path} is corrupted: summary.json unreadable "
                               f"({e}); rerun with --force to start it over") from None

    def write_config(self, cfg: dict[str, Any]) -> None:
        write_json(self.config_path, cfg)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_path, summary)

    # ---- metrics
    def start_metrics(self) -> None:
        if not self.metrics_path.exists():
            atomic_write(self.metrics_path, ",".join(METRIC_COLUMNS) + "\n")

    def append_metrics(self, rows: Iterable[tuple]) -> None:
        """Append (step, split, metric, value, elapsed_s) rows durably."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for step, split, metric, value, elapsed in rows:
            w.writerow([int(step), split, metric, repr(float(value)), f"{elapsed:.3f}"])
        if not buf.getvalue():
            return
        with open(self.metrics_path, "a") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, str]]:
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_metrics(self, last_step: int, drop_splits: Iterable[str] = ()) -> int:
        """Keep only rows with step <= last_step (those a checkpoint covers) whose split is not
        in `drop_splits`; return how many were dropped."""
        if not self.metrics_path.exists():
            self.start_metrics()
            return 0
        drop = set(drop_splits)
        try:
            rows = self.read_metrics()
            keep = [r for r in rows if int(r["step"]) <= last_step and r["split"] not in drop]
        except (KeyError, ValueError, csv.Error) as e:
            raise FwbenchError(f"run directory {self.path} is corrupted: metrics.csv unreadable "
                               f"({e}); rerun with --force to start it over") from None
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(keep)
        atomic_write(self.metrics_path, buf.getvalue())
        return len(rows) - len(keep)

    # ---- lock: one process per run
    def acquire(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid = _read_pid(self.lock_path)
                if pid is not None and _alive(pid) and pid != os.getpid():
                    raise FwbenchError(f"run {self.run_id} is being run by process {pid}; "
                                       "wait for it or stop it first") from None
                self.lock_path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return

    def release(self) -> None:
        if _read_pid(self.lock_path) == os.getpid():
            self.lock_path.unlink(missing_ok=True)


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
