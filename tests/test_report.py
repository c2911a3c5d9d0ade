"""fwbench report on generated run records: numbers, selection on validation, layout, plots,
bad input, and no torch."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.errors import FwbenchError
from fwbench.report import Options, build_report
from fwbench.report.stats import band, first_crossing, mean_ci
from torchless import invoke_without_torch

_ids = itertools.count()


def write_run(root: Path, flat: dict, summary: dict, curve=(), threads: int = 1,
              status: str = "completed") -> str:
    """A finished run directory written by hand; `curve`: (step, split, metric, value) rows."""
    # a config that hashes to the run id, as the report checks; `instance` keeps ids distinct
    settings = {k: v for k, v in flat.items() if k not in ("task", "model")}
    config = {"task": flat["task"], "model": flat["model"], "instance": next(_ids),
              "learner_settings": {}, "task_settings": {}, "model_settings": settings}
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    run_id = f"{flat['task']}-{flat['model']}-h{flat['hidden']}-{hashlib.sha256(blob).hexdigest()[:10]}"
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "run_id": run_id, "config": config, "flat": flat, "environment": {"threads": threads}}))
    (d / "summary.json").write_text(json.dumps({"status": status, "run_id": run_id, **summary}))
    lines = ["step,split,metric,value,elapsed_s"] + [f"{s},{sp},{m},{v},0.0"
                                                     for s, sp, m, v in curve]
    (d / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run_id


def flat(model="fastweights", hidden=20, seed=0, **kw) -> dict:
    return {"task": "retrieval", "model": model, "hidden": hidden, "seed": seed,
            "max_steps": 100, **kw}


PRESET = """
name = "mini"
task = "retrieval"
seeds = 3
[settings]
max_steps = 100
[grid]
model = ["irnn", "fastweights"]
hidden = [20, 50]
[paper]
metric = "test_error"
scale = 100
rows = "model"
columns = "hidden"
[paper.values]
fastweights = { 20 = 1.81, 50 = 0.0 }
irnn = { 20 = 62.11, 50 = 60.23 }
[sweeps.tune]
settings = { model = "fastweights", hidden = 20 }
grid = { lam = [0.9, 0.95], eta = [0.5, 1.0] }
"""

TEST = {("fastweights", 20): [0.10, 0.20, 0.40], ("fastweights", 50): [0.0, 0.0, 0.0],
        ("irnn", 20): [0.6, 0.7, 0.5], ("irnn", 50): [0.55, 0.65, 0.6]}


@pytest.fixture
def table_results(tmp_path):
    """Runs of the mini preset's main grid with known test errors and curves."""
    root = tmp_path / "results"
    for (model, hidden), errors in TEST.items():
        for seed, err in enumerate(errors):
            # validation error falls by 0.1 per 10 steps from 1.0 - seed/10
            curve = [(s, "valid", "error", 1.0 - seed / 10 - s / 100) for s in (10, 20, 30)]
            curve += [(s, "train", "loss", 2.0 - s / 50) for s in (10, 20, 30)]
            write_run(root, flat(model, hidden, seed), {
                "test_error": err, "best_valid_error": err + 0.01, "train_wall_s": 10.0 + seed},
                curve, threads=2)
    preset = tmp_path / "mini.toml"
    preset.write_text(PRESET)
    return root, preset


def test_mean_ci_three_seeds_is_min_max():
    # with 3 values each resample's mean is min (or max) with probability 1/27 > 2.5%, so
    # the percentile interval's ends are exactly min and max
    mean, low, high, n = mean_ci([0.1, 0.2, 0.4], method="percentile")
    assert n == 3 and (low, high) == pytest.approx((0.1, 0.4), abs=1e-12)
    assert mean == pytest.approx(0.7 / 3)
    assert mean_ci([0.5, 0.5, 0.5])[1:3] == pytest.approx((0.5, 0.5))
    # the default, Student's t: mean ± t(0.975, 2) s / sqrt(3), t(0.975, 2) = 4.302653
    _, low, high, _ = mean_ci([0.1, 0.2, 0.4])
    half = 4.302653 * np.std([0.1, 0.2, 0.4], ddof=1) / np.sqrt(3)
    assert (low, high) == pytest.approx((0.7 / 3 - half, 0.7 / 3 + half), rel=1e-6)
    one = mean_ci([0.3, float("nan")])
    assert one[0] == 0.3 and one[3] == 1 and np.isnan(one[1])


def test_mean_ci_matches_exact_bootstrap_distribution():
    x = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
    means = np.array([x[list(i)].mean() for i in itertools.product(range(5), repeat=5)])
    lo, hi = np.quantile(means, [0.025, 0.975])  # the exact bootstrap distribution
    _, low, high, _ = mean_ci(x, method="percentile")
    assert low == pytest.approx(lo, abs=0.25) and high == pytest.approx(hi, abs=0.25)
    assert low > x.min() and high < x.max()


