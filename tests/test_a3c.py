"""A3C's recipe in the episodic learner: n-step bootstrapped returns with the recurrent state
carried across rollouts, RMSProp against torch's, its settings (bad ones refused, ids of earlier
runs unchanged), the observation encoder, the presets, and the report's learning measures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from fwbench.config import from_dict, resolve
from fwbench.envs.seeds import env_seeds
from fwbench.errors import FwbenchError
from fwbench.learners import a2c
from fwbench.learners.optim import RMSprop, clip_grad_norm
from fwbench.learners.rollout import TRAIN_STREAM, play
from fwbench.report.spec import ReportSpec
from fwbench.report.stats import held_fraction
from fwbench.runner import Execution, run_experiment

REPO = Path(__file__).parents[1]
TINY = {"N": 5, "M": 2, "hidden": 8, "n_envs": 4, "env_steps": 64, "eval_every": 32,
        "log_every": 16, "eval_episodes": 8}


def _agent(over=None):
    cfg = resolve("catch", "lstm", {**TINY, **(over or {})})
    return a2c.A2CLearner(cfg, None, torch.device("cpu"), progress=False).build()


def _play(task, agent, lengths: list[int], graph: bool = True):
    """Rollouts of the given lengths one after another from fresh games, seeded alike."""
    env = task.batched(env_seeds(0, TRAIN_STREAM, 4))
    obs, carry, ret = env.observe(), agent.initial(4, "cpu"), torch.zeros(4)
    gen = torch.Generator().manual_seed(0)
    rolls = []
    for T in lengths:
        roll = play(agent, task, env, obs, carry, ret, T, gen, graph)
        obs, carry, ret = roll.obs, roll.carry, roll.ep_return
        rolls.append(roll)
    return rolls


def test_rollouts_carry_the_recurrent_state_across_their_boundaries():
    task, agent = _agent()
    whole = _play(task, agent, [10])[0]
    parts = _play(task, agent, [3, 3, 4])  # boundaries inside episodes (4 steps each)
    torch.testing.assert_close(torch.cat([p.logits for p in parts]), whole.logits)
    assert torch.equal(torch.cat([p.actions for p in parts]), whole.actions)
    assert torch.equal(torch.cat([p.dones for p in parts]), whole.dones)
    replayed = _play(task, agent, [3, 3, 4], graph=False)  # the update's path: the same
    torch.testing.assert_close(torch.cat([p.policy(agent)[0] for p in replayed]), whole.logits)
    assert torch.equal(torch.cat([p.actions for p in replayed]), whole.actions)


def test_n_step_returns_bootstrap_from_the_value_of_the_next_observation():
    task, agent = _agent()
    roll = _play(task, agent, [3])[0]  # episodes last 4 steps: none ends in this rollout
    assert not roll.dones.any()
    with torch.no_grad():
        v_next = agent(roll.obs, roll.carry)[1]
    R = a2c.rollout_returns(agent, roll, gamma=0.9)
    torch.testing.assert_close(R[-1], roll.rewards[-1] + 0.9 * v_next)
    torch.testing.assert_close(R[0], roll.rewards[0] + 0.9 * roll.rewards[1]
                               + 0.81 * roll.rewards[2] + 0.729 * v_next)
    ends = _play(task, agent, [4])[0]  # every episode ends on the last step: no bootstrap
    torch.testing.assert_close(a2c.rollout_returns(agent, ends, 0.9)[-1], ends.rewards[-1])


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


@pytest.mark.parametrize("alpha, eps", [(0.99, 0.1), (0.9, 1e-8)])
def test_rmsprop_matches_torch_bit_for_bit_and_shares_its_state_format(alpha, eps):
    ref, fast = _net(), _net()
    ref_opt = torch.optim.RMSprop(ref.parameters(), lr=3e-3, alpha=alpha, eps=eps,
                                  foreach=False)
    fast_opt = RMSprop(fast.parameters(), lr=3e-3, alpha=alpha, eps=eps)
    for step in range(20):
        g = torch.Generator().manual_seed(step)
        x, target = torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g)
        for net, opt in ((ref, ref_opt), (fast, fast_opt)):
            opt.zero_grad(set_to_none=True)
            (((net(x) - target) ** 2).mean() * 50).backward()
            clip_grad_norm(list(net.parameters()), 1.0)
            opt.step()
    for a, b in zip(ref.parameters(), fast.parameters()):
        assert torch.equal(a, b)
    mine, theirs = fast_opt.state_dict(), ref_opt.state_dict()
    assert mine["param_groups"] == [{**g, "foreach": None} for g in theirs["param_groups"]]
    for i, s in theirs["state"].items():
        assert torch.equal(mine["state"][i]["square_avg"], s["square_avg"])
    again = RMSprop(_net().parameters())
    again.load_state_dict(theirs)  # a torch state continues here
    assert again.alpha == alpha and again.steps[0] == 20


def test_rmsprop_import_does_not_pull_in_dynamo():
    import subprocess
    import sys

    code = ("import sys, torch; from fwbench.learners.optim import RMSprop; "
            "p = torch.nn.Parameter(torch.ones(2)); o = RMSprop([p]); p.grad = torch.ones(2); "
            "o.step(); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_learner_steps_the_optimizer_its_settings_name():
    assert isinstance(resolve("catch", "irnn", {"optimizer": "rmsprop"}).learner_cfg
                      .make_optimizer([torch.nn.Parameter(torch.ones(1))]), RMSprop)
    assert not isinstance(resolve("catch", "irnn").learner_cfg
                          .make_optimizer([torch.nn.Parameter(torch.ones(1))]), RMSprop)


@pytest.mark.parametrize("over, says", [
    ({"optimizer": "sgd"}, "optimizer"), ({"optimizer": "rmsprop", "rms_alpha": 1.0}, "rms_alpha"),
    ({"optimizer": "rmsprop", "rms_alpha": -0.1}, "rms_alpha"),
    ({"optimizer": "rmsprop", "rms_eps": 0.0}, "rms_eps"),
    ({"rms_alpha": 0.9}, "optimizer = rmsprop only"), ({"obs_encoder": -1}, "obs_encoder")])
def test_bad_optimizer_settings_are_one_line_errors(over, says):
    with pytest.raises(FwbenchError, match=says):
        resolve("catch", "irnn", over)


def test_bad_rmsprop_setting_exits_2_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from fwbench.cli import app

    res = CliRunner().invoke(app, ["run", "--task", "catch", "--model", "irnn", "--results",
                                   str(tmp_path / "r"), "--set", "optimizer=rmsprop",
                                   "--set", "rms_eps=-1"])
    assert res.exit_code == 2 and "rms_eps" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_new_settings_at_their_defaults_keep_every_committed_run_id():
    committed = sorted((REPO / "evidence" / "runs").glob("*/config.json"))
    assert committed
    for path in committed:
        saved = json.loads(path.read_text())
        assert from_dict(saved["config"]).run_id == path.parent.name
    plain = resolve("catch", "irnn")
    assert "optimizer" not in plain.flat() and "obs_encoder" not in plain.flat()
    rms = resolve("catch", "irnn", {"optimizer": "rmsprop"})
    assert rms.flat()["optimizer"] == "rmsprop" and rms.run_id != plain.run_id
    assert resolve("catch", "irnn", {"optimizer": "adam"}).run_id == plain.run_id


def test_observation_encoder_is_shared_and_absent_by_default():
    _, plain = _agent()
    assert not hasattr(plain, "encoder")
    _, enc = _agent({"obs_encoder": 12})
    assert enc.encoder[0].in_features == 25 and enc.encoder[0].out_features == 12
    assert enc.core.input_size == 12 + 3  # features + previous action
    obs = torch.zeros(2, 5, 5)
    obs[0, 0, 1] = 1.0
    logits, value, _ = enc(obs, enc.initial(2, "cpu"))
    assert logits.shape == (2, 3) and value.shape == (2,)


def test_rmsprop_n_step_run_with_encoder_completes_and_resumes(tmp_path):
    over = {**TINY, "optimizer": "rmsprop", "rollout": 3, "obs_encoder": 6, "env_steps": 96}
    cfg = resolve("catch", "fastweights", over)
    out = run_experiment(cfg, Execution(results=tmp_path, device="cpu", progress=False))
    s = out.summary
    assert out.status == "completed" and s["updates"] == 8
    evals = pd.read_csv(out.path / "metrics.csv").query("split == 'eval' and metric == "
                                                        "'catch_rate'")["value"]
    assert s["mean_eval_catch_rate"] == pytest.approx(evals.mean())
    ckpt = torch.load(out.path / "checkpoint.pt", weights_only=True)
    assert "square_avg" in ckpt["optim"]["state"][0]  # RMSProp's state, saved for a resume


@pytest.mark.parametrize("name, N, M", [("catch_a3c", 24, 5), ("catch_a3c_n16", 16, 3)])
def test_a3c_presets_search_lr_alike_on_equal_budgets(name, N, M):
    from fwbench import presets
    from fwbench.sweep.protocol import protocol_cells

    preset = presets.load(name)
    cells = protocol_cells(preset)
    assert {c.model for c in cells} == {"irnn", "lstm", "fastweights"}
    for cell in cells:
        assert len(cell.points) == 4 and all(set(p) == {"lr"} for p in cell.points)
        for runs in cell.final:
            assert len(runs) >= 5
            for r in runs:
                c = r.cfg
                assert (c.task_cfg.N, c.task_cfg.M) == (N, M)
                E = N - 1  # steps per episode: the ball falls N - 1 rows
                # every rollout holds a whole episode, and cuts another: n-step returns
                assert c.learner_cfg.rollout >= 2 * E - 1 and c.learner_cfg.rollout % E
                assert c.learner_cfg.optimizer == "rmsprop"
                assert c.learner_cfg.rms_eps == 1e-5  # a mean loss's ε
                assert c.learner_cfg.env_steps == cells[0].final[0][0].cfg.learner_cfg.env_steps
    assert len(preset.claims) == 2
    assert presets.load("catch").settings["rollout"] == 0  # the old preset: whole episodes


def test_held_fraction_counts_points_after_the_first_crossing():
    curve = pd.DataFrame({"step": [0, 1, 2, 3, 4, 5], "value": [0.1, 0.95, 0.5, 0.92, 0.91, 0.3]})
    assert held_fraction(curve, 0.9, lower_better=False) == pytest.approx(3 / 5)
    assert math.isnan(held_fraction(curve, 0.99, lower_better=False))
    assert held_fraction(curve, 0.2, lower_better=True) == pytest.approx(1 / 6)


def test_report_area_and_held_per_cell():
    from fwbench.report.cells import learning_measures

    curves = {"a": [0.0, 0.5, 1.0, 1.0], "b": [0.0, 1.0, 0.0, 0.0], "c": [0.0, 0.0, 0.0, 0.0]}
    read = lambda rid, split, metric: pd.DataFrame({"step": range(4),  # noqa: E731
                                                    "value": curves[rid]})
    spec = ReportSpec(metric="eval_catch_rate", direction="higher", curves=("eval/catch_rate",),
                      threshold=0.9, area=True, held=True, bounds=(0, 1))
    out = learning_measures(pd.DataFrame({"run_id": ["a", "b", "c"]}), spec, read)
    assert out["area_mean"] == pytest.approx((0.625 + 0.25 + 0.0) / 3)
    assert 0.0 <= out["area_low"] < out["area_mean"] < out["area_high"] <= 1.0
    assert out["held"] == pytest.approx((1.0 + 1 / 3) / 2)  # c never reached 0.9
    with pytest.raises(FwbenchError, match="threshold"):
        ReportSpec(held=True)
