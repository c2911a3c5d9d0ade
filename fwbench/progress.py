"""Training progress: a live bar on a terminal, plain lines anywhere else.

On a terminal (stderr is a tty) rich draws a bar with step, loss, validation error, speed and
ETA. Without one (a pipe, `nohup`, a batch scheduler's log) a bar would print nothing until the
run ends, so the same fields are written as whole lines, never wrapped: one when training
starts, one at an evaluation at most every `interval` seconds (every evaluation when they are
rarer), and a final line saying why the run stopped.

Speed has one definition everywhere: steps over the training loop's wall seconds (the learner's
`elapsed`, which a resumed run carries over), the number summary.json records.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fwbench.errors import DivergedError

INTERVAL_S = 30.0  # plain lines: at most one per 30 s, so a long run's log stays readable


class TrainProgress:
    """Context manager; `update(step, elapsed=, evaluated=, **fields)` shows name=value fields."""

    def __init__(self, title: str, total: int, enabled: bool = True, unit: str = "steps",
                 console: Console | None = None, interval: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.unit, self.title = total, unit, title
        self.enabled, self.interval, self.clock = enabled, interval, clock
        self.console = console or Console(stderr=True)
        self.reason = ""  # why the run stopped, set by the learner before leaving
        self._live = enabled and self.console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            console=self.console, transient=False, refresh_per_second=4,
        ) if self._live else None
        self._task = None
        self._step, self._elapsed, self._fields = 0, 0.0, {}
        self._last_line: float | None = None

    def __enter__(self) -> "TrainProgress":
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total, info="")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._progress is not None:
            self._progress.stop()
        if not self.enabled:
            return
        if isinstance(exc, DivergedError):
            self.reason = f"diverged: loss {exc.loss} at step {exc.step}"
        elif isinstance(exc, KeyboardInterrupt):
            self.reason = "interrupted; run the same command again to resume"
        elif exc is not None:
            self.reason = f"failed ({type(exc).__name__})"
        self._write(f"{self.title}: stopped, {self.reason or 'done'}. {self._line()}")

    def update(self, step: int, *, elapsed: float | None = None, evaluated: bool = False,
               **fields: float | str | None) -> None:
        """Show `step` (after `elapsed` training seconds); `evaluated` marks an evaluation."""
        if not self.enabled:
            return
        self._step, self._fields = step, fields
        if elapsed is not None:
            self._elapsed = elapsed
        if self._progress is not None:
            info = "  ".join(filter(None, (_fields(fields), self._speed_eta())))
            self._progress.update(self._task, completed=step, info=info)
            return
        now = self.clock()
        if self._last_line is None or (evaluated and now - self._last_line >= self.interval):
            self._last_line = now
            self._write(f"{self.title}: {self._line()}")

    def _line(self) -> str:
        """step, fields, speed and ETA as one plain line."""
        return "  ".join(filter(None, (f"{self.unit} {self._step:,}/{self.total:,}",
                                       _fields(self._fields), self._speed_eta())))

    def _speed_eta(self) -> str:
        if self._step <= 0 or self._elapsed <= 0:
            return ""
        speed = self._step / self._elapsed
        eta = max(0, self.total - self._step) / speed
        return f"{speed:,.1f} {self.unit}/s  elapsed {_clock(self._elapsed)}  ETA {_clock(eta)}"

    def _write(self, line: str) -> None:
        _write_line(self.console, line)


@contextlib.contextmanager
def announce(what: str, enabled: bool = True, console: Console | None = None,
             clock: Callable[[], float] = time.perf_counter):
    """'WHAT ...' before a slow step and 'WHAT: done in N s' after it (nothing if disabled)."""
    console = console or Console(stderr=True)
    if enabled:
        _write_line(console, f"{what} ...")
    t0 = clock()
    yield
    if enabled:
        _write_line(console, f"{what}: done in {clock() - t0:.1f} s")


def _write_line(console: Console, line: str) -> None:
    """One whole line, never wrapped, flushed at once (logs are read while a run goes on)."""
    out: TextIO = console.file or sys.stderr
    out.write(line + "\n")
    out.flush()


def _fields(fields: dict) -> str:
    return "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _fmt(v: float | str) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