def test_band_handles_ragged_seeds_and_threshold_crossing():
    table = pd.DataFrame([[1.0, 0.5, 0.2], [0.8, 0.4, np.nan], [0.9, 0.3, np.nan]],
                         columns=[10, 20, 30])
    b = band(table, method="percentile")
    assert b.loc[20, "mean"] == pytest.approx(0.4) and b.loc[30, "n"] == 1
    assert (b.loc[20, "low"], b.loc[20, "high"]) == pytest.approx((0.3, 0.5))
    assert np.isnan(b.loc[30, "low"])
    t = band(table)  # the default t-interval, per column as mean_ci gives it
    assert (t.loc[20, "low"], t.loc[20, "high"]) == pytest.approx(mean_ci([0.5, 0.4, 0.3])[1:3])
    assert np.isnan(t.loc[30, "low"])
    curve = pd.DataFrame({"step": [10, 20, 30], "value": [0.9, 0.4, 0.6]})
    assert first_crossing(curve, 0.5) == 20 and first_crossing(curve, 0.8, False) == 10
    assert np.isnan(first_crossing(curve, 0.1))


def test_cpu_time_is_the_recorded_process_time_where_there_is_one(tmp_path):
    """A run that recorded its process's CPU time counts that; an older one its training
    wall time x threads; the report says which."""
    root = tmp_path / "r"
    write_run(root, flat(seed=0), {"test_error": 0.1, "train_wall_s": 10.0}, threads=2)
    write_run(root, flat(seed=1), {"test_error": 0.2, "train_wall_s": 10.0,
                                   "train_cpu_s": 3600.0}, threads=2)
    out, _, _, runs = build_report(Options(results=root, out=tmp_path / "rep"))
    assert sorted(runs["cpu_s"]) == [20.0, 3600.0]
    md = (out / "report.md").read_text()
    assert ("CPU time of these runs: 1.01 h (the process's CPU time in training for 1 of them, "
            "training wall time x threads for the others)") in md


def test_a_reports_files_depend_on_its_runs_alone(tmp_path):
    """Runs of another task under the same results directory, whose records list their keys in
    another order (say, made by newer code), leave a report's summary.csv as it was."""
    root = tmp_path / "r"
    for seed in (0, 1):
        write_run(root, flat(seed=seed), {"test_error": 0.1 * (seed + 1), "train_wall_s": 5.0,
                                          "steps": 100})
    opts = Options(results=root, out=tmp_path / "rep", where=("task=retrieval",))
    out, *_ = build_report(opts)
    before = (out / "summary.csv").read_bytes()
    other = {"task": "mnist", "model": "lstm", "hidden": 20, "seed": 0, "levels": "flat"}
    write_run(root, other, {"train_cpu_s": 1.0, "steps": 3, "test_error": 0.5})  # first, sorted
    build_report(opts)
    assert (out / "summary.csv").read_bytes() == before


def test_paper_layout_numbers(table_results, tmp_path):
    root, preset = table_results
    out, sections, loaded, runs = build_report(Options(
        results=root, preset=str(preset), out=tmp_path / "rep",
        overrides={"threshold": 0.75}))
    cells = pd.read_csv(out / "tables" / "retrieval.csv")
    fw20 = cells[(cells["model"] == "fastweights") & (cells["hidden"] == 20)].iloc[0]
    assert fw20["n"] == 3 and fw20["mean"] == pytest.approx(70 / 3, abs=1e-4)
    # 95% t-interval of 10, 20, 40: 23.33 ± 4.3027 x 8.819
    assert (fw20["ci_low"], fw20["ci_high"]) == pytest.approx((-14.6125, 61.2792), abs=1e-3)
    assert fw20["paper"] == 1.81 and fw20["diff"] == pytest.approx(70 / 3 - 1.81, abs=1e-4)
    # valid error reaches 0.75 at step 30 (seed 0), 20 (seed 1), 10 (seed 2)
    assert fw20["steps_to_threshold"] == 20 and fw20["reached"] == "3/3"
    assert fw20["cpu_s"] == pytest.approx(22.0)  # (10 + 11 + 12) s x 2 threads / 3
    assert list(cells["model"].unique()) == ["fastweights", "irnn"]  # the paper's row order
    md = (out / "report.md").read_text()
    assert "| fastweights | 1.81 | 23.33 [-14.61, 61.28] | +21.52 |" in md
    assert "(mean [95% t-interval] over seeds)" in md and "| 95% t-interval |" in md
    assert "![Convergence: retrieval](plots/retrieval-curves.png)" in md
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 12 and {"run_id", "model", "hidden", "seed", "test_error",
                                   "cpu_s"} <= set(summary.columns)
    tex = (out / "tables" / "retrieval.tex").read_text()
    assert r"\begin{tabular}" in tex and "23.33 [-14.61, 61.28]" in tex
    assert out == tmp_path / "rep"


# what the fast-weights presets say in their [report] tables
FW_TUNING = {"tune": ["lr", "lam", "eta", "S"], "heatmap": ["lam", "eta"], "line": "S"}


