"""`fwbench run --task catch`: bad settings are one-line errors with exit code 2, nothing
written; a tiny run writes its record."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fwbench.config import resolve
from fwbench.errors import FwbenchError


@pytest.mark.parametrize("over, message", [
    ({"N": 8, "M": 9}, "invalid M 9"),
    ({"N": 2, "M": 1}, "invalid value 2 for N"),
    ({"N": 6, "M": 2, "paddle": 7}, "cannot be wider than the screen"),
    ({"motion": "zigzag"}, "invalid value 'zigzag' for motion"),
    ({"n_envs": 0}, "invalid value 0 for n_envs"),
    ({"hidden": 8, "lam": 0.9}, "unknown setting 'lam'"),
])
def test_bad_settings_are_clear_errors(over, message):
    with pytest.raises(FwbenchError, match=message):
        resolve("catch", "irnn", over)


def _cli(*args, tmp_path):
    cmd = [sys.executable, "-m", "fwbench", "run", "--task", "catch", "--quiet", "--threads", "1",
           "--device", "cpu", "--results", str(tmp_path / "results"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_refuses_M_greater_than_N_and_writes_nothing(tmp_path):
    proc = _cli("--model", "fastweights", "--N", "16", "--M", "17", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: invalid M 17: an episode has N = 16 frames, so the visible frames M must be 1 "
        "to 16"]
    assert not (tmp_path / "results").exists()


def test_cli_runs_fast_weights_on_catch(tmp_path):
    proc = _cli("--model", "fastweights", "--N", "5", "--M", "2", "--hidden", "8", "--n_envs",
                "4", "--env_steps", "32", "--eval_every", "16", "--eval_episodes", "8",
                tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "run record:" in proc.stdout and "steps 32" in proc.stdout
    runs = list((tmp_path / "results" / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("catch-fastweights-h8-")
    assert (runs[0] / "summary.json").exists() and (runs[0] / "checkpoint.pt").exists()
