"""The multi-level glimpse model: the marks the tasks emit, what the models keep and set aside
at a level change, parity of the fast path with the step loop, runs end to end, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.config import from_dict, resolve
from fwbench.data import mnist
from fwbench.data.idx import write_idx
from fwbench.errors import FwbenchError
from fwbench.models import MODELS
from fwbench.models.base import DOWN, UP, RecurrentCore
from fwbench.network import build_classifier, build_model, build_task
from fwbench.tasks.glimpses import Glimpse, level_marks, scheme
from trust_harness import tree_digest

REPO = Path(__file__).resolve().parent.parent
QUADRANT = (0, DOWN, 0, 0, 0, UP)
MARKS = QUADRANT * 4
RECURRENT = [n for n in MODELS.names() if issubclass(MODELS.get(n), RecurrentCore)]
TOL = {"rtol": 1e-9, "atol": 1e-10}  # float64: the two paths differ by rounding alone


def _model(name: str, hidden: int = 8, **over) -> RecurrentCore:
    torch.manual_seed(0)
    cfg = resolve("mnist", name, {"hidden": hidden, "levels": "multilevel", **over})
    return build_model(cfg, 67).double()


def test_quadrants_marks_every_fine_run():
    assert level_marks(scheme("quadrants", 28)) == MARKS
    assert level_marks(scheme("quadrants", 48)) == MARKS  # faces: the same order at 48 x 48
    assert build_task(resolve("faces", "lstm", {"levels": "multilevel"})).marks() == MARKS
    assert build_task(resolve("mnist", "lstm")).marks() is None  # flat: no marks


@pytest.mark.parametrize("glimpses, message", [
    ("fine", "two levels or more"), ("pyramid", "starts and ends at its coarsest level")])
def test_schemes_without_a_way_back_up_are_refused(glimpses, message):
    for task in ("mnist", "faces"):
        with pytest.raises(FwbenchError, match=message):
            resolve(task, "lstm", {"glimpses": glimpses, "levels": "multilevel"})
        resolve(task, "lstm", {"glimpses": glimpses})  # flat reads every scheme


def test_a_level_jump_of_two_is_refused():
    with pytest.raises(FwbenchError, match="one step at a time"):
        level_marks([Glimpse(lv, 0, 0) for lv in (2, 0, 2)])


@pytest.mark.parametrize("name", RECURRENT)
def test_fast_path_matches_the_step_loop_values_and_gradients(name):
    model = _model(name)
    x = (0.5 * torch.randn(3, 24, 67, dtype=torch.double)).requires_grad_()
    y = model.forward_levels(x, MARKS)
    y_ref = model.forward_levels_reference(x, MARKS)
    torch.testing.assert_close(y, y_ref, **TOL)
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), [x, *model.parameters()])
    grads_ref = torch.autograd.grad((y_ref * w).sum(), [x, *model.parameters()])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **TOL)


@pytest.mark.parametrize("impl", ["reference", "memory", "chunked", "fused"])
def test_fast_weights_cut_at_the_marks_in_every_implementation(impl):
    """The generic path (`forward` between marks, state carried) through each implementation
    agrees with the step loop too: fast weights override it with the memory view."""
    model = _model("fastweights", impl=impl)
    x = (0.5 * torch.randn(2, 24, 67, dtype=torch.double)).requires_grad_()
    y = RecurrentCore.forward_levels(model, x, MARKS)
    y_ref = model.forward_levels_reference(x, MARKS)
    torch.testing.assert_close(y, y_ref, **TOL)
    g, = torch.autograd.grad(y[:, -1].sum(), x)
    g_ref, = torch.autograd.grad(y_ref[:, -1].sum(), x)
    torch.testing.assert_close(g, g_ref, **TOL)


def _fine_changed(x: torch.Tensor) -> torch.Tensor:
    """x with the fine glimpses of the last quadrant replaced."""
    x2 = x.clone()
    x2[:, 19:23] = torch.randn_like(x2[:, 19:23])
    return x2


def test_fast_weights_reset_h_keep_a_and_restore_h():
    model = _model("fastweights")
    x = torch.randn(2, 24, 67, dtype=torch.double)
    state, aside = model.initial_state(2), []
    for t in range(7):  # the first quadrant and the next coarse glimpse
        before = state
        state = model.change_level(MARKS[t], state, aside) if MARKS[t] else state
        if MARKS[t] == DOWN:
            assert torch.count_nonzero(state[0]) == 0 and torch.equal(state[1], before[1])
            kept = before[0]
        if MARKS[t] == UP:  # h as it was before the fine run; A grown by the fine glimpses
            assert torch.equal(state[0], kept) and torch.equal(state[1], before[1])
        _, state = model.step(x[:, t], state)
    assert aside == []
    # the fine glimpses reach the coarse level through A alone
    y, y2 = (model.forward_levels(v, MARKS)[:, -1] for v in (x, _fine_changed(x)))
    assert not torch.allclose(y, y2)


def test_without_memory_the_fine_level_leaves_no_trace():
    """The IRNN has no memory apart from h: its coarse level never sees the fine glimpses, and
    its first fine step does not see the coarse one; flat, it sees both."""
    model = _model("irnn")
    x = torch.randn(2, 24, 67, dtype=torch.double)
    y, y2 = (model.forward_levels(v, MARKS) for v in (x, _fine_changed(x)))
    torch.testing.assert_close(y[:, -1], y2[:, -1], rtol=0, atol=0)
    flat, flat2 = model(x)[0], model(_fine_changed(x))[0]
    assert not torch.allclose(flat[:, -1], flat2[:, -1])
    x3 = x.clone()
    x3[:, 18] += 1.0  # the last quadrant's coarse glimpse, just before its fine run
    torch.testing.assert_close(model.forward_levels(x3, MARKS)[:, 19], y[:, 19], rtol=0, atol=0)


def test_models_that_do_not_say_what_is_memory_are_refused():
    class Plain(RecurrentCore):
        def initial_state(self, batch, device=None):
            return self.zeros(batch, self.cfg.hidden, device=device)

        def step(self, x, h):
            return h, h

    model = Plain(4, MODELS.get("gru").Config(hidden=3))
    model.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    with pytest.raises(FwbenchError, match="cannot take level marks"):
        model.forward_levels(torch.zeros(1, 6, 4), QUADRANT)
    task = build_task(resolve("mnist", "lstm", {"levels": "multilevel"}))
    with pytest.raises(FwbenchError, match="cannot take levels=multilevel"):
        type(task).check_model(task.cfg, Plain)


def test_added_settings_keep_every_committed_run_id():
    """`levels` and `encoder_units` at their defaults are left out of the config, so the runs
    recorded before them keep their ids; set, they make another experiment."""
    flat = resolve("mnist", "fastweights")
    assert flat.run_id == resolve("mnist", "fastweights",
                                  {"levels": "flat", "encoder_units": 0}).run_id
    assert "levels" not in flat.to_dict()["task_settings"]
    multi = resolve("mnist", "fastweights", {"levels": "multilevel"})
    assert multi.run_id != flat.run_id
    assert multi.to_dict()["task_settings"]["levels"] == "multilevel"
    assert from_dict(multi.to_dict()).run_id == multi.run_id
    runs = sorted((REPO / "evidence" / "runs").glob("*-*-h*-*"))
    images = [r for r in runs if r.name.startswith(("mnist-", "faces-"))]
    assert images
    for run in images:
        saved = json.loads((run / "config.json").read_text())
        assert from_dict(saved["config"]).run_id == run.name


def test_the_glimpse_encoder_is_a_relu_layer_the_same_for_every_model():
    for name in ("irnn", "lstm", "fastweights"):
        cfg = resolve("mnist", name, {"hidden": 8, "encoder_units": 16})
        net = build_classifier(cfg, build_task(cfg))
        layers = list(net.encoder)
        assert isinstance(layers[1], torch.nn.Linear) and layers[1].out_features == 16
        assert isinstance(layers[2], torch.nn.ReLU) and net.model.input_size == 16
        z = net.encoder(torch.rand(2, 1, 28, 28))
        assert z.shape == (2, 24, 16) and z.min() >= 0


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """A small MNIST look-alike: 5,040 training and 8 test images, a stroke per class."""
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    labels = (np.arange(5_040) % 10).astype(np.uint8)
    x = rng.integers(0, 30, (5_040, 28, 28), dtype=np.uint8)
    x[np.arange(5_040), 2 * labels + 2, 5:20] = 255
    arrays = {"x_train": x, "y_train": labels,
              "x_test": x[:8].copy(), "y_test": labels[:8].copy()}
    for key, (name, _) in mnist.IDX_FILES.items():
        write_idx(d / name, arrays[key])
    return d


TINY = ["--n_train", "32", "--n_valid", "8", "--n_test", "8", "--hidden", "8", "--readout", "8",
        "--max_steps", "2", "--eval_every", "2", "--batch_size", "8", "--threads", "1", "--quiet"]


@pytest.mark.parametrize("model", ["fastweights", "lstm", "irnn"])
def test_a_multilevel_run_end_to_end(idx_dir, tmp_path, model):
    args = ["run", "--task", "mnist", "--model", model, "--levels", "multilevel",
            "--encoder_units", "16", "--data_dir", str(idx_dir), "--results", str(tmp_path),
            *TINY]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    run, = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["flat"]["levels"] == "multilevel" and config["flat"]["encoder_units"] == 16
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert 0 <= summary["test_error"] <= 1


@pytest.mark.parametrize("args, message", [
    (["--task", "mnist", "--model", "lstm", "--levels", "multilevel", "--glimpses", "fine"],
     "two levels or more"),
    (["--task", "faces", "--model", "lstm", "--levels", "multilevel", "--glimpses", "pyramid"],
     "starts and ends at its coarsest level"),
    (["--task", "mnist", "--model", "convnet", "--levels", "multilevel"], "reads whole images"),
    (["--task", "mnist", "--model", "lstm", "--levels", "deep"], "expected one of flat"),
    (["--task", "retrieval", "--model", "lstm", "--levels", "multilevel"],
     "unknown setting 'levels'"),
    (["--task", "catch", "--model", "lstm", "--levels", "multilevel"], "unknown setting 'levels'"),
    (["--task", "mnist", "--model", "lstm", "--encoder_units", "-1"], "expected integer in"),
])
def test_bad_input_one_line_exit_2_nothing_touched(tmp_path, args, message):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep").write_text("precious")
    before = tree_digest(tmp_path)
    out = CliRunner().invoke(app, ["run", *args, "--results", str(tmp_path / "results"),
                                   "--quiet"])
    assert out.exit_code == 2, (out.output, out.exception)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert tree_digest(tmp_path) == before


def test_the_glimpse_module_worked_examples():
    import doctest

    from fwbench.tasks import glimpses

    result = doctest.testmod(glimpses)
    assert result.attempted >= 2 and result.failed == 0