def test_selection_on_validation_never_on_test(tmp_path):
    root = tmp_path / "results"
    # lam=0.9: better validation, worse test; lam=0.95 the reverse
    for seed in range(3):
        write_run(root, flat(seed=seed, lam=0.9, eta=0.5),
                  {"test_error": 0.30, "best_valid_error": 0.10})
        write_run(root, flat(seed=seed, lam=0.95, eta=0.5),
                  {"test_error": 0.05, "best_valid_error": 0.20})
    _, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep",
                                             overrides=FW_TUNING))
    cell = sections[0].cells.iloc[0]
    assert cell["chosen"] == "lam=0.9 (best of 2)" and cell["mean"] == pytest.approx(30.0)
    assert cell["n"] == 3 and len(cell["runs"]) == 3
    # without a preset, a sweep's report tunes the family's hyper-parameters too (errors in
    # percent) and lists every grid point, the chosen one marked
    _, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep2"))
    cell = sections[0].cells.iloc[0]
    assert cell["group"] == "" and cell["mean"] == pytest.approx(30.0)
    text = (tmp_path / "rep2" / "report.md").read_text()
    assert "| λ | test error (%) | n | best valid error (mean) | chosen on validation |" in text
    assert "| 0.9 | 30.00 [30.00, 30.00] | 3 | 10.00 | ✓ |" in text
    assert "| 0.95 | 5.00 [5.00, 5.00] | 3 | 20.00 |  |" in text
    # a --tune naming nothing the runs vary in: each lam is a table of its own
    _, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep3",
                                             overrides={"tune": ["lr"]}))
    assert sorted(sections[0].cells["group"]) == ["lam=0.9", "lam=0.95"]


def test_higher_is_better_presets_and_groups(tmp_path):
    root = tmp_path / "results"
    for seed in range(2):
        for lr, rate in ((1e-3, 0.9), (1e-2, 0.6)):
            for size in (16, 24):
                write_run(root, flat(seed=seed, lr=lr, size=size),
                          {"eval_catch_rate": rate - size / 100},
                          [(s, "eval", "catch_rate", s / 1000) for s in (100, 200, 300)])
    preset = tmp_path / "rl.toml"
    preset.write_text(textwrap.dedent("""
        task = "retrieval"
        [report]
        metric = "eval_catch_rate"
        direction = "higher"
        curves = ["eval/catch_rate"]
        x_label = "environment steps"
        threshold = 0.2
        tune = ["lr"]
        """))
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    cells = sections[0].cells
    assert sections[0].splits == ["size"] and sorted(cells["group"]) == ["size=16", "size=24"]
    assert set(cells["chosen"]) == {"lr=0.001 (best of 2)"}  # the higher catch rate chosen
    assert sorted(cells["mean"]) == pytest.approx([0.9 - 0.24, 0.9 - 0.16])
    assert set(cells["steps_to_threshold"]) == {200}  # first step with catch rate >= 0.2
    # without tuning, the learning rates are groups of their own, each with its own figure
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep2", overrides={"tune": []}))
    assert sorted(set(sections[0].cells["group"])) == ["lr=0.001, size=16", "lr=0.001, size=24",
                                                       "lr=0.01, size=16", "lr=0.01, size=24"]
    pngs = [png for _, png in sections[0].figures]
    assert len(set(pngs)) == 4 and all(p.is_file() and p.name.endswith("-curves.png")
                                       for p in pngs)


def test_tail_is_the_mean_of_each_runs_last_points_then_over_seeds(table_results, tmp_path):
    root, preset = table_results  # valid error of seed s at steps 10, 20, 30: 0.9-s/10, ...
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep",
                                             overrides={"tail": 2}))
    cells = sections[0].cells
    # last two points 0.8 - s/10 and 0.7 - s/10: tail means 0.75, 0.65, 0.55, x scale 100
    assert cells["tail_mean"].tolist() == pytest.approx([65.0] * 4)
    # 95% t-interval: 65 ± 4.3027 x 10 / sqrt(3)
    assert cells["tail_low"].tolist() == pytest.approx([40.1586] * 4, abs=1e-3)
    assert cells["tail_high"].tolist() == pytest.approx([89.8414] * 4, abs=1e-3)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "mean of last 2 valid/error" in text and "65.00 [40.16, 89.84]" in text


def test_a_rewritten_report_drops_its_own_stale_files_only(table_results, tmp_path):
    root, preset = table_results
    out = tmp_path / "rep"
    (out / "plots").mkdir(parents=True)
    mine = out / "plots" / "notes.txt"
    mine.write_text("kept")
    for seed in range(2):  # a second task: its own tables and plots
        write_run(root, {**flat(seed=seed), "task": "mnist"}, {"test_error": 0.02},
                  [(10, "valid", "error", 0.1)])
    args = ["report", "--results", str(root), "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    first = {p.name for p in (out / "plots").iterdir()} | {p.name for p in
                                                          (out / "tables").iterdir()}
    assert CliRunner().invoke(app, args + ["--task", "retrieval"]).exit_code == 0
    second = {p.name for p in (out / "plots").iterdir()} | {p.name for p in
                                                           (out / "tables").iterdir()}
    assert {n for n in first - second} == {"mnist-curves.png", "mnist-curves.svg", "mnist.csv",
                                            "mnist.md", "mnist.tex"}
    assert "notes.txt" in second
    listed = set((out / ".fwbench-report").read_text().split())
    assert listed == {str(p.relative_to(out)) for p in out.rglob("*")
                      if p.is_file() and p.name not in ("notes.txt", ".fwbench-report")}
    assert mine.read_text() == "kept"


