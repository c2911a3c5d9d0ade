"""One command line: flags without values, --version and -h, one spelling per concept, each
variant's own description, results in pandas, and a full disk reported in one line."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

import fwbench
from fwbench.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_version_and_short_help():
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.strip() == f"fwbench {fwbench.__version__}"
    for args in (["-h"], ["run", "-h"], ["sweep", "-h"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0 and "Usage: fwbench" in out.stdout


def test_help_shows_no_value_for_flags():
    for cmd in ("run", "sweep", "bench", "report", "list"):
        out = runner.invoke(app, [cmd, "--help"], terminal_width=200)
        assert out.exit_code == 0 and "<bool>" not in out.stdout, cmd


def test_options_take_either_spelling_and_flags_no_value(tmp_path):
    for flag in ("--dry-run", "--dry_run"):
        out = runner.invoke(app, ["sweep", flag, "--results", str(tmp_path), "--grid",
                                  "hidden=8,16"])
        assert out.exit_code == 0 and "2 runs" in out.stdout, out.output
    assert not (tmp_path / "runs").exists()


def test_same_value_twice_is_accepted(tmp_path):
    out = runner.invoke(app, ["sweep", "--dry-run", "--results", str(tmp_path), "--hidden", "8",
                              "--set", "hidden=8"])
    assert out.exit_code == 0 and "-h8-" in out.stdout


def test_usage_error_is_one_line():
    out = runner.invoke(app, ["report", "--zzz"])
    assert out.exit_code == 2
    assert out.stderr.strip().splitlines() == [
        "error: No such option: --zzz (see: fwbench report --help)"]


def test_list_shows_each_variant_its_own_settings():
    out = runner.invoke(app, ["list", "models", "--brief"], terminal_width=300)
    assert "fastweights-eta0" in out.stdout
    assert "[eta=0.0]" in out.stdout and "[layernorm=True]" in out.stdout
    assert "[feature_map=dpfp, dpfp_nu=2, qk_norm=sum]" in out.stdout


def test_full_disk_is_one_line_exit_2(tmp_path, monkeypatch, tiny):
    from fwbench.records import RunRecord

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.metrics_path))

    monkeypatch.setattr(RunRecord, "append_metrics", full)
    out = runner.invoke(app, ["run", "--model", "irnn", "--hidden", "8", "--results",
                              str(tmp_path), "--quiet",
                              *(f"--{k}={v}" for k, v in tiny.items())])
    assert out.exit_code == 2, out.output
    (line,) = out.stderr.strip().splitlines()
    assert "No space left on device; free some space or choose another --results" in line
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "summary.json").exists() or json.loads(
        (run_dir / "summary.json").read_text())["status"] != "completed"


def test_load_runs_summary_and_metrics(tmp_path):
    runs = sorted((REPO / "evidence" / "runs").glob("retrieval-irnn-h20-*"))[:2]
    for run in runs:
        shutil.copytree(run, tmp_path / "runs" / run.name)
    shutil.copytree(runs[0], tmp_path / "runs" / "unfinished")
    (tmp_path / "runs" / "unfinished" / "summary.json").unlink()
    summary = fwbench.load_runs(tmp_path)
    assert sorted(summary["run_id"]) == [r.name for r in runs]
    assert {"model", "hidden", "lr", "test_error", "status"} <= set(summary.columns)
    assert (summary["model"] == "irnn").all() and (summary["hidden"] == 20).all()
    again, long = fwbench.load_runs(tmp_path, metrics=True)
    assert again.equals(summary)
    assert list(long.columns[:5]) == ["run_id", "step", "split", "metric", "value"]
    first = long[long["run_id"] == runs[0].name]
    assert len(first) == len((runs[0] / "metrics.csv").read_text().splitlines()) - 1
