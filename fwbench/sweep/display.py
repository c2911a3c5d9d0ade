"""The sweep's live display: done, running, failed, ETA; a line per finished run.

The live panel is shown only on a terminal (and not with --quiet); elsewhere each finished
run is one plain line, so logs of cluster jobs stay readable. Runs are named by the settings
that vary in the sweep and their seed (`λ=0.9 η=0.5 S=2 seed=1`), errors in percent as
`fwbench run` and the reports show them; run ids are in the closing table.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from fwbench import names

MAX_SHOWN = 8  # running runs listed in the panel
BAR_WIDTH = 40


def fmt_duration(seconds: float | None) -> str:
    """'1h02m', '3m05s', '12s' or '?'."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class SweepDisplay:
    """Counts finished/running/failed runs and estimates the time left."""

    def __init__(self, total: int, live: bool = True, quiet: bool = False,
                 console: Console | None = None, metric: str = "test_error",
                 runs: list | None = None, scale: float | None = None):
        self.console = console or Console(stderr=True)
        self.total, self.quiet, self.metric = total, quiet, metric
        self.scale = names.default_scale(metric) if scale is None else scale
        self.labels = run_names(runs or [])
        self.live = live and not quiet and self.console.is_terminal
        self.running: dict[str, float] = {}
        self.finished = self.failed = self.reused = 0
        self.durations: list[float] = []
        self._live: Live | None = None
        self._slots, self._queued = 1, 0

    def __enter__(self) -> "SweepDisplay":
        if self.live:
            # Live re-renders `self` (via __rich__) on its own timer, so elapsed times
            # advance even while a run occupies this process
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()

    def name(self, run_id: str) -> str:
        """A run's varying settings and seed, or its id where the sweep did not say them."""
        return self.labels.get(run_id) or run_id

    def start(self, run) -> None:
        self.running[run.run_id] = time.monotonic()

    def finish(self, res) -> None:
        """Count a result; print its line unless it was finished before this sweep."""
        started = self.running.pop(res.run_id, None)
        self.finished += 1
        self.failed += not res.finished
        if res.reused:
            self.reused += 1
            return
        took = res.wall_s
        if started is not None:
            took = time.monotonic() - started
            self.durations.append(took)
        if not self.quiet:
            self.console.print(self._line(res, took), highlight=False, soft_wrap=True)

    def _line(self, res, took: float) -> Text:
        style = {"completed": "green", "diverged": "yellow"}.get(res.status, "red")
        text = Text(f"[{self.finished}/{self.total}] ")
        text.append(f"{res.status:<9}", style=style)
        text.append(f" {self.name(res.run_id)}  {fmt_duration(took)}")
        value = res.summary.get(self.metric)
        if isinstance(value, (int, float)):
            text.append(f"  {names.metric(self.metric)} {names.shown(value, self.scale)}")
        if res.error:
            text.append(f"  {res.error}", style="red")
        return text

    def eta(self) -> float | None:
        """Seconds left: mean duration of this sweep's runs times work left, over the slots."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        now = time.monotonic()
        left = mean * (self._queued + len(self.running))
        left -= sum(min(now - t, mean) for t in self.running.values())
        return max(0.0, left / max(1, self._slots))

    def refresh(self, slots: int, queued: int) -> None:
        self._slots, self._queued = slots, queued

    def __rich__(self) -> Group:
        head = Text(f"sweep: {self.finished}/{self.total} done ({self.reused} earlier), "
                    f"{len(self.running)} running, {self._queued} queued, ")
        head.append(f"{self.failed} failed", style="red" if self.failed else "")
        head.append(f", ETA {fmt_duration(self.eta())}")
        now = time.monotonic()
        lines = [Text(f"  running {self.name(rid)} ({fmt_duration(now - t)})", style="dim")
                 for rid, t in list(self.running.items())[:MAX_SHOWN]]
        if len(self.running) > MAX_SHOWN:
            lines.append(Text(f"  ... and {len(self.running) - MAX_SHOWN} more", style="dim"))
        filled = round(BAR_WIDTH * self.finished / max(1, self.total))
        bar = Text("━" * filled, style="green")
        bar.append("━" * (BAR_WIDTH - filled), style="grey37")
        return Group(head, bar, *lines)


def varied(runs: list) -> list[str]:
    """The sweep's settings that differ between its runs, in grid order, the seed last."""
    from fwbench.sweep.grid import varying_keys

    given = {k for r in runs for k in r.point}
    keys = [k for k in varying_keys(runs) if k in given]
    return [k for k in keys if k != "seed"] + (["seed"] if "seed" in keys else [])


def run_names(runs: list) -> dict[str, str]:
    """run id -> 'λ=0.9 η=0.5 S=2 seed=1' (empty where nothing varies: one run)."""
    keys = varied(runs)
    return {r.run_id: names.assigns((k, r.cfg.flat().get(k)) for k in keys) for r in runs}


def outcome_table(results: list, display: SweepDisplay) -> Text:
    """One line per run: its name, status, metric in display units and run id, in aligned
    columns (plain text: a log is never cut to a terminal's width)."""
    rows = [("run", "status", names.metric(display.metric), "run id")]
    for r in results:
        value = r.summary.get(display.metric)
        shown = names.shown(value, display.scale) if isinstance(value, (int, float)) else "—"
        rows.append((display.name(r.run_id), r.status, shown, r.run_id))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return Text("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3]
                          for row in rows))