def test_diverged_runs_are_named_in_their_cells(tmp_path):
    root = tmp_path / "results"
    for seed in range(3):
        write_run(root, flat("fastweights", seed=seed), {"test_error": 0.1 + seed / 100})
        write_run(root, flat("irnn", seed=seed), {"diverged_step": 1}, status="diverged")
        if seed < 2:
            write_run(root, flat("lstm", seed=seed), {"test_error": 0.2})
        else:
            write_run(root, flat("lstm", seed=seed), {"diverged_step": 9}, status="diverged")
    _, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep"))
    cells = sections[0].cells.set_index("row")
    assert cells.loc["irnn", "diverged"] == 3 and cells.loc["irnn", "n"] == 0
    assert cells.loc["lstm", "diverged"] == 1 and cells.loc["fastweights", "diverged"] == 0
    text = (tmp_path / "rep" / "tables" / "retrieval.md").read_text()
    assert "| irnn | diverged (3/3) |" in text
    assert "| lstm | 20.00 [20.00, 20.00] (1 of 3 diverged) |" in text


def test_a_preset_with_a_list_setting_finds_its_runs(tmp_path):
    """Lists (eval_K) are 'a,b' strings in the run table; preset membership still matches."""
    root = tmp_path / "results"
    for seed in range(2):
        write_run(root, flat(seed=seed, eval_K=[2, 8, 16]), {"test_error": 0.1,
                                                             "test_K8_error": 0.3})
        write_run(root, flat(seed=seed, eval_K=[2, 8]), {"test_error": 0.2,
                                                         "test_K8_error": 0.5})
    preset = tmp_path / "lg.toml"
    preset.write_text('task = "retrieval"\n[settings]\neval_K = [2, 8, 16]\n'
                      '[report]\nmetric = "test_K8_error"\n')
    _, sections, _, runs = build_report(Options(results=root, preset=str(preset),
                                                out=tmp_path / "rep"))
    assert len(runs) == 2 and set(runs["eval_K"]) == {"2,8,16"}
    assert sections[0].cells["mean"].tolist() == pytest.approx([0.3])


def test_metrics_side_by_side_become_the_columns(tmp_path):
    root = tmp_path / "results"
    for seed in range(3):
        for model, base in (("fastweights", 0.0), ("lstm", 0.1)):
            write_run(root, flat(model, seed=seed), {
                "test_error": 0.5, "test_K2_error": base, "test_K8_error": base + 0.2 + seed / 100},
                [(10, "valid", "error", 0.3)])
    preset = tmp_path / "lg.toml"
    body = ('task = "retrieval"\n[report]\nmetric = "test_error"\nscale = 100\n'
            'columns = "{columns}"\nmetrics = {{ 2 = "test_K2_error", 8 = "{k8}" }}\n')
    preset.write_text(body.format(columns="test K", k8="test_K8_error"))
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    cells = sections[0].cells.set_index(["row", "column"])["mean"]
    assert cells.to_dict() == pytest.approx({("fastweights", 2): 0.0, ("fastweights", 8): 21.0,
                                             ("lstm", 2): 10.0, ("lstm", 8): 31.0})
    text = (tmp_path / "rep" / "tables" / "retrieval.md").read_text()
    assert "| model | test K=2 | test K=8 |" in text
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "CPU s/run" in report and "cell CPU h" not in report  # each run counted once
    # the error against test K, and the shared curves drawn once
    assert [c for c, _ in sections[0].figures] == ["test error against test K: retrieval",
                                                   "Convergence: retrieval"]
    for columns, k8, message in (("hidden", "test_K8_error", "is a setting of the runs"),
                                 ("test K", "test_K9_error", "test_K9_error")):
        preset.write_text(body.format(columns=columns, k8=k8))
        with pytest.raises(FwbenchError, match=message):
            build_report(Options(results=root, preset=str(preset), out=tmp_path / "rep"))


def test_integer_columns_stay_integers_beside_runs_without_them(tmp_path):
    """A setting only some tasks have (Catch's N) comes back from pandas as a float column;
    tables still say N=16, not N=16.0."""
    root = tmp_path / "results"
    for seed in range(2):
        for N in (16, 24):
            write_run(root, {"task": "catch", "model": "lstm", "hidden": 100, "seed": seed,
                             "N": N}, {"eval_catch_rate": 0.5 + seed / 10})
        write_run(root, flat(seed=seed), {"test_error": 0.1})  # no N
    preset = tmp_path / "rl.toml"
    preset.write_text('task = "catch"\n[report]\nmetric = "eval_catch_rate"\n'
                      'direction = "higher"\nrows = "model"\ncolumns = "N"\n')
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    assert sorted(sections[0].cells["column"]) == [16, 24]
    table = (tmp_path / "rep" / "tables").glob("*.md")
    text = "".join(p.read_text() for p in table)
    assert "N=16 " in text and "N=16.0" not in text


