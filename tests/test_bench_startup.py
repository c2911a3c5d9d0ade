"""`fwbench bench --startup`: a run's fixed cost measured in fresh processes against the bare
torch import, the re-report of the finished run without torch, bad input refused up front."""

from __future__ import annotations

import csv

from typer.testing import CliRunner

from fwbench.cli import app

# a test set large enough that its pass takes a measurable share of a millisecond clock
TINY = ["--set", "n_train=64", "--set", "n_valid=16", "--set", "n_test=20000", "--set",
        "hidden=8"]


def test_startup_measures_each_subject_against_the_torch_import(tmp_path):
    out = tmp_path / "bench" / "startup"
    res = CliRunner().invoke(app, ["bench", "--startup", "retrieval", "--model", "irnn",
                                   "--repeats", "1", "--warmup", "0", "--out", str(out),
                                   "--quiet", *TINY])
    assert res.exit_code == 0, res.output
    rows = {r["subject"]: r for r in csv.DictReader((out / "bench.csv").open())}
    assert set(rows) == {"import torch", "list", "run", "re-report"}
    assert float(rows["import torch"]["vs_torch_import"]) == 1.0
    run, again = rows["run"], rows["re-report"]
    assert run["imports_torch"] == "True" and again["imports_torch"] == "False"
    # a run does more than import torch; the finished run's report does far less
    assert float(run["cpu_s"]) > float(rows["import torch"]["cpu_s"]) > float(again["cpu_s"])
    assert "n_train=64" in run["command"] and "DIR" in run["command"]
    # the run's own record splits its cost: set-up before the first update, then the test pass
    setup, test = float(run["setup_cpu_s"]), float(run["test_cpu_s"])
    assert 0 < test < setup < float(run["cpu_s"])
    assert again["setup_cpu_s"] == "" and rows["list"]["test_cpu_s"] == ""
    assert {"bench.csv", "bench.md", "meta.json"} <= {p.name for p in out.iterdir()}
    from fwbench.report.bench import build_bench_report

    page, figures = build_bench_report(tmp_path, tmp_path / "report")
    assert figures == 0 and "`re-report`" in page.read_text()  # its table, no figures


def test_bad_startup_requests_are_refused_before_anything_runs(tmp_path):
    out = tmp_path / "bench"
    for args, says in ((["--startup", "tetris"], "invalid --startup 'tetris'"),
                       (["--startup", "retrieval", "--set", "hidden=0"], "hidden"),
                       (["--startup", "retrieval", "--env", "catch"], "at most one"),
                       (["--startup", "retrieval", "--threads", "2"], "--threads")):
        res = CliRunner().invoke(app, ["bench", "--model", "irnn", "--out", str(out), *args])
        assert res.exit_code == 2, (args, res.output)
        assert says in res.output and "Traceback" not in res.output
    assert not out.exists()
