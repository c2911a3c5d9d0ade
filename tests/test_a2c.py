"""The A2C learner: returns, loss, carried state, every recurrent model as an agent, records,
resume, divergence, and a small board actually learned."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from fwbench.config import resolve
from fwbench.envs.seeds import env_seeds
from fwbench.learners import a2c, rollout
from fwbench.models import MODELS
from fwbench.records import RunRecord
from fwbench.runner import Execution, run_experiment

SEQUENCE = [e.name for e in MODELS if e.load().consumes == "sequence"]
# N = 5: episodes of 4 steps, so 4 games make 16 environment steps per update
TINY = {"N": 5, "M": 2, "hidden": 8, "n_envs": 4, "env_steps": 64, "eval_every": 32,
        "log_every": 16, "eval_episodes": 8}


def _run(cfg, results):
    return run_experiment(cfg, Execution(results=results, device="cpu", progress=False))


def _values(record: RunRecord):
    return [(r["step"], r["split"], r["metric"], r["value"]) for r in record.read_metrics()]


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0]])  # [T=3, B=2]
    dones = torch.tensor([[False, False], [True, False], [False, True]])
    R = a2c.discounted_returns(rewards, dones, torch.tensor([10.0, 10.0]), gamma=0.5)
    # game 0: ends at t=1 (1, then 0.5 before it); t=2 starts a new episode, bootstrapped: 0.5 * 10
    # game 1: ends at t=2 with -1, so the bootstrap is never used
    torch.testing.assert_close(R, torch.tensor([[0.5, -0.25], [1.0, -0.5], [5.0, -1.0]]))


def test_loss_pushes_up_advantageous_actions_only():
    logits = torch.zeros(1, 2, 3, requires_grad=True)  # [T=1, B=2, A=3]
    values = torch.tensor([[0.0, 0.0]], requires_grad=True)
    cfg = a2c.A2CConfig(entropy_coef=0.0)
    loss, parts = a2c.a2c_loss(logits, values, torch.tensor([[0, 2]]),
                               torch.tensor([[1.0, -1.0]]), cfg)
    loss.backward()
    g = logits.grad[0]
    assert g[0, 0] < 0 and g[1, 2] > 0  # descent raises action 0 in game 0, lowers 2 in game 1
    assert parts["value_loss"] == pytest.approx(0.5) and parts["entropy"] == pytest.approx(
        torch.log(torch.tensor(3.0)).item())
    # d/dV of value_coef * 0.5 * mean((R - V)^2) = 0.5 * (V - R) / 2 games
    torch.testing.assert_close(values.grad, torch.tensor([[-0.25, 0.25]]))


def test_agent_input_carries_previous_action_and_resets_at_episode_end():
    cfg = resolve("catch", "lstm", TINY)
    learner = a2c.A2CLearner(cfg, None, torch.device("cpu"), progress=False)
    task, agent = learner.build()
    carry = agent.initial(3, "cpu")
    obs = torch.rand(3, 5, 5)
    _, _, state = agent(obs, carry)
    action, done = torch.tensor([0, 2, 1]), torch.tensor([False, True, False])
    state2, prev = agent.next_carry(state, action, done)
    assert prev.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    for s_new, s_old in zip(state2, state):
        assert torch.equal(s_new[1], torch.zeros_like(s_new[1]))  # the finished game restarts
        assert torch.equal(s_new[[0, 2]], s_old[[0, 2]])
    fresh = agent(obs[1:2], agent.initial(1, "cpu"))[0]
    torch.testing.assert_close(agent(obs, (state2, prev))[0][1:2], fresh)


@pytest.mark.parametrize("model", SEQUENCE)
def test_every_recurrent_model_trains_as_an_agent(model, tmp_path):
    cfg = resolve("catch", model, TINY)
    out = _run(cfg, tmp_path)
    assert out.status == "completed"
    s = out.summary
    assert s["env_steps"] == 64 and s["updates"] == 4 and s["episodes"] == 16
    assert 0.0 <= s["eval_catch_rate"] <= 1.0 and s["state_size"] > 0
    assert 0 < s["train_cpu_s"] and 0 < s["train_wall_s"]  # the process's CPU time, recorded
    rows = RunRecord(out.path).read_metrics()
    evals = [int(r["step"]) for r in rows if (r["split"], r["metric"]) == ("eval", "catch_rate")]
    assert evals == [0, 32, 64]
    train = {r["metric"] for r in rows if r["split"] == "train"}
    assert {"return", "catch_rate", "loss", "entropy", "value_loss"} <= train
    before = a2c.A2CLearner(cfg, None, torch.device("cpu")).build()[1].state_dict()
    after = torch.load(out.path / "checkpoint.pt", weights_only=False)["agent"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it learned something


def test_n_step_rollouts_cross_episode_boundaries(tmp_path):
    cfg = resolve("catch", "fastweights", {**TINY, "rollout": 3, "env_steps": 60})
    out = _run(cfg, tmp_path)
    assert out.status == "completed" and out.summary["updates"] == 5
    assert out.summary["episodes"] == 4 * (15 // 4)  # 15 steps per game: 3 whole episodes


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    cfg = resolve("catch", "irnn", TINY)
    a, b = _run(cfg, tmp_path / "a"), _run(cfg, tmp_path / "b")
    assert _values(RunRecord(a.path)) == _values(RunRecord(b.path))
    c = _run(resolve("catch", "irnn", {**TINY, "seed": 1}), tmp_path / "a")
    assert _values(RunRecord(c.path)) != _values(RunRecord(a.path))


class _InterruptAt(a2c.TrainProgress):
    step = 48

    def update(self, step, **fields):
        if step == self.step:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    cfg = resolve("catch", "fastweights", {**TINY, "rollout": 3, "env_steps": 96})
    whole = _run(cfg, tmp_path / "whole")
    monkeypatch.setattr(a2c, "TrainProgress", _InterruptAt)  # cut mid-episode, after step 36
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "cut")
    rec = RunRecord(tmp_path / "cut" / "runs" / cfg.run_id)
    assert json.loads(rec.summary_path.read_text())["status"] == "interrupted"
    monkeypatch.undo()
    resumed = _run(cfg, tmp_path / "cut")
    assert resumed.status == "completed"
    assert _values(rec) == _values(RunRecord(whole.path))
    assert resumed.summary["eval_return"] == whole.summary["eval_return"]


def test_a_checkpoint_with_catch_named_state_resumes(tmp_path, monkeypatch):
    """Checkpoints written when the state's fields were named after Catch still resume."""
    cfg = resolve("catch", "fastweights", {**TINY, "rollout": 3, "env_steps": 96})
    whole = _run(cfg, tmp_path / "whole")
    monkeypatch.setattr(a2c, "TrainProgress", _InterruptAt)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "cut")
    monkeypatch.undo()
    rec = RunRecord(tmp_path / "cut" / "runs" / cfg.run_id)
    ckpt = torch.load(rec.checkpoint_path, weights_only=False)
    state = ckpt["state"]
    state["eval_catch_rate"], state["best_catch_rate"] = (state.pop("eval_success"),
                                                          state.pop("best_success"))
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    rec.write_sealed(rec.checkpoint_path, buf.getvalue())  # as the code of the time wrote it
    resumed = _run(cfg, tmp_path / "cut")
    assert _values(rec) == _values(RunRecord(whole.path))
    assert resumed.summary["best_eval_catch_rate"] == whole.summary["best_eval_catch_rate"]