def test_plots_are_images_and_heatmap_for_lam_eta(tmp_path):
    root = tmp_path / "results"
    for seed, lam, eta, S in itertools.product(range(2), (0.9, 0.95), (0.5, 1.0), (1, 2)):
        err = lam - eta / 10 + S / 100 + seed / 1000
        write_run(root, flat(seed=seed, lam=lam, eta=eta, S=S),
                  {"test_error": err, "best_valid_error": err},
                  [(s, sp, m, err + 1 / s) for s in (10, 20) for sp, m in
                   (("valid", "error"), ("train", "loss"))])
    out, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep",
                                             overrides=FW_TUNING))
    names = sorted(p.name for p in (out / "plots").iterdir())
    assert names == ["retrieval-curves.png", "retrieval-curves.svg",
                     "retrieval-fastweights-20-S.png", "retrieval-fastweights-20-S.svg",
                     "retrieval-fastweights-20-heatmap.png", "retrieval-fastweights-20-heatmap.svg"]
    for p in (out / "plots").iterdir():
        data = p.read_bytes()
        assert len(data) > 2000
        assert data.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in data[:2000]
    assert sections[0].cells.iloc[0]["chosen"] == "lam=0.9, eta=1, S=1 (best of 8)"
    md = (out / "report.md").read_text()
    assert "(plots/retrieval-fastweights-20-heatmap.png)" in md
    again, _, _, _ = build_report(Options(results=root, out=tmp_path / "again",
                                          overrides=FW_TUNING))
    for name in names:  # figures are reproducible byte for byte, SVG ids included
        assert (again / "plots" / name).read_bytes() == (out / "plots" / name).read_bytes()


def test_skips_partial_and_malformed_runs(table_results, tmp_path):
    root, _ = table_results
    (root / "runs" / "half").mkdir()
    (root / "runs" / "half" / "config.json").write_text(json.dumps(
        {"run_id": "half", "flat": flat()}))
    bad = root / "runs" / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    rid = write_run(root, flat(seed=7), {"test_error": 0.5}, status="interrupted")
    live = root / "runs" / "live"
    shutil.copytree(root / "runs" / "half", live)
    (live / "lock").write_text(str(os.getpid()))
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "skipped 4 run directories" in res.output
    assert f"live (running (process {os.getpid()}))" in res.output
    assert "half (unfinished (no summary.json))" in res.output
    assert "bad (malformed config.json" in res.output and f"{rid} (unfinished (interrupted))" \
        in res.output
    assert "Skipped 4 run directories" in (tmp_path / "r" / "report.md").read_text()
    assert len(pd.read_csv(tmp_path / "r" / "summary.csv")) == 12


