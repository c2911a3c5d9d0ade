"""The report's planned-but-not-run section: which of a preset's grid points no finished run
covers, and their cost extrapolated from the finished runs of the same row."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fwbench.report import Options, build_report
from fwbench.sweep.plan import plan
from test_report import flat, write_run

PRESET = """
name = "grid"
task = "retrieval"
seeds = 2
[settings]
max_steps = 1000
hidden = 16
[grid]
model = ["linear", "delta"]
K = [8, 16, 32, 64]
[report]
metric = "test_error"
rows = "model"
columns = "K"
[sweeps.lstm]
settings = { model = "lstm", hidden = 200 }
grid = { K = [8, 16, 32, 64] }
[sweeps.gru]
settings = { model = "gru", hidden = 400 }
grid = { K = [8, 16] }
[sweeps.delta8]
# the main grid's delta runs at K = 8 again: planned once
settings = { model = "delta" }
grid = { K = [8] }
"""


def per_update(model: str, K: int) -> float:
    """CPU seconds per update of the runs written here: a line in K per model."""
    return {"linear": 0.01 + 0.001 * K, "delta": 0.02 + 0.002 * K, "lstm": 0.5 * K}[model]


def write(root, model, K, seed, hidden=16, steps=1000):
    write_run(root, flat(model, hidden, seed, K=K, max_steps=1000), {
        "test_error": 0.1, "best_valid_error": 0.1, "steps": steps,
        "train_cpu_s": per_update(model, K) * steps})


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1):
        for K in (8, 16, 32):
            write(root, "linear", K, seed, steps=500 if K == 32 else 1000)
    for K in (8, 16):
        write(root, "delta", K, 0)
    write(root, "lstm", 8, 0, hidden=200)
    preset = tmp_path / "grid.toml"
    preset.write_text(PRESET)
    return root, preset


def test_the_missing_points_are_the_planned_ones_no_run_covers(results, tmp_path):
    root, preset = results
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    pending = sections[0].pending
    planned = {(p["model"], p["K"], p["seed"]) for name in (None, "lstm", "gru", "delta8")
               for p in plan(preset=str(preset), sweep=name).points()}
    ran = {("linear", K, s) for K in (8, 16, 32) for s in (0, 1)} | {
        ("delta", 8, 0), ("delta", 16, 0), ("lstm", 8, 0)}
    assert set(zip(pending["row"], pending["column"], pending["seed"])) == planned - ran
    assert len(pending) == len(planned) - len(ran) == 28 - 9
    saved = pd.read_csv(tmp_path / "rep" / "tables" / "retrieval-pending.csv")
    assert len(saved) == len(pending)


def test_costs_extrapolate_each_rows_runs(results, tmp_path):
    root, preset = results
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    pending = sections[0].pending.set_index(["row", "column", "seed"])
    # two K or more: the least-squares line through the row's runs, at the full budget
    linear = pending.loc[("linear", 64, 0)]
    assert linear["cpu_s_per_update"] == pytest.approx(per_update("linear", 64))
    assert linear["cpu_h"] == pytest.approx(per_update("linear", 64) * 1000 / 3600)
    assert pending.loc[("delta", 32, 1), "cpu_s_per_update"] == pytest.approx(
        per_update("delta", 32))
    # a missing seed at a K that ran is costed at that K
    assert pending.loc[("delta", 16, 1), "cpu_s_per_update"] == pytest.approx(
        per_update("delta", 16))
    # one K: in proportion to K; no run: no estimate
    assert pending.loc[("lstm", 64, 0), "cpu_s_per_update"] == pytest.approx(0.5 * 8 * 64 / 8)
    assert pending.loc[("lstm", 64, 0), "basis"] == "∝ K from K = 8"
    gru = pending.loc[("gru", 8, 0)]
    assert math.isnan(gru["cpu_h"]) and gru["basis"] == "no finished run"
    text = (tmp_path / "rep" / "report.md").read_text()
    section = text[text.index("### Planned, not yet run"):]
    assert "19 runs of the preset's grid" in section
    # of the 2 runs planned at K = 8 (the main grid's, which the delta8 sweep repeats), 1 is left
    assert "| delta | 8 (1 of 2), 16 (1 of 2), 32, 64 | 6 |" in section
    assert "| linear | 64 | 2 | 0.074 | line over 3 K |" in section
    assert "| gru | 8, 16 | 4 | — | no finished run | — |" in section
    known = pending["cpu_h"].dropna().sum()
    assert f"| all |  | 19 |  |  | {known:.3g} (and 4 runs without an estimate) |" in section
    # nine finished runs, two of them (linear at K = 32) stopped at half their budget: 8 / 9
    assert "used 89% of theirs" in section


def test_a_complete_grid_or_a_filtered_report_has_no_such_section(results, tmp_path):
    root, preset = results
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset), where=(
        "model=linear",), out=tmp_path / "where"))
    assert sections[0].pending is None
    assert "Planned, not yet run" not in (tmp_path / "where" / "report.md").read_text()
    for K in (8, 16, 32):
        write(root, "linear", K, 1, hidden=16)  # a duplicate seed changes nothing planned
    done = tmp_path / "done.toml"
    done.write_text(PRESET.split("[sweeps.lstm]")[0].replace(
        'model = ["linear", "delta"]', 'model = ["linear"]').replace("K = [8, 16, 32, 64]",
                                                                      "K = [8, 16, 32]"))
    out, sections, _, _ = build_report(Options(results=root, preset=str(done),
                                               out=tmp_path / "done"))
    assert sections[0].pending is None
    assert not (out / "tables" / "retrieval-pending.csv").exists()
    assert "Planned, not yet run" not in (out / "report.md").read_text()


def test_summary_keys_side_by_side_cost_whole_runs(tmp_path):
    """Where the columns label summary keys of the same runs (test error at each K), a missing
    run misses every column, and its cost is the row's mean per update."""
    root = tmp_path / "results"
    for model, seed, cpu in (("linear", 0, 10.0), ("linear", 1, 30.0), ("delta", 0, 50.0)):
        write_run(root, flat(model, 16, seed, max_steps=1000), {
            "test_error": 0.1, "best_valid_error": 0.1, "test_K2_error": 0.05,
            "test_K8_error": 0.3, "steps": 1000, "train_cpu_s": cpu})
    preset = tmp_path / "side.toml"
    preset.write_text(PRESET.split("[report]")[0].replace("K = [8, 16, 32, 64]", "") + """
[report]
rows = "model"
columns = "test K"
metrics = { 2 = "test_K2_error", 8 = "test_K8_error" }
""")
    out, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                               out=tmp_path / "rep"))
    pending = sections[0].pending
    assert list(zip(pending["row"], pending["seed"])) == [("delta", 1)]
    assert pending["cpu_s_per_update"].iloc[0] == pytest.approx(0.05)
    assert pending["cpu_h"].iloc[0] == pytest.approx(0.05 * 1000 / 3600)
    text = (out / "report.md").read_text()
    assert "1 run of the preset's grid" in text and "has no finished run here" in text
    assert "| delta | every one | 1 | 0.05 | mean of 1 run |" in text
