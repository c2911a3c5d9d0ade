"""The capacity, length-generalisation and ablation presets: every point resolves, and the
capacity preset's models carry matched state."""

from __future__ import annotations

import pytest
import torch

from fwbench.models import MODELS
from fwbench.presets import load
from fwbench.sweep.grid import build_runs, make_spec


def _runs(preset, sweep=None):
    settings, grid = preset.sweep(sweep)
    return build_runs(make_spec(settings, grid, None, preset.seeds))


@pytest.mark.parametrize("name", ["capacity", "lengthgen", "ablations"])
def test_every_point_of_every_grid_resolves(name):
    preset = load(name)
    assert preset.task == "retrieval"
    for sweep in [None, *preset.sweeps]:
        assert _runs(preset, sweep)


def test_capacity_models_have_matched_state():
    preset = load("capacity")
    sizes, models = {}, {}
    for sweep in [None, *preset.sweeps]:
        for run in _runs(preset, sweep):
            cfg = run.cfg
            key = (cfg.model, sweep)  # the model does not depend on K: build it once
            if key not in models:
                models[key] = MODELS.get(cfg.model)(cfg.task_cfg.embed, cfg.model_cfg)
            T = 2 * cfg.task_cfg.K + 2 + cfg.task_cfg.queries
            sizes[(*key, cfg.task_cfg.K)] = models[key].state_size(T)
    bounded = {k: v for k, v in sizes.items() if k[0] != "attention"}
    # two families of sweeps, each matched within itself: the main grid's (about 1.3k floats)
    # and the CPU-sized `state400*` sweeps'
    for family in (lambda s: not (s or "").startswith("state400"),
                   lambda s: (s or "").startswith("state400")):
        same = {k: v for k, v in bounded.items() if family(k[1])}
        assert len({k[0] for k in same}) == 11  # every bounded-memory model is there
        # within 30%: the DPFP runs carry the same memory with a smaller q, k buffer
        assert max(same.values()) <= 1.3 * min(same.values())
    assert min(v for k, v in bounded.items() if k[1] is None) > 3 * max(
        v for k, v in bounded.items() if k[1] == "state400")
    assert sizes[("attention", None, 256)] > 20 * max(bounded.values())  # the unbounded one


def test_lengthgen_trains_at_4_and_tests_up_to_16():
    for run in _runs(load("lengthgen")):
        task = run.cfg.task_cfg
        assert task.K == 4 and min(task.eval_K) == 2 and max(task.eval_K) == 16


def test_ablation_models_differ_from_fastweights_only_in_their_part():
    base = {r.cfg.model: r.cfg.model_cfg for r in _runs(load("ablations"))
            if r.cfg.model_cfg.hidden == 20}
    plain = base["fastweights"]
    assert (plain.eta, plain.layernorm, plain.stop_grad) == (0.5, True, False)
    for name, field, value in [("fastweights-eta0", "eta", 0.0),
                               ("fastweights-noln", "layernorm", False),
                               ("fastweights-stopgrad", "stop_grad", True)]:
        cfg = base[name]
        assert getattr(cfg, field) == value
        assert {k: v for k, v in vars(cfg).items() if k != field} == \
            {k: v for k, v in vars(plain).items() if k != field}
    assert base["irnn-ln"].layernorm is True
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4)
    eta0 = MODELS.get("fastweights-eta0")(4, base["fastweights-eta0"])
    _, (_, A) = eta0(x)
    assert torch.equal(A, torch.zeros_like(A))  # η = 0: no memory at all