def test_skipped_runs_named_only_when_the_filters_would_take_them(table_results, tmp_path):
    root, _ = table_results
    for name, settings in (("other-task", flat(task="mnist", hidden=100)),
                           ("same-task", flat(hidden=50))):
        d = root / "runs" / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"run_id": name, "flat": settings}))
        (d / "lock").write_text(str(os.getpid()))
    args = ["report", "--results", str(root), "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args + ["--task", "retrieval"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 run directory: same-task (running" in res.output
    assert "other-task" not in res.output
    res = CliRunner().invoke(app, args + ["--where", "hidden=20"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    assert "Skipped" not in (tmp_path / "r" / "report.md").read_text()
    res = CliRunner().invoke(app, args)
    assert "skipped 2 run directories" in res.output


@pytest.mark.parametrize("args, message", [
    (["--results", "{missing}"], "does not exist"),
    (["--results", "{empty}"], "no run records"),
    (["--task", "foo", "--preset", "{preset}"], "conflicts with preset"),
    (["--sweep", "tune"], "give --preset too"),
    (["--set", "max_steps=5"], "give --preset too"),
    (["--where", "colour=red"], "no such setting"),
    (["--where", "hidden=999"], "match the filters"),
    (["--direction", "up"], "invalid direction"),
    (["--metric", "test_eror"], "no run has summary key 'test_eror'"),
    (["--rows", "hidden"], "rows and columns are both"),
    (["--tail", "0"], "invalid tail 0"),
])
def test_bad_input_one_line_exit_2(table_results, tmp_path, args, message):
    root, preset = table_results
    (tmp_path / "empty").mkdir()
    subst = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "preset": preset}
    args = [a.format(**subst) for a in args]
    if "--results" not in args:
        args += ["--results", str(root)]
    before = sorted(p.name for p in root.rglob("*"))
    res = CliRunner().invoke(app, ["report", *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written


def test_preset_membership_filters_runs(table_results, tmp_path):
    root, preset = table_results
    write_run(root, flat(max_steps=5), {"test_error": 0.9})  # not the preset's budget
    write_run(root, flat(lam=0.95, eta=1.0), {"test_error": 0.01, "best_valid_error": 0.0})
    _, _, _, runs = build_report(Options(results=root, preset=str(preset), out=tmp_path / "a"))
    assert len(runs) == 13 and 5 not in set(runs["max_steps"])
    out, _, _, runs = build_report(Options(results=root, preset=str(preset), sweep="tune"))
    assert len(runs) == 1 and out == root / "report" / "mini-tune"
    with pytest.raises(FwbenchError, match="no sweep 'nope'"):
        build_report(Options(results=root, preset=str(preset), sweep="nope"))
    # runs of a sweep that changed the preset's budget belong to it given the same --set
    with pytest.raises(FwbenchError, match="give the same --set here"):
        build_report(Options(results=root, preset=str(preset), where=(), sets={"hidden": 8},
                             out=tmp_path / "c"))
    _, _, _, runs = build_report(Options(results=root, preset=str(preset),
                                         sets={"max_steps": "5"}, out=tmp_path / "d"))
    assert list(runs["max_steps"]) == [5]


def test_a_preset_all_runs_belong_to_gives_the_paper_layout(tmp_path):
    root = tmp_path / "results"  # runs of tasks/table1.toml's grid (its shared settings)
    budget = {"max_steps": 60000, "eval_every": 1000, "patience": 15}
    for seed in range(2):
        write_run(root, flat("lstm", 50, seed, **budget), {"test_error": 0.02 + seed / 100})
    out, sections, _, _ = build_report(Options(results=root))
    assert out == root / "report" and sections[0].spec.title.startswith("Associative")
    cell = sections[0].cells.iloc[0]
    assert cell["paper"] == 1.85 and cell["mean"] == pytest.approx(2.5)  # percent
    write_run(root, flat("lstm", 50, 3, **{**budget, "patience": 1}), {"test_error": 0.5})
    _, sections, _, _ = build_report(Options(results=root))
    assert sections[0].cells["paper"].isna().all()  # not all runs are the preset's any more


def test_report_does_not_import_torch(table_results, tmp_path):
    root, preset = table_results
    ((code, out),) = invoke_without_torch(["report", "--results", str(root), "--preset",
                                           str(preset), "--out", str(tmp_path / "r")])
    assert code == 0, out
    assert (tmp_path / "r" / "report.md").exists()


def test_capacity_of_takes_the_last_column_before_the_first_failure():
    from fwbench.report.capacity import capacity_of

    nan = float("nan")
    assert capacity_of([(16, 5.0), (8, 1.0), (32, 20.0), (64, 3.0)], 10) == (16, 32)  # sorted
    assert capacity_of([(8, 1.0), (16, nan), (32, 2.0)], 10) == (8, 16)  # no value fails
    cap, fail = capacity_of([(8, 50.0), (16, 60.0)], 10)
    assert cap != cap and fail == 8  # fails at the first column
    cap, fail = capacity_of([(8, 1.0), (16, 10.0)], 10)
    assert cap == 16 and fail != fail  # never fails (the threshold itself passes)
    assert capacity_of([(8, 0.95), (16, 0.8)], 0.9, lower_better=False) == (8, 16)


CAPACITY = """
task = "retrieval"
seeds = 2
[settings]
max_steps = 100
[grid]
model = ["linear", "delta"]
K = [8, 16, 32]
[report]
metric = "test_error"
scale = 100
rows = "model"
columns = "K"
capacity = 0.1
[sweeps.wide]
settings = { model = "lstm", hidden = 200 }
grid = { K = [8, 16] }
[sweeps.other]
settings = { model = "gru", hidden = 400 }
grid = { K = [8] }
"""


def test_capacity_table_and_curves_per_model_and_seed(tmp_path):
    root = tmp_path / "results"
    errors = {("linear", 0): [0.01, 0.05, 0.30], ("linear", 1): [0.02, 0.20, 0.40],
              ("delta", 0): [0.0, 0.01, 0.02], ("delta", 1): [0.0, 0.02, 0.09],
              ("lstm", 0): [0.5, 0.7]}
    for (model, seed), errs in errors.items():
        hidden = 200 if model == "lstm" else 16
        for K, err in zip((8, 16, 32), errs):
            write_run(root, flat(model, hidden, seed, K=K), {
                "test_error": err, "state_size": 400, "params": 5000 + hidden + K},
                [(10, "valid", "error", err)])
    # third seeds with some columns run so far: left out of the per-seed range unless their
    # first failing column is among them
    for model, K, err in (("linear", 8, 0.0), ("delta", 8, 0.0), ("delta", 16, 0.15)):
        write_run(root, flat(model, 16, 2, K=K), {"test_error": err, "state_size": 400,
                                                  "params": 5000 + 16 + K})
    preset = tmp_path / "cap.toml"
    preset.write_text(CAPACITY)
    out, sections, _, runs = build_report(Options(results=root, preset=str(preset),
                                                  sweep="wid*"))
    assert out == root / "report" / "cap-wid" and set(runs["model"]) == {"lstm"}
    out, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                               out=tmp_path / "rep"))
    cap = sections[0].capacity.set_index("row")
    # linear: mean 1.0, 12.5, 35 -> passes at 8 only; seeds 0 and 1: 16 and 8
    assert (cap.loc["linear", "capacity"], cap.loc["linear", "first_failing"]) == (8, 16)
    assert cap.loc["linear", "seeds"] == 2 and cap.loc["delta", "seeds"] == 3
    assert (cap.loc["delta", "seed_low"], cap.loc["delta", "seed_high"]) == (8, 32)
    assert (cap.loc["linear", "seed_low"], cap.loc["linear", "seed_high"]) == (8, 16)
    assert cap.loc["delta", "capacity"] == 32 and cap.loc["delta", "first_failing"] != \
        cap.loc["delta", "first_failing"]
    assert cap.loc["lstm", "capacity"] != cap.loc["lstm", "capacity"]  # below the first K
    assert cap.loc["linear", "params"] == "5024-5048" and cap.loc["lstm", "state_size"] == 400
    text = (out / "tables" / "retrieval.md").read_text()
    assert "| linear | 8 | 16 | [8, 16] (2 seeds) | 8-32 | 400 | 5,024-5,048 |" in text
    assert "| delta | >= 32 | none |" in text and "| lstm | < 8 | 8 | — | 8-16 |" in text
    assert "capacity" in (out / "tables" / "retrieval.tex").read_text().lower()
    saved = pd.read_csv(out / "tables" / "retrieval-capacity.csv")
    assert list(saved["row"]) == ["delta", "linear", "lstm"]
    assert (out / "plots" / "retrieval-capacity.png").read_bytes()[:4] == b"\x89PNG"
    assert "Capacity: retrieval" in (out / "report.md").read_text()


def test_capacity_needs_numeric_columns_and_a_number(tmp_path):
    root = tmp_path / "results"
    write_run(root, flat("lstm", K=8), {"test_error": 0.2})
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--columns", "model",
                                   "--rows", "K", "--capacity", "0.1"])
    assert res.exit_code == 2 and "needs numeric columns" in res.output, res.output
    preset = tmp_path / "bad.toml"
    preset.write_text('task = "retrieval"\n[report]\ncapacity = "ten"\n')
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--preset", str(preset)])
    assert res.exit_code == 2 and "invalid capacity 'ten'" in res.output, res.output


