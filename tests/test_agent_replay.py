"""The A2C update's replay: the rollout played without a graph, then its policy and values
recomputed through the core's sequence path, against the reference that keeps the graph of the
steps as played. Every recurrent core, float64, values and gradients, with the state carried
into the rollout and episodes ending inside it (all games at once, as in Catch, and staggered)."""

from __future__ import annotations

import json

import pytest
import torch

from fwbench.config import resolve
from fwbench.envs.seeds import env_seeds
from fwbench.learners import a2c
from fwbench.learners.rollout import TRAIN_STREAM, play
from fwbench.models import MODELS
from fwbench.models.base import RecurrentCore, mask_state
from fwbench.runner import Execution, run_experiment

RECURRENT = [n for n in MODELS.names() if issubclass(MODELS.get(n), RecurrentCore)]
TOL = {"rtol": 1e-9, "atol": 1e-10}  # float64: the two paths differ by rounding alone
N_ENVS = 3


def _agent(model: str, **over):
    # hidden 8 (even, as the associative LSTM needs); N = 5: episodes of 4 steps
    cfg = resolve("catch", model, {"N": 5, "M": 2, "hidden": 8, "n_envs": N_ENVS, **over})
    torch.manual_seed(0)
    task, agent = a2c.A2CLearner(cfg, None, torch.device("cpu"), progress=False).build()
    return task, agent.double()


def _rollout(task, agent, graph: bool):
    """A rollout of 6 steps after one of 3 (the carried state is not zero, and the episodes
    of 4 steps end at its first and fifth steps), from the same games and sampling seed."""
    env = task.batched(env_seeds(0, TRAIN_STREAM, N_ENVS))
    obs, carry = env.observe(), agent.initial(N_ENVS, "cpu")
    gen, ret = torch.Generator().manual_seed(0), torch.zeros(N_ENVS, dtype=torch.double)
    first = play(agent, task, env, obs, carry, ret, 3, gen, graph)
    return play(agent, task, env, first.obs, first.carry, first.ep_return, 6, gen, graph)


def _loss_and_grads(agent, roll):
    returns = a2c.rollout_returns(agent, roll, 0.9)
    logits, values = roll.policy(agent)
    loss, _ = a2c.a2c_loss(logits, values, roll.actions, returns, a2c.A2CConfig())
    agent.zero_grad(set_to_none=True)
    loss.backward()
    return logits, values, {n: p.grad for n, p in agent.named_parameters()}


@pytest.mark.parametrize("model", RECURRENT)
def test_replay_matches_the_stepped_graph_values_and_gradients(model):
    task, agent = _agent(model)
    ref = _rollout(task, agent, graph=True)
    fast = _rollout(task, agent, graph=False)
    assert fast.logits is None and fast.seen is not None  # no graph was kept while playing
    assert torch.equal(fast.actions, ref.actions) and torch.equal(fast.dones, ref.dones)
    ends = fast.dones.all(1).nonzero()[:, 0].tolist()
    assert ends == [0, 4] and int(fast.dones.sum()) == 2 * N_ENVS  # ends inside, all at once
    lr, vr, gr = _loss_and_grads(agent, ref)
    lf, vf, gf = _loss_and_grads(agent, fast)
    torch.testing.assert_close(lf, lr, **TOL)
    torch.testing.assert_close(vf, vr, **TOL)
    assert gr.keys() == gf.keys()
    for name in gr:
        assert gr[name] is not None, name
        torch.testing.assert_close(gf[name], gr[name], **TOL, msg=name)
    torch.testing.assert_close(fast.carry, ref.carry, **TOL)  # the state carried on


def test_replay_goes_through_the_observation_encoder():
    task, agent = _agent("fastweights", obs_encoder=6)
    _, _, gr = _loss_and_grads(agent, _rollout(task, agent, graph=True))
    _, _, gf = _loss_and_grads(agent, _rollout(task, agent, graph=False))
    assert gf["encoder.0.weight"].abs().sum() > 0
    for name in gr:
        torch.testing.assert_close(gf[name], gr[name], **TOL, msg=name)


@pytest.mark.parametrize("model", ["lstm", "fastweights", "delta", "attention"])
def test_replay_resets_the_games_whose_episode_ended_and_carries_the_others(model):
    """Staggered ends (a task whose episodes differ in length): each game's state is zeroed
    after its own end only, exactly as stepping with `next_carry` does."""
    _, agent = _agent(model)
    T, B = 7, 4
    gen = torch.Generator().manual_seed(1)
    obs = torch.rand(T, B, 5, 5, generator=gen, dtype=torch.double)
    prev = torch.rand(T, B, 3, generator=gen, dtype=torch.double)
    dones = torch.zeros(T, B, dtype=torch.bool)
    dones[1, 0] = dones[4, 2] = dones[4, 3] = dones[5, 0] = True
    warm = torch.rand(B, 2, 5 * 5 + 3, generator=gen, dtype=torch.double)
    with torch.no_grad():
        state = agent.core(warm)[1]  # a carried state that is not zero
    logits, values, s = [], [], state
    for t in range(T):
        lg, v, s = agent(obs[t], (s, prev[t]))
        logits.append(lg)
        values.append(v)
        s = mask_state(s, ~dones[t])
    lf, vf = agent.replay(obs, prev, state, dones)
    torch.testing.assert_close(lf, torch.stack(logits), **TOL)
    torch.testing.assert_close(vf, torch.stack(values), **TOL)
    ref = torch.autograd.grad((torch.stack(logits) ** 2).sum() + torch.stack(values).sum(),
                              list(agent.parameters()), allow_unused=True)
    got = torch.autograd.grad((lf ** 2).sum() + vf.sum(), list(agent.parameters()),
                              allow_unused=True)
    for r, g in zip(ref, got):
        assert (r is None) == (g is None)
        if r is not None:
            torch.testing.assert_close(g, r, **TOL)


def test_auto_replays_where_the_sequence_path_is_the_faster_form_and_ids_stay():
    cfg = resolve("catch", "lstm")
    assert cfg.learner_cfg.update_path == "auto"
    assert "update_path" not in cfg.to_dict()["learner_settings"]  # added: out at its default
    assert resolve("catch", "lstm", {"update_path": "auto"}).run_id == cfg.run_id
    assert resolve("catch", "lstm", {"update_path": "steps"}).run_id != cfg.run_id
    replays = {m: cfg.learner_cfg.replays(MODELS.get(m)) for m in RECURRENT}
    assert {m for m, r in replays.items() if not r} == {"irnn", "irnn-ln", "lstm", "gru"}
    forced = resolve("catch", "lstm", {"update_path": "replay"}).learner_cfg
    assert all(forced.replays(MODELS.get(m)) for m in RECURRENT)
    steps = resolve("catch", "fastweights", {"update_path": "steps"}).learner_cfg
    assert not any(steps.replays(MODELS.get(m)) for m in RECURRENT)


@pytest.mark.parametrize("path, impl", [("auto", "fused"), ("steps", "reference")])
def test_a_run_records_the_path_its_updates_took(tmp_path, path, impl):
    cfg = resolve("catch", "fastweights", {"N": 5, "M": 2, "hidden": 8, "n_envs": 2,
                                           "env_steps": 16, "eval_every": 8,
                                           "eval_episodes": 4, "update_path": path})
    out = run_experiment(cfg, Execution(results=tmp_path, device="cpu", progress=False,
                                        log="none"))
    assert out.status == "completed"
    summary = json.loads((out.path / "summary.json").read_text())
    assert summary["implementation"]["impl"] == impl
