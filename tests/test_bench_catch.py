"""`fwbench bench --env catch`: a tiny run end to end, its ratios, bad input, and that the timed
A2C update is the learner's own (no timing assertions)."""

from __future__ import annotations

import csv

import pytest
import torch
from typer.testing import CliRunner

from fwbench.bench.catch import parse_env
from fwbench.cli import app
from fwbench.envs.catch import CatchRules

TINY = ["--hidden", "4,6", "--batch", "3", "--repeats", "2", "--warmup", "0", "--device", "cpu",
        "--quiet"]


def _invoke(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args)])


def test_tiny_catch_bench_writes_rows_with_consistent_ratios(tmp_path):
    out = _invoke("--env", "catch:N=5:M=2", "--models", "irnn,fastweights", *TINY,
                  "--out", tmp_path)
    assert out.exit_code == 0, out.output
    with open(tmp_path / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = {(r["subject"], r["hidden"]) for r in rows}
    assert got == {("gymnasium", ""), ("batched", "")} | {
        (f"a2c-{path}:{m}", h) for path in ("replay", "steps") for m in ("irnn", "fastweights")
        for h in ("4", "6")}
    speed = {(r["subject"], r["hidden"]): float(r["value"]) for r in rows}
    for r in rows:
        assert (r["N"], r["M"], r["n_envs"], r["metric"]) == ("5", "2", "3", "env_steps_per_s")
        assert float(r["value"]) > 0
        assert float(r["vs_gym"]) == pytest.approx(float(r["value"]) / speed[("gymnasium", "")],
                                                   rel=1e-4)
        assert float(r["vs_batched"]) == pytest.approx(
            float(r["value"]) / speed[("batched", "")], rel=1e-4)
    md = (tmp_path / "bench.md").read_text()
    assert "| 5 | 2 | 3 | a2c-replay:fastweights | 6 |" in md and "4 steps" in md


@pytest.mark.parametrize("args, message", [
    (["--env", "pong"], "knows 'catch'"),
    (["--env", "catch:N"], "expected NAME[:SETTING=VALUE...]"),
    (["--env", "catch:size=4"], "unknown setting 'size' for --env catch; allowed: N, M, paddle"),
    (["--env", "catch:N=x"], "invalid value 'x' for N: expected integer in [3, 64]"),
    (["--env", "catch:N=65"], "invalid value 65 for N"),
    (["--env", "catch:N=4:M=9"], "invalid M 9"),
    (["--env", "catch", "--models", "torch-lstm"], "not a recurrent core"),
    (["--env", "catch", "--models", "nosuch"], "nosuch"),
    (["--env", "catch", "--batch", "0"], "invalid --batch"),
])
def test_bad_env_input_is_one_line_exit_2(tmp_path, args, message):
    out = _invoke(*TINY, *args, "--out", tmp_path / "out")
    assert out.exit_code == 2, out.output
    assert message in " ".join(out.output.split())
    assert not (tmp_path / "out").exists()


def test_parse_env_reads_every_rule():
    assert parse_env("catch:N=24:M=5:paddle=2:motion=diagonal") == CatchRules(24, 5, 2,
                                                                             "diagonal")
    assert parse_env("catch") == CatchRules()


def test_play_and_update_step_the_games_and_change_the_agent():
    """The pieces the bench times are the ones training uses: T steps in every game, episodes
    counted from the rewards, and one Adam step that moves the weights."""
    from fwbench.agent import Agent
    from fwbench.bench.subjects import make
    from fwbench.envs.seeds import env_seeds
    from fwbench.learners.a2c import A2CConfig, update
    from fwbench.learners.rollout import play
    from fwbench.tasks.catch import Catch, CatchConfig

    n = 6
    torch.manual_seed(0)
    core = make("lstm", 8, None, 28, {}, torch.zeros(1, 1, 28)).module
    agent = Agent(core, 3)
    task = Catch(CatchConfig(N=5, M=2))
    env = task.batched(env_seeds(0, 0, n))
    opt = torch.optim.Adam(agent.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    roll = play(agent, task, env, env.observe(), agent.initial(n, "cpu"), torch.zeros(n), 4, gen)
    assert roll.rewards.shape == roll.dones.shape == roll.actions.shape == (4, n)
    assert roll.logits is None  # played without a graph, replayed for the update
    logits, values = roll.policy(agent)
    assert logits.shape == (4, n, 3) and logits.requires_grad and values.shape == (4, n)
    assert roll.episodes == n == int(roll.dones.sum()) and bool(roll.dones[-1].all())
    assert roll.successes == int((roll.rewards > 0).sum())
    assert roll.return_sum == pytest.approx(float(roll.rewards.sum()))
    assert bool((env.t == 0).all())  # finished games were reset
    before = [p.detach().clone() for p in agent.parameters()]
    loss, parts = update(agent, opt, roll, A2CConfig(n_envs=n))
    assert set(parts) == {"policy_loss", "value_loss", "entropy"} and loss == loss
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.parameters()))
