"""A live training display: step, loss, validation error, steps/s, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class _SpeedColumn(TextColumn):
    """Steps per second (blank until rich has a rate estimate)."""

    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):
        from rich.text import Text

        return Text(f"{task.speed:,.0f} {self.unit}/s" if task.speed else "")


class TrainProgress:
    """Context manager; `update(step, **fields)` shows the fields as name=value."""

    def __init__(self, title: str, total: int, enabled: bool = True, unit: str = "steps",
                 console: Console | None = None):
        self.total = total
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            _SpeedColumn(unit),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False,
            refresh_per_second=4,
        ) if enabled else None
        self._title = title
        self._task = None

    def __enter__(self) -> "TrainProgress":
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._title, total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, **fields: float | str) -> None:
        if self._progress is None:
            return
        info = "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)
        self._progress.update(self._task, completed=step, info=info)


def _fmt(v: float | str) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
