"""Models and tasks from another package: entry points of an installed distribution (here a
package and its .dist-info written into a directory on the path) and `module:Class` names.
The registry-driven contract checks run on them; bad plugins are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import test_models as model_contract  # the registry-driven checks, run here on the plugin
import test_tasks as task_contract
from fwbench.cli import app
from fwbench.models import MODELS
from fwbench.tasks import TASKS

CORE = '''
"""A plugin model: a tanh RNN, h(t) = tanh(W h(t-1) + C x(t))."""
import dataclasses
import torch
from torch import nn
from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class TinyConfig(CoreConfig):
    gain: float = setting(1.0, "scale of the initial recurrent weights", low=0.0)


class TinyCore(RecurrentCore):
    Config = TinyConfig
    summary = "a plugin tanh RNN"

    def __init__(self, input_size, cfg):
        super().__init__(input_size, cfg)
        self.C = nn.Linear(input_size, cfg.hidden)
        self.W = nn.Linear(cfg.hidden, cfg.hidden, bias=False)

    def initial_state(self, batch, device=None):
        return self.zeros(batch, self.cfg.hidden, device=device)

    def step(self, x, state):
        h = torch.tanh(self.W(state) + self.C(x))
        return h, h


class NoStep(RecurrentCore):
    summary = "breaks the contract: no step"


class NotAModel:
    pass
'''

TASK = '''
"""A plugin task: associative retrieval with two pairs per string.

>>> ShortRetrieval(ShortConfig()).generate(1, seed=(0, 0))[0].shape
torch.Size([1, 7])
"""
import dataclasses
from fwbench.settings import setting
from fwbench.tasks.retrieval import Retrieval, RetrievalConfig


@dataclasses.dataclass(frozen=True)
class ShortConfig(RetrievalConfig):
    K: int = setting(2, "key-value pairs per string", low=1)
    n_train: int = setting(256, "training strings", low=1)
    n_valid: int = setting(64, "validation strings", low=1)
    n_test: int = setting(64, "test strings", low=1)
    embed: int = setting(8, "token embedding size", low=1)


class ShortRetrieval(Retrieval):
    Config = ShortConfig
    summary = "associative retrieval with two pairs"
'''


def _distribution(root: Path, name: str, entry_points: str) -> Path:
    """A package `fwplug` and an installed distribution `name` declaring `entry_points`."""
    pkg = root / "fwplug"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text(CORE)
    (pkg / "task.py").write_text(TASK)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


GOOD = """
    [fwbench.models]
    tiny-rnn = fwplug.core:TinyCore
    [fwbench.tasks]
    short-retrieval = fwplug.task:ShortRetrieval
"""
BAD = """
    [fwbench.models]
    no-step = fwplug.core:NoStep
    not-a-model = fwplug.core:NotAModel
    gone = fwplug.nowhere:Gone
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Put a plugin distribution on the path and make the registries read entry points anew."""
    def install(entry_points: str) -> Path:
        root = _distribution(tmp_path / "site", "fwplug", entry_points)
        monkeypatch.syspath_prepend(str(root))
        for reg in (MODELS, TASKS):
            monkeypatch.setattr(reg, "_found", None)
        for mod in [m for m in sys.modules if m.split(".")[0] == "fwplug"]:
            monkeypatch.delitem(sys.modules, mod)  # this test's copy, not an earlier one
        return root
    return install


def test_entry_point_plugins_pass_the_registry_contract_checks(installed, tmp_path):
    installed(GOOD)
    assert "tiny-rnn" in MODELS.names() and "short-retrieval" in TASKS.names()
    for check in ("test_shapes_and_state_size", "test_causal", "test_deterministic_under_seed",
                  "test_forward_matches_step_loop_values_and_gradients",
                  "test_carried_state_continues_the_sequence", "test_mask_state_resets_rows"):
        getattr(model_contract, check)("tiny-rnn")
    task_contract.check_contract("short-retrieval")
    task_contract.check_worked_example("short-retrieval")
    task_contract.check_determinism("short-retrieval", tmp_path)


@pytest.mark.parametrize("model, said", [
    ("no-step", "'fwplug.core:NoStep' is a recurrent core without initial_state and step"),
    ("not-a-model", "'fwplug.core:NotAModel' is not a model"),
    ("gone", "'fwplug.nowhere:Gone' cannot be loaded: ModuleNotFoundError"),
    ("fwplug.core:Missing", "cannot be loaded: AttributeError"),
    ("nopkg.mod:Core", "'nopkg.mod:Core' cannot be loaded: ModuleNotFoundError"),
])
def test_a_bad_plugin_is_one_line_and_touches_nothing(installed, tmp_path, model, said):
    installed(BAD)
    res = CliRunner().invoke(app, ["run", "--model", model, "--results", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert said in res.output and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-rnn", "fwplug.core:TinyCore"])
def test_a_plugin_model_and_task_run_end_to_end(tmp_path, model):
    root = _distribution(tmp_path / "site", "fwplug", GOOD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    args = ["run", "--task", "short-retrieval", "--model", model, "--hidden", "8", "--gain",
            "0.5", "--readout", "8", "--max-steps", "6", "--eval-every", "3", "--batch_size",
            "32", "--results", str(tmp_path / "r"), "--device", "cpu", "--quiet"]
    done = subprocess.run([sys.executable, "-m", "fwbench", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    (run_dir,) = (tmp_path / "r" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"] == model
    assert config["config"]["model_settings"]["gain"] == 0.5