def test_columns_in_increasing_order_where_rows_have_different_ones(tmp_path):
    root = tmp_path / "results"  # alstm only at K = 16, gru only at K = 8 and 4
    for model, K in (("alstm", 16), ("gru", 8), ("gru", 4)):
        write_run(root, flat(model, K=K), {"test_error": K / 100},
                  [(10, "valid", "error", K / 100)])
    out, _, _, _ = build_report(Options(results=root, out=tmp_path / "rep",
                                        overrides={"columns": "K"}))
    text = (out / "tables" / "retrieval.md").read_text()
    assert "| model | K=4 | K=8 | K=16 |" in text
    assert "| alstm | — | — | 16.00 |" in text  # errors in percent without a preset


def test_a_run_being_resumed_is_skipped_as_running(table_results, tmp_path):
    root, _ = table_results
    rid = write_run(root, flat(seed=7), {"test_error": 0.5}, status="interrupted")
    (root / "runs" / rid / "lock").write_text(str(os.getppid()))  # resumed by a live process
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert f"{rid} (running (process {os.getppid()}))" in res.output


def test_curve_ranges_bound_curves_after_the_first():
    from fwbench.report.spec import ReportSpec

    spec = ReportSpec(curves=("eval/rate", "train/rate", "train/loss"), bounds=(0, 1),
                      curve_ranges={"train/rate": (0, 1)})
    assert spec.curve_bounds("eval/rate") == (0, 1)
    assert spec.curve_bounds("train/rate") == (0, 1)
    assert spec.curve_bounds("train/loss") is None
    with pytest.raises(FwbenchError, match="invalid curve_ranges entry train/rate"):
        ReportSpec(curves=("eval/rate",), curve_ranges={"train/rate": (1, 0)})


def test_without_a_preset_errors_are_fractions_and_their_intervals_stay_in_range(tmp_path):
    root = tmp_path / "results"
    for seed, err in enumerate([0.01, 0.02, 0.60]):  # a t-interval would reach below 0
        write_run(root, flat("lstm", 20, seed), {"test_error": err, "best_valid_error": err},
                  [(10, "valid", "error", err), (10, "train", "accuracy", 1 - err)])
    _, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep", overrides={
        "curves": ("valid/error", "train/accuracy", "train/loss")}))
    spec, cell = sections[0].spec, sections[0].cells.iloc[0]
    assert spec.bounds == (0.0, 1.0) and spec.curve_bounds("train/accuracy") == (0.0, 1.0)
    assert spec.curve_bounds("train/loss") is None
    assert cell["low"] == 0.0 and cell["high"] <= 100.0  # percent, cut to [0, 100]


