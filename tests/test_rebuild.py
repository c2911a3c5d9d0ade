"""Committed reports rebuilt by their own commands; intervals within a metric's bounds; code
fingerprints, stale runs and the report's count of code versions."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fwbench import presets
from fwbench.cli import app
from fwbench.errors import FwbenchError
from fwbench.provenance import code_fingerprint, fingerprint
from fwbench.records import RunRecord, RunState, recorded_code, write_json
from fwbench.report import Options
from fwbench.report.cells import cell_row
from fwbench.report.command import EVIDENCE, command_line, options_from_command
from fwbench.report.rebuild import built_by, check
from fwbench.report.spec import ReportSpec, from_preset, in_preset
from fwbench.report.stats import band, mean_ci

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent.name for p in (REPO / EVIDENCE / "report").glob("*/report.md"))


# ---- every committed report: one command, recorded in it, rebuilds byte for byte

def test_every_committed_report_is_one_preset_command():
    assert len(COMMITTED) >= 9
    for name in COMMITTED:
        words = built_by(REPO / EVIDENCE / "report" / name / "report.md").split()
        protocol, scorecard = "--protocol" in words, "--scorecard" in words
        words = [w for w in words if w not in ("--protocol", "--scorecard")]
        flags = words[2::2]
        assert set(flags) <= {"--preset", "--sweep", "--results"}, (name, words)
        assert words[words.index("--results") + 1] == "evidence"
        # where a protocol report goes: PRESET-protocol, or PRESET-protocol-SWEEP
        assert protocol == ("-protocol" in name), name
        assert scorecard == (name == "scorecard") and not (scorecard and len(flags) > 1), name


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_report_rebuilds_unchanged(name, monkeypatch):
    monkeypatch.chdir(REPO)  # the commands name the evidence root relative to the repository
    [checked] = check(EVIDENCE / "report" / name)
    assert checked.differ == [], checked


def test_check_names_the_files_that_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    copy = tmp_path / "table2-h100"
    shutil.copytree(REPO / EVIDENCE / "report" / "table2-h100", copy)
    (copy / "tables" / "mnist.md").write_text("edited by hand\n")
    (copy / "plots" / "old.png").write_bytes(b"")
    res = CliRunner().invoke(app, ["report", "--check", "--out", str(copy)])
    assert res.exit_code == 1, res.output
    assert "tables/mnist.md" in res.output and "plots/old.png (missing)" in res.output
    assert "0 of 1 report(s) rebuild unchanged" in res.output
    (copy / "report.md").write_text("# no command here\n")
    res = CliRunner().invoke(app, ["report", "--check", "--out", str(copy)])
    assert res.exit_code == 2 and "Built by" in res.output


def test_command_line_round_trips():
    opts = Options(results=Path("evidence"), preset="capacity", sweep="state400*",
                   sets={"max-steps": "20000"}, where=("hidden=20",),
                   overrides={"threshold": 0.05, "tail": 10, "tune": ["lr", "S"],
                              "curves": None})
    text = command_line(opts)
    assert text == ("fwbench report --preset capacity --sweep 'state400*' --results evidence "
                    "--set max_steps=20000 --where hidden=20 --threshold 0.05 --tail 10 "
                    "--tune lr,S")
    back = Options(**options_from_command(text))
    assert (back.results, back.preset, back.sweep, back.sets, back.where) == (
        Path("evidence"), "capacity", "state400*", {"max_steps": "20000"}, ("hidden=20",))
    assert back.overrides == {"threshold": 0.05, "tail": 10, "tune": ["lr", "S"]}
    assert command_line(Options(preset="table1")) == "fwbench report --preset table1"
    text = command_line(Options(preset="table1", protocol=True, results=Path("evidence")))
    assert text == "fwbench report --preset table1 --protocol --results evidence"
    back = Options(**options_from_command(text))
    assert (back.preset, back.protocol, back.results) == ("table1", True, Path("evidence"))
    assert not Options(**options_from_command("fwbench report --preset table1")).protocol
    for bad in ("fwbench run --preset x", "fwbench report --bogus 1", "fwbench report --tail"):
        with pytest.raises(FwbenchError):
            options_from_command(bad)


# ---- the report settings each committed report needs live in its preset

def test_presets_hold_the_committed_reports_settings():
    table1, table2 = presets.load("table1"), presets.load("table2")
    assert from_preset(table1).threshold == 0.05
    assert from_preset(table2, "h100").threshold == 0.03 and from_preset(table2).threshold is None
    assert table1.seeds_of("lam_eta_S") == 1 and table2.seeds_of("h100") == 3
    assert table1.seeds_of(None) == 3
    # a lam_eta_S run (20,000 updates) is its sweep's, not the whole preset's report's
    flat = {"task": "retrieval", "model": "fastweights", "hidden": 20, "max_steps": 20000,
            "eval_every": 1000, "patience": 15, "lam": 1.0, "eta": 0.25, "S": 1}
    assert in_preset(flat, table1, "lam_eta_S") and not in_preset(flat, table1)
    budget = {**flat, "model": "lstm", "max_steps": 200000, "lam": None}
    assert in_preset({k: v for k, v in budget.items() if v is not None}, table1)
    for name in presets.available():
        assert from_preset(presets.load(name)).bounds == (0, 1), name


def test_sweep_seeds_come_from_the_named_sweep():
    from fwbench.sweep import plan

    assert plan(preset="table1", sweep="lam_eta_S").seeds == (0,)
    assert plan(preset="table1", sweep="lam_eta_S", seeds=2).seeds == (0, 1)
    assert plan(preset="table1").seeds == (0, 1, 2)


@pytest.mark.parametrize("text", [
    'report = { sweeps = ["nope"] }', 'sweeps.a = { grid = { lr = [1] }, seeds = 0 }',
    'sweeps.a = { grid = { lr = [1] }, report = 3 }', 'report = { bounds = [1, 0] }'])
def test_malformed_report_keys_are_refused(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(f'task = "retrieval"\n{text}\n')
    with pytest.raises(FwbenchError):
        from_preset(presets.load(str(path)))


# ---- intervals within the metric's bounds: cells, tails, plot bands

def test_intervals_are_cut_to_the_bounds():
    values = [0.0, 0.02, 0.9]  # a t-interval on these reaches below 0
    mean, low, high, n = mean_ci(values)
    assert low < 0
    b_mean, b_low, b_high, _ = mean_ci(values, bounds=(0, 1))
    assert (b_mean, b_low, b_high) == (mean, 0.0, min(high, 1.0))
    table = pd.DataFrame({0: [0.0, 0.01, 0.99], 10: [0.5, 0.5, 0.5]})
    free, cut = band(table), band(table, bounds=(0, 1))
    assert free.loc[0, "low"] < 0 and cut.loc[0, "low"] == 0 and cut.loc[0, "high"] <= 1
    assert cut.loc[10, "low"] == free.loc[10, "low"] == 0.5
    with pytest.raises(FwbenchError):
        ReportSpec(bounds=(1, 0))


def test_cells_and_tails_stay_within_bounds():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "status": "completed", "model": "m",
                         "hidden": 20, "seed": [0, 1, 2], "eval_catch_rate": [1.0, 0.98, 0.1]})
    curves = {"a": [1.0, 1.0], "b": [0.97, 0.99], "c": [0.1, 0.05]}

    def read(rid, split, metric):
        return pd.DataFrame({"step": [1, 2], "value": curves[rid]})

    for bounds in (None, (0, 1)):
        spec = ReportSpec(metric="eval_catch_rate", direction="higher", tail=2,
                          curves=("eval/catch_rate",), bounds=bounds)
        row = cell_row(runs, spec, "eval_catch_rate", [], read)
        inside = row["high"] <= 1 and row["tail_high"] <= 1
        assert inside == (bounds is not None), row
        assert math.isclose(row["mean"], 0.6933, abs_tol=1e-3)


# ---- code fingerprints and stale runs

def _fake_code(root: Path) -> Path:
    for rel in ("models/m.py", "models/kernel.c", "config.py", "report/r.py", "records.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root


def test_fingerprint_covers_the_code_that_computes_numbers(tmp_path):
    root = _fake_code(tmp_path)
    before = fingerprint(root)
    for rel in ("report/r.py", "records.py"):  # storage and reporting change no number
        (root / rel).write_text("changed")
        assert fingerprint(root) == before
    for rel in ("models/m.py", "models/kernel.c", "config.py"):
        (root / rel).write_text(f"changed {rel}")
        assert fingerprint(root) != before
        before = fingerprint(root)
    assert len(code_fingerprint()) == 16 and code_fingerprint() == fingerprint()


def _finished_run(root: Path, code: str | None, resumed: list | None = None) -> RunRecord:
    record = RunRecord(root / "runs" / "r1")
    record.path.mkdir(parents=True)
    env = {"threads": 1, **({"code": code} if code else {})}
    write_json(record.config_path, {"run_id": "r1", "config": {}, "environment": env,
                                    **({"resumed": resumed} if resumed else {})})
    write_json(record.summary_path, {"status": "completed"})
    return record


@pytest.mark.parametrize("code, resumed, state", [
    (None, None, RunState.DONE), ("current", None, RunState.DONE),
    ("0" * 16, None, RunState.STALE),
    ("current", [{"code": "0" * 16}], RunState.STALE)])
def test_state_of_a_finished_run_follows_its_code(tmp_path, code, resumed, state):
    code = code_fingerprint() if code == "current" else code
    record = _finished_run(tmp_path, code, resumed)
    assert record.state() is state
    assert recorded_code(json.loads(record.config_path.read_text())) == (
        None if code is None else "+".join(dict.fromkeys(
            [code, *(r["code"] for r in resumed or [])])))


def test_sweep_lists_stale_runs_and_reruns_them_on_request(tmp_path):
    from test_sweep import sweep

    args = ["--model", "irnn", "--results", str(tmp_path)]
    assert sweep(*args).exit_code == 0
    [path] = (tmp_path / "runs").iterdir()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["environment"]["code"] == code_fingerprint()
    cfg["environment"]["code"] = "0" * 16  # as if made by other code
    write_json(path / "config.json", cfg)
    plan = sweep(*args, "--dry-run")
    assert "stale" in plan.output and "1 stale (made by other code; kept)" in plan.output
    kept = sweep(*args)
    assert kept.exit_code == 0 and "(1 finished earlier)" in kept.output
    assert json.loads((path / "config.json").read_text())["environment"]["code"] == "0" * 16
    rerun = sweep(*args, "--rerun-stale")
    assert rerun.exit_code == 0 and "(0 finished earlier)" in rerun.output, rerun.output
    assert json.loads((path / "config.json").read_text())["environment"]["code"] == \
        code_fingerprint()
    assert RunRecord(path).state() is RunState.DONE


def test_report_counts_code_versions(tmp_path, monkeypatch):
    from test_sweep import sweep

    assert sweep("--grid", "model=irnn,lstm", "--results", str(tmp_path)).exit_code == 0
    first = sorted((tmp_path / "runs").iterdir())[0]
    cfg = json.loads((first / "config.json").read_text())
    del cfg["environment"]["code"]  # a run from before fingerprints
    write_json(first / "config.json", cfg)
    res = CliRunner().invoke(app, ["report", "--results", str(tmp_path), "--rows", "model",
                                   "--columns", "hidden"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert (f"Built by `fwbench report --results {tmp_path} --rows model --columns hidden` "
            "(fwbench ") in text
    assert f"1 version (`{code_fingerprint()}`); unrecorded for 1 run" in text


def test_bounds_need_no_numpy_scalars_in_cells():
    assert isinstance(mean_ci([0.1, 0.2], bounds=(0, 1))[1], float)
    assert np.isnan(mean_ci([0.1], bounds=(0, 1))[1])
