"""Progress without a terminal: whole periodic lines, the data-building line, why a run stopped,
and one speed shared with summary.json."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.errors import DivergedError
from fwbench.progress import TrainProgress, announce


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plain(**kw):
    buf = io.StringIO()
    clock = _Clock()
    console = Console(file=buf, width=80)  # a StringIO is no terminal
    return buf, clock, TrainProgress("t" * 90, 1000, console=console, clock=clock, **kw)


def test_plain_lines_at_evaluations_at_most_every_interval_never_wrapped():
    buf, clock, bar = _plain(interval=30.0)
    with bar:
        bar.update(0)
        for step in range(1, 101):
            clock.now = step * 1.0  # one step per second, an evaluation every 10 steps
            bar.update(step, elapsed=float(step), evaluated=step % 10 == 0, loss=0.5)
        bar.reason = "budget reached"
    lines = buf.getvalue().splitlines()
    # the start, then evaluations 30 s apart (steps 30, 60, 90), then the final line
    assert len(lines) == 5
    assert [re.search(r"steps (\d+)/", ln).group(1) for ln in lines[:4]] == ["0", "30", "60",
                                                                            "90"]
    assert all(ln.startswith("t" * 90) for ln in lines)  # longer than 80 columns, one line
    assert "loss=0.5" in lines[1] and "1.0 steps/s" in lines[1] and "ETA 0:16:10" in lines[1]
    assert "stopped, budget reached" in lines[-1] and "steps 100/1,000" in lines[-1]


def test_rare_evaluations_each_get_a_line():
    buf, clock, bar = _plain(interval=30.0)
    with bar:
        bar.update(0)
        for step in (100, 200):
            clock.now = step * 1.0
            bar.update(step, elapsed=float(step), evaluated=True)
    assert len(buf.getvalue().splitlines()) == 4


@pytest.mark.parametrize("exc, said", [(DivergedError(7, float("nan")), "diverged: loss nan at "
                                        "step 7"), (KeyboardInterrupt(), "interrupted")])
def test_the_final_line_says_why_the_run_stopped(exc, said):
    buf, _, bar = _plain()
    with pytest.raises(type(exc)):
        with bar:
            bar.update(3, elapsed=1.0)
            raise exc
    assert said in buf.getvalue().splitlines()[-1]


def test_disabled_progress_writes_nothing():
    buf, _, bar = _plain(enabled=False)
    with bar:
        bar.update(5, elapsed=1.0, evaluated=True)
    assert buf.getvalue() == ""


def test_announce_times_the_step():
    buf, clock = io.StringIO(), _Clock()
    with announce("building data", console=Console(file=buf), clock=clock):
        clock.now = 8.25
    assert buf.getvalue().splitlines() == ["building data ...", "building data: done in 8.2 s"]


def test_run_without_a_terminal_logs_data_progress_stop_reason_and_the_summary_speed(tmp_path):
    args = ["run", "--task", "retrieval", "--model", "irnn", "--hidden", "8", "--results",
            tmp_path, "--device", "cpu", "--log", "none", "--n_train", "256", "--n_valid", "64",
            "--n_test", "64", "--embed", "8", "--readout", "8", "--max-steps", "400",
            "--eval-every", "2", "--batch_size", "32", "--lr", "0", "--patience", "2"]
    out = CliRunner().invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "building data ...\nbuilding data: done in" in text
    final = next(ln for ln in text.splitlines() if ": stopped, " in ln)
    # lr 0: the validation error never improves after the first evaluation
    assert "stopped, early stop after 2 evaluations without improvement" in final
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    shown = float(re.search(r"([\d,.]+) steps/s", final).group(1).replace(",", ""))
    assert shown == pytest.approx(summary["steps_per_s"], abs=0.051)
    assert f"steps {summary['steps']}/400" in final
