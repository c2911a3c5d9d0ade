"""The sweep's lines and closing table name runs by the settings that vary, errors in percent."""

from __future__ import annotations

import io

from rich.console import Console

from fwbench.records import RunResult
from fwbench.sweep import SweepDisplay, build_runs, plan
from fwbench.sweep.display import outcome_table, varied


def _runs():
    return build_runs(plan(model="fastweights", sets={"hidden": 20, "max_steps": 10},
                           grid={"lam": ["0.9", "1.0"], "eta": ["0.5"], "S": ["1", "2"]},
                           seeds=2))


def test_lines_name_the_varied_settings_and_seed_in_percent():
    runs = _runs()
    assert varied(runs) == ["lam", "S", "seed"]  # eta is one value: not said
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False)
    with SweepDisplay(len(runs), console=console, runs=runs) as display:
        display.start(runs[5])
        display.finish(RunResult(runs[5].run_id, "completed", {"test_error": 0.6734}))
        display.finish(RunResult(runs[0].run_id, "failed", error="boom"))
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[1/8] completed λ=0.9 S=2 seed=1  ")
    assert lines[0].endswith("test error 67.34%")
    assert lines[1].startswith("[2/8] failed    λ=0.9 S=1 seed=0") and "boom" in lines[1]
    table = io.StringIO()
    Console(file=table, width=40).print(soft_wrap=True, *[outcome_table(
        [RunResult(runs[5].run_id, "completed", {"test_error": 0.6734})], display)])
    row = table.getvalue().splitlines()[1]
    assert "λ=0.9 S=2 seed=1" in row and "67.34%" in row and runs[5].run_id in row


def test_a_sweep_of_one_run_is_named_by_its_id():
    (run,) = build_runs(plan(model="irnn", sets={"hidden": 8}))
    display = SweepDisplay(1, console=Console(file=io.StringIO()), runs=[run], scale=1)
    assert display.name(run.run_id) == run.run_id