def test_every_grid_point_interval_is_cut_to_the_bounds(tmp_path):
    root = tmp_path / "results"
    for lr, errors in ((1e-3, [0.01, 0.02, 0.60]), (3e-3, [0.30, 0.31, 0.32])):
        for seed, err in enumerate(errors):
            write_run(root, flat("lstm", 20, seed, lr=lr),
                      {"test_error": err, "best_valid_error": err})
    _, sections, _, _ = build_report(Options(results=root, out=tmp_path / "rep"))
    points = sections[0].cells.iloc[0]["grid"]
    assert len(points) == 2 and all(0.0 <= p["low"] <= p["high"] <= 100.0 for p in points)
    assert min(p["low"] for p in points) == 0.0  # cut: the t-interval reaches below 0


def test_pinned_settings_keep_tuned_runs_of_the_same_grid_out(tmp_path):
    """A tuned run that shares every setting the grid names and differs in one the grid cannot
    name (lam, which the IRNN lacks) joins the untuned report only if that setting is not
    pinned: pinned, the report keeps to the grid's own runs and chooses nothing."""
    root = tmp_path / "results"
    for seed in range(3):
        write_run(root, flat("irnn", seed=seed), {"test_error": 0.3, "best_valid_error": 0.3})
        write_run(root, flat(seed=seed, lam=0.95), {"test_error": 0.2, "best_valid_error": 0.2})
        write_run(root, flat(seed=seed, lam=0.5), {"test_error": 0.1, "best_valid_error": 0.1})
    body = ('task = "retrieval"\n[settings]\nmax_steps = 100\n[grid]\n'
            'model = ["irnn", "fastweights"]\n[report]\ntune = ["lam"]\n')
    preset = tmp_path / "p.toml"
    preset.write_text(body)
    _, sections, _, runs = build_report(Options(results=root, preset=str(preset),
                                                out=tmp_path / "free"))
    assert len(runs) == 9  # unpinned, the lam = 0.5 runs join and win on validation
    cells = sections[0].cells.set_index("row")["mean"]
    assert cells["fastweights"] == pytest.approx(0.1)
    preset.write_text(body + "pinned = { lam = 0.95 }\n")
    _, sections, _, runs = build_report(Options(results=root, preset=str(preset),
                                                out=tmp_path / "pinned"))
    assert len(runs) == 6 and set(runs[runs["model"] == "fastweights"]["lam"]) == {0.95}
    cells = sections[0].cells.set_index("row")["mean"]
    assert cells["fastweights"] == pytest.approx(0.2) and cells["irnn"] == pytest.approx(0.3)
    # the sweep's --set wins over a pin, as over the preset's shared settings
    _, _, _, runs = build_report(Options(results=root, preset=str(preset), sets={"lam": 0.5},
                                         out=tmp_path / "set"))
    assert set(runs[runs["model"] == "fastweights"]["lam"]) == {0.5}
    preset.write_text(body + "pinned = [\"lam\"]\n")
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--preset", str(preset)])
    assert res.exit_code == 2 and "invalid [report] pinned" in res.output, res.output


def test_a_pin_under_a_models_name_holds_for_that_model_alone(tmp_path):
    """Another sweep's grid over one model's setting (a factorial over fast weights' eta)
    stays out of the main grid's cells when the setting is pinned for that model, while a
    model registered with another value of it (fastweights-eta0) keeps its runs."""
    root = tmp_path / "results"
    for seed in range(2):
        write_run(root, flat(seed=seed, eta=0.5), {"test_error": 0.2, "best_valid_error": 0.2})
        write_run(root, flat(seed=seed, eta=0.0), {"test_error": 0.6, "best_valid_error": 0.1})
        write_run(root, flat("fastweights-eta0", seed=seed, eta=0.0),
                  {"test_error": 0.6, "best_valid_error": 0.6})
    body = ('task = "retrieval"\n[settings]\nmax_steps = 100\n[grid]\n'
            'model = ["fastweights", "fastweights-eta0"]\n[report]\n')
    preset = tmp_path / "p.toml"
    preset.write_text(body + "pinned = { fastweights = { eta = 0.5 } }\n")
    _, sections, _, runs = build_report(Options(results=root, preset=str(preset),
                                                out=tmp_path / "pinned"))
    assert len(runs) == 4
    assert set(runs[runs["model"] == "fastweights"]["eta"]) == {0.5}
    cells = sections[0].cells.set_index("row")["mean"]
    assert cells["fastweights"] == pytest.approx(0.2)
    assert cells["fastweights-eta0"] == pytest.approx(0.6)
    preset.write_text(body + "pinned = { eta = 0.5 }\n")  # a plain pin drops the variant too
    _, _, _, runs = build_report(Options(results=root, preset=str(preset), out=tmp_path / "p"))
    assert set(runs["model"]) == {"fastweights"}
    preset.write_text(body + "pinned = { fastweights = { eta = [0.5] } }\n")
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--preset", str(preset)])
    assert res.exit_code == 2 and "invalid [report] pinned" in res.output, res.output
