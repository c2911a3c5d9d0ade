"""The command line through typer's CliRunner: list, a tiny run, and every kind of bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fwbench.cli import app

runner = CliRunner()
TINY = ["--n_train", "256", "--n_valid", "64", "--n_test", "64", "--embed", "8",
        "--readout", "8", "--max-steps", "6", "--eval-every", "3", "--batch_size", "32"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_list_shows_every_task_and_model_with_settings():
    from fwbench.models import MODELS
    from fwbench.tasks import TASKS

    out = _invoke("list")
    assert out.exit_code == 0, out.output
    for name in TASKS.names() + MODELS.names():
        assert name in out.output
    for setting in ("lam", "eta", "0.95", "copies", "n_train", "patience"):
        assert setting in out.output
    assert _invoke("list", "models", "--brief").exit_code == 0


def test_tiny_run_then_reported_as_finished(tmp_path):
    args = ["run", "--task", "retrieval", "--model", "fastweights", "--hidden", "8",
            "--results", tmp_path, "--quiet", "--device", "cpu", *TINY]
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    assert "test error" in first.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    second = _invoke(*args)
    assert second.exit_code == 0 and "already finished" in second.output


def test_set_and_equals_forms_are_the_same_run(tmp_path):
    a = _invoke("run", "--model", "irnn", "--set", "hidden=8", "--results", tmp_path, "--quiet",
                *TINY)
    b = _invoke("run", "--model", "irnn", "--hidden=8", "--results", tmp_path, "--quiet", *TINY)
    assert a.exit_code == 0 and b.exit_code == 0
    assert "already finished" in b.output
    assert len(list((tmp_path / "runs").iterdir())) == 1


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "unknown task 'nope'; choose one of: retrieval"),
    (["--model", "nope"], "unknown model 'nope'; choose one of: irnn"),
    (["--bogus", "1"], "unknown setting 'bogus'"),
    (["--hidden", "0"], "invalid value 0 for hidden: expected integer >= 1"),
    (["--lam", "1.5"], "invalid value 1.5 for lam: expected number in [0.0, 1.0]"),
    (["--lam", "-0.1"], "for lam: expected number in [0.0, 1.0]"),
    (["--eta", "-1"], "invalid value -1.0 for eta: expected number >= 0.0"),
    (["--S", "0"], "invalid value 0 for S: expected integer >= 1"),
    (["--K", "27"], "invalid value 27 for K: expected an integer in [queries=1, n_keys=26]"),
    (["--K", "0"], "invalid value 0 for K"),
    (["--hidden", "abc"], "invalid value 'abc' for hidden: expected integer"),
    (["--lam", "nan"], "invalid value 'nan' for lam"),
    (["--layernorm", "maybe"], "expected boolean"),
    (["--impl", "magic"], "expected one of auto"),
    (["--model", "alstm", "--hidden", "7"], "even number"),
    (["--set", "lam"], "expected NAME=VALUE"),
    (["--lam"], "needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--device", "tpu"], "invalid device 'tpu'"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    out = _invoke("run", "--results", tmp_path, "--quiet", *args)
    assert out.exit_code == 2, out.output
    assert message in " ".join(out.output.split())
    assert "Traceback" not in out.output
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing written


def test_unwritable_results_directory(tmp_path):
    (tmp_path / "file").write_text("precious")
    out = _invoke("run", "--results", tmp_path / "file" / "sub", "--quiet", *TINY)
    assert out.exit_code == 2 and "not writable" in out.output
    assert (tmp_path / "file").read_text() == "precious"


def test_corrupted_run_directory(tmp_path):
    args = ["run", "--model", "irnn", "--hidden", "8", "--results", tmp_path, "--quiet", *TINY]
    assert _invoke(*args).exit_code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    (run_dir / "summary.json").write_text("{broken")
    out = _invoke(*args)
    assert out.exit_code == 2 and "corrupted" in out.output and "--force" in out.output
    assert (run_dir / "summary.json").read_text() == "{broken"


def test_divergence_exits_3(tmp_path):
    out = _invoke("run", "--model", "irnn", "--hidden", "8", "--lr", "1e9", "--clip", "0",
                  "--w_scale", "3", "--results", tmp_path, "--quiet", *TINY)
    assert out.exit_code == 3, out.output
    assert "diverged at step" in out.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"


def test_main_module_entry_point():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fwbench", "run", "--K", "99"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "invalid value 99 for K" in out.stderr and "Traceback" not in out.stderr


def test_an_abort_ends_with_exit_1_and_no_traceback():
    """click's Abort (Ctrl-C at a prompt; rich's on a closed pipe, `fwbench run --help | head`)
    is caught by name from typer, which keeps it outside its vendored click."""
    import typer

    from fwbench.cli import _one_line_usage

    def abort():
        raise typer.Abort()

    with pytest.raises(SystemExit) as e:
        _one_line_usage(abort)
    assert e.value.code == 1
