"""`fwbench report --bench`: the bench result sets' tables and figures in one report."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from fwbench.cli import app

SAMPLE = Path(__file__).resolve().parent.parent / "evidence" / "bench" / "cpu-T11-run1"


def test_bench_report_gathers_tables_and_figures(tmp_path):
    dest = tmp_path / "results" / "bench" / "cpu-sample"
    dest.mkdir(parents=True)
    for name in ("bench.csv", "bench.md"):
        shutil.copy(SAMPLE / name, dest / name)
    out = CliRunner().invoke(app, ["report", "--bench", "--results", str(tmp_path / "results")])
    assert out.exit_code == 0, out.output
    report = tmp_path / "results" / "report" / "bench" / "report.md"
    text = report.read_text()
    assert "## cpu-sample" in text and "| fastweights |" in text
    (png,) = (report.parent / "cpu-sample").glob("*.png")
    assert png.stat().st_size > 1000 and f"]({png.relative_to(report.parent)})" in text


def test_bench_report_without_results_is_an_error(tmp_path):
    out = CliRunner().invoke(app, ["report", "--bench", "--results", str(tmp_path)])
    assert out.exit_code == 2 and "no bench results" in out.output


def test_an_environment_bench_is_reported_as_its_table(tmp_path):
    """`fwbench bench --env` sets (environment steps/s) sit beside model sets: table only."""
    root = tmp_path / "results"
    env = root / "bench" / "cpu-catch"
    env.mkdir(parents=True)
    out = CliRunner().invoke(app, ["bench", "--env", "catch:N=4:M=2", "--models", "irnn",
                                   "--hidden", "4", "--batch", "2", "--repeats", "2",
                                   "--warmup", "0", "--quiet", "--out", str(env)])
    assert out.exit_code == 0, out.output
    model = root / "bench" / "cpu-sample"
    model.mkdir()
    for name in ("bench.csv", "bench.md"):
        shutil.copy(SAMPLE / name, model / name)
    out = CliRunner().invoke(app, ["report", "--bench", "--results", str(root)])
    assert out.exit_code == 0, out.output
    report = root / "report" / "bench" / "report.md"
    text = report.read_text()
    assert "## cpu-catch" in text and "| 4 | 2 | 2 | a2c-replay:irnn | 4 |" in text
    assert "## cpu-sample" in text and list((report.parent / "cpu-sample").glob("*.png"))
    assert not (report.parent / "cpu-catch").exists()
