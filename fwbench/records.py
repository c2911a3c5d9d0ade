"""Run records on disk: the one owner of a run directory, written atomically.

    results/runs/<run_id>/
        config.json     resolved config + provenance (versions, commit, device, seeds, times)
        metrics.csv     long format: step, split, metric, value, elapsed_s
        summary.json    final metrics and status (completed | diverged | interrupted)
        checkpoint.pt   latest training state (resume point)
        best.pt         model weights at the best validation score
        checksums.json  sha256 of checkpoint.pt, best.pt and summary.json, and of the
                        metrics.csv rows each checkpoint or final summary covers
        lock            present while a process is running the run (host, pid, start time)

Everything that knows this layout lives here: a run's path from its id, its files, its state
(RunState), its lock and the one result type (RunResult); the runner, the sweep executors and
the report ask this module rather than composing paths or reading statuses themselves.

metrics.csv rows are appended and fsynced before the checkpoint that covers them is written;
on resume, rows after the checkpoint's step are dropped, so nothing is lost or duplicated;
rows a checkpoint covers that went missing are detected (fwbench.checksums), not lost.
Temporary files of a killed process are removed when the run is next taken.
This module imports no torch (the report reads runs through it): checkpoints are read and
written by the learners.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import enum
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from fwbench.checksums import MANIFEST, Checksums, metrics_digest
from fwbench.errors import FwbenchError
from fwbench.runlock import RunLock

METRIC_COLUMNS = ("step", "split", "metric", "value", "elapsed_s")
RUNS_DIR = "runs"
FINAL_STATUSES = ("completed", "diverged")  # a summary with one of these ends the run
# the files that make up a run, in the order they are written when copied: summary last, so
# a run is never seen finished before the rest of its record is in place
RECORD_FILES = ("config.json", "metrics.csv", MANIFEST, "best.pt", "checkpoint.pt",
                "summary.json")
LOCK_TMP_GRACE_S = 60  # a lock's temporary file older than this belongs to a killed process


def runs_root(results: Path) -> Path:
    """The directory holding every run directory of the results root `results`."""
    return Path(results) / RUNS_DIR


def run_path(results: Path, run_id: str) -> Path:
    """The directory of run `run_id` under the results root `results`."""
    return runs_root(results) / run_id


def is_final(status: Any) -> bool:
    """Whether a summary status ends a run (completed or diverged)."""
    return status in FINAL_STATUSES


class RunState(str, enum.Enum):
    """Where a run directory stands; the value is the name shown to users."""

    NEW = "new"  # no directory
    PARTIAL = "partial"  # started, not finished, no live process: resumable
    RUNNING = "running"  # not finished, a live process holds its lock
    DONE = "done"  # completed or diverged (by this code, or by code that recorded no fingerprint)
    STALE = "stale"  # completed or diverged by code whose fingerprint differs from this one's


def recorded_code(config: Any) -> str | None:
    """The code fingerprint a config.json records (None: unrecorded, an older run); a run
    resumed by other code gives its fingerprints joined by '+', which no code matches."""
    if not isinstance(config, dict):
        return None
    envs = [config.get("environment"), *(config.get("resumed") or [])]
    codes = list(dict.fromkeys(e.get("code") for e in envs if isinstance(e, dict)))
    if not codes or codes[0] is None:
        return None
    return "+".join(str(c) for c in codes)


@dataclasses.dataclass
class RunResult:
    """What became of one run: its summary when it finished, else why not."""

    run_id: str
    status: str  # completed | diverged | failed | interrupted
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""
    reused: bool = False  # finished before this invocation, reported without running
    wall_s: float = 0.0
    path: Path | None = None  # the run directory, where known on this machine

    @property
    def finished(self) -> bool:
        return is_final(self.status)


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
    """One run directory: its files, its state, its lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.csv"
        self.summary_path = self.path / "summary.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.best_path = self.path / "best.pt"
        self.lock_path = self.path / "lock"
        self.lock = RunLock(self.lock_path, self.run_id)
        self.checksums = Checksums(self.path, atomic_write)

    @classmethod
    def at(cls, results: Path, run_id: str) -> RunRecord:
        """The record of run `run_id` under the results root `results`."""
        return cls(run_path(results, run_id))

    @property
    def run_id(self) -> str:
        return self.path.name

    # ---- state
    def state(self) -> RunState:
        """new, partial, running or done; never raises (an unreadable summary is partial)."""
        if not self.path.exists():
            return RunState.NEW
        if is_final(self._status()):
            return RunState.STALE if self.stale() else RunState.DONE
        if self.lock.holder() is not None:
            return RunState.RUNNING
        return RunState.PARTIAL

    def stale(self) -> bool:
        """Whether the code that made this run differs from the code running now (a run that
        recorded no fingerprint is unrecorded, not stale)."""
        from fwbench.provenance import code_fingerprint

        try:
            code = recorded_code(read_json(self.config_path))
        except (OSError, ValueError):
            return False
        return code is not None and code != code_fingerprint()

    def _status(self) -> Any:
        try:
            summary = read_json(self.summary_path)
        except (OSError, ValueError):
            return None
        return summary.get("status") if isinstance(summary, dict) else None

    def finished(self, config: dict[str, Any]) -> RunResult | None:
        """This run's result if it finished with `config`, else None; FwbenchError if the
        directory is corrupted (unreadable files, or a config that does not match its id)."""
        if not self.path.exists() or not self.config_path.exists():
            return None
        if self.read_config()["config"] != config:
            raise FwbenchError(f"run directory {self.path} is corrupted: its config.json does "
                               "not match the run id; delete it or use `fwbench run --force` to start over")
        summary = self.read_summary()
        if summary and is_final(summary.get("status")):
            self._tidy_finished()
            return RunResult(self.run_id, summary["status"], summary, reused=True,
                             path=self.path)
        return None

    # ---- config and summary
    def read_config(self) -> dict[str, Any]:
        try:
            cfg = read_json(self.config_path)
            if not isinstance(cfg, dict) or "config" not in cfg:
                raise ValueError("no 'config' section")
            return cfg
        except (OSError, ValueError) as e:
            raise FwbenchError(f"run directory {self.path} is corrupted: config.json unreadable "
                               f"({e}); delete it or use `fwbench run --force` to start over") from None

    def _tidy_finished(self) -> None:
        """Take a finished run's lock a moment if a killed process left it or temporary files
        (the run is done, so this is only tidying: any failure is left alone)."""
        if self.lock_path.exists() or self._temporaries():
            with contextlib.suppress(OSError, FwbenchError), self.locked():
                pass

    def read_summary(self) -> dict[str, Any] | None:
        """The summary, checked against its recorded sha256; None if there is none."""
        if not self.summary_path.exists():
            return None
        try:
            data = self.summary_path.read_bytes()
            self.checksums.check(self.summary_path.name, data)
            return json.loads(data)
        except (OSError, ValueError) as e:
            raise FwbenchError(f"run directory {self.path} is corrupted: summary.json unreadable "
                               f"({e}); delete it or use `fwbench run --force` to start over") from None

    def write_config(self, cfg: dict[str, Any]) -> None:
        write_json(self.config_path, cfg)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write the summary; a final one records the metrics.csv rows it closes."""
        data = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
        covers = metrics_digest(self.metrics_path) if is_final(summary.get("status")) else {}
        self.checksums.seal(self.summary_path.name, data, **covers)
        atomic_write(self.summary_path, data)

    # ---- checkpoints (bytes: torch lives in the learners)
    def write_sealed(self, path: Path, data: bytes) -> None:
        """Write a checkpoint or best weights after recording their sha256; a checkpoint also
        records the metrics.csv rows it covers."""
        covers = metrics_digest(self.metrics_path) if path == self.checkpoint_path else {}
        self.checksums.seal(Path(path).name, data, **covers)
        atomic_write(path, data)

    def read_sealed(self, path: Path) -> bytes:
        """A checkpoint's bytes, checked against their sha256 (a checkpoint's covered rows of
        metrics.csv too); FwbenchError naming the file if either is damaged."""
        data = Path(path).read_bytes()
        entry = self.checksums.check(Path(path).name, data)
        if Path(path) == self.checkpoint_path:
            self.checksums.check_metrics(entry, Path(path).name)
        return data

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
                               f"({e}); delete it or use `fwbench run --force` to start over") from None
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(keep)
        atomic_write(self.metrics_path, buf.getvalue())
        return len(rows) - len(keep)

    # ---- the record as files, to copy it between results directories
    def read_files(self, checkpoint: bool = True) -> dict[str, bytes]:
        """The record's files present, by name (without the checkpoint unless `checkpoint`)."""
        names = [n for n in RECORD_FILES if checkpoint or n != self.checkpoint_path.name]
        return {n: (self.path / n).read_bytes() for n in names if (self.path / n).is_file()}

    def write_files(self, files: dict[str, bytes]) -> None:
        """Write copied files under the run's lock, summary last; a summary sent without a
        checkpoint removes the one here (it no longer matches the run's state)."""
        with self.locked():
            for name in RECORD_FILES:
                if name in files:
                    atomic_write(self.path / name, files[name])
            if self.summary_path.name in files and self.checkpoint_path.name not in files:
                self.checkpoint_path.unlink(missing_ok=True)

    # ---- lock: one process per run
    def acquire(self) -> None:
        """Hold the run's lock (creating its directory), then remove what killed processes
        left; FwbenchError (RunHeld) if a live process has it."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        for tmp in self._temporaries():
            tmp.unlink(missing_ok=True)

    def _temporaries(self) -> list[Path]:
        """Temporary files no live process is writing: every `.*.tmp` but the lock's own,
        which other processes use while trying the lock (theirs go once they are old)."""
        if not self.path.is_dir():
            return []
        lock_tmp, now = f".{self.lock_path.name}.", time.time()
        out = []
        for p in self.path.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if not p.name.startswith(lock_tmp) or now - p.stat().st_mtime > LOCK_TMP_GRACE_S:
                    out.append(p)
        return out

    def release(self) -> None:
        self.lock.release()

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunRecord]:
        """Hold the run's lock for the duration of a `with` block."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()