def test_non_finite_loss_marks_the_run_diverged(tmp_path, monkeypatch):
    real = a2c.a2c_loss

    def nan_loss(*args):
        loss, parts = real(*args)
        return loss * float("nan"), parts

    monkeypatch.setattr(a2c, "a2c_loss", nan_loss)
    out = _run(resolve("catch", "irnn", TINY), tmp_path)
    assert out.status == "diverged" and out.summary["diverged_step"] == 16


def _random_policy_catch_rate(task, episodes: int) -> float:
    env = task.batched(env_seeds(0, rollout.EVAL_STREAM, episodes))
    gen = torch.Generator().manual_seed(0)
    for _ in range(task.episode_length):
        _, reward, done = env.step(torch.randint(0, 3, (episodes,), generator=gen))
    assert done.all()
    return (reward > 0).float().mean().item()


def test_learns_a_small_fully_visible_board(tmp_path):
    over = {"N": 6, "M": 6, "hidden": 32, "lr": 3e-3, "n_envs": 32, "env_steps": 32_000,
            "eval_every": 8000, "eval_episodes": 256}
    cfg = resolve("catch", "irnn", over)
    out = _run(cfg, tmp_path)
    task = a2c.A2CLearner(cfg, None, torch.device("cpu")).build()[0]
    chance = _random_policy_catch_rate(task, 256)
    assert 0.05 < chance < 0.45
    assert out.summary["eval_catch_rate"] > chance + 0.3


def test_preset_resolves_for_every_run_it_names():
    import tomllib
    from pathlib import Path

    raw = tomllib.loads((Path(__file__).parents[1] / "tasks" / "catch.toml").read_text())
    assert raw["task"] == "catch" and raw["seeds"] == 3
    paper = {(16, 3), (24, 5)}
    seen = set()
    for sweep in [{"settings": {}, "grid": raw["grid"]}, *raw["sweeps"].values()]:
        shared = {**raw["settings"], **sweep["settings"]}
        for model in sweep["grid"]["model"]:
            cfg = resolve("catch", model, shared)
            seen.add((cfg.task_cfg.N, cfg.task_cfg.M))
    assert seen == paper
    assert set(raw["sweeps"]["n24_m5"]["grid"]["model"]) == {"irnn", "lstm", "fastweights"}
    report = raw["report"]
    assert report["curves"][0] == "eval/catch_rate" and report["direction"] == "higher"
    assert report["metric"] == "eval_catch_rate" and report["threshold"] == 0.9


REPO = Path(__file__).parents[1]
COMMITTED = sorted((REPO / "evidence" / "runs").glob("catch-*"))


def test_committed_catch_records_match_what_the_learner_writes(tmp_path):
    """Catch names its success measure "catch", so the learner writes the very metric and
    summary names of the committed records, and they stay readable as they are."""
    assert COMMITTED
    out = _run(resolve("catch", "lstm", TINY), tmp_path)
    fresh = {(r["split"], r["metric"]) for r in RunRecord(out.path).read_metrics()}
    rates = {k for k in out.summary if k.endswith("_rate")}
    assert rates == {"eval_catch_rate", "best_eval_catch_rate", "mean_eval_catch_rate"}
    rates -= {"mean_eval_catch_rate"}  # added after the committed runs
    for path in COMMITTED:
        rec = RunRecord(path)
        assert {(r["split"], r["metric"]) for r in rec.read_metrics()} == fresh
        assert rates <= set(json.loads(rec.summary_path.read_text()))
