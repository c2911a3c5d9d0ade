"""Catch throughput (`fwbench bench --env catch`): environment steps per second of

* `gymnasium`: one `CatchEnv` played episode after episode in Python (the reference),
* `batched`: `BatchedCatch` stepping `n_envs` games at once as tensors,
* `a2c-replay:MODEL` and `a2c-steps:MODEL`: A2C training with MODEL as the agent's core, i.e.
  exactly what `fwbench run --task catch` does per update (`play` one whole episode in every
  game, then `update`), with `update_path` = replay (the rollout recomputed through the core's
  sequence path) and = steps (the graph of the steps as played, the reference); `auto`, the
  default, takes one of the two per core (`RecurrentCore.replay_update`),

all with uniformly random actions for the environments alone, measured in turns in one process
so that a change in the machine's load touches every subject alike. Each timed repeat is one
episode's worth of steps in `n_envs` games (n_envs x (N - 1) steps); rows carry the median and
the speed-ups over the gymnasium reference and over the batched environment.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fwbench import markdown
from fwbench.bench import measure, table
from fwbench.envs.catch import NUM_ACTIONS, BatchedCatch, CatchEnv, CatchRules
from fwbench.envs.seeds import env_seeds
from fwbench.errors import FwbenchError

GYM, BATCHED = "gymnasium", "batched"
COLUMNS = ("device", "clock", "N", "M", "n_envs", "subject", "hidden", "metric", "value", "unit",
           "vs_gym", "vs_batched", "repeats")


@dataclasses.dataclass(frozen=True)
class CatchRow:
    device: str
    clock: str
    N: int
    M: int
    n_envs: int
    subject: str
    hidden: int | None  # the agent's hidden size; None for the environments alone
    value: float  # environment steps per second, median over repeats
    repeats: int
    vs_gym: float | None = None
    vs_batched: float | None = None
    metric: str = "env_steps_per_s"
    unit: str = "steps/s"


def parse_env(spec: str) -> CatchRules:
    """'catch' or 'catch:N=24:M=5:paddle=1:motion=straight' -> checked rules.

    The settings are the catch task's own (typed, bounded), so the bench and `fwbench run
    --task catch` accept and refuse the same values.
    """
    from fwbench.settings import build_known, parse_spec
    from fwbench.tasks.catch import CatchConfig

    name, settings = parse_spec(spec, "--env")
    if name != "catch":
        raise FwbenchError(f"invalid --env {spec!r}: the environment bench knows 'catch' "
                           "(e.g. catch:N=24:M=5)")
    return build_known(CatchConfig, settings, None, "--env catch").rules()


def _gym_episodes(rules: CatchRules, n_envs: int, seed: int) -> Callable[[], None]:
    env, T = CatchEnv(rules), rules.episode_length
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(NUM_ACTIONS, size=(n_envs, T)).tolist()

    def run() -> None:
        for game in actions:
            env.reset()
            for a in game:
                env.step(a)

    return run


def _batched_episode(rules: CatchRules, n_envs: int, seed: int, device) -> Callable[[], None]:
    env = BatchedCatch(rules, env_seeds(seed, 0, n_envs), device)
    gen = torch.Generator().manual_seed(seed)
    actions = torch.randint(NUM_ACTIONS, (rules.episode_length, n_envs), generator=gen).to(device)

    def run() -> None:
        for a in actions:
            _, _, done = env.step(a)
        env.reset(done)

    return run


def _a2c_update(model: str, hidden: int, rules: CatchRules, n_envs: int, seed: int,
                device, graph: bool = False) -> Callable[[], None]:
    """One training update of the a2c learner with MODEL's core, on its defaults but for the
    update's path (`graph`: through the steps' own graph, as update_path = steps)."""
    from fwbench.agent import Agent
    from fwbench.bench.subjects import make
    from fwbench.learners.a2c import A2CConfig, update
    from fwbench.learners.optim import Adam
    from fwbench.learners.rollout import play
    from fwbench.models.base import RecurrentCore
    from fwbench.tasks.catch import Catch, CatchConfig

    c = A2CConfig(seed=seed, n_envs=n_envs)
    size = rules.N * rules.N + NUM_ACTIONS
    torch.manual_seed(seed)
    core = make(model, hidden, None, size, {}, torch.zeros(1, 1, size, device=device)).module
    if not isinstance(core, RecurrentCore):
        raise FwbenchError(f"model {model!r} is not a recurrent core, so it cannot be an agent")
    agent = Agent(core, NUM_ACTIONS).to(device)
    opt = Adam(agent.parameters(), lr=c.lr)
    task = Catch(CatchConfig(**dataclasses.asdict(rules)))
    env = task.batched(env_seeds(seed, 0, n_envs), device)
    gen = torch.Generator(device=device).manual_seed(seed)
    held = {"obs": env.observe(), "carry": agent.initial(n_envs, device),
            "ep_return": torch.zeros(n_envs, device=device)}

    def run() -> None:
        roll = play(agent, task, env, held["obs"], held["carry"], held["ep_return"],
                    rules.episode_length, gen, graph)
        update(agent, opt, roll, c)
        held.update(obs=roll.obs, carry=roll.carry, ep_return=roll.ep_return)

    return run


def catch_bench(rules: CatchRules, n_envs: int, models: tuple[str, ...], hidden: tuple[int, ...],
                repeats: int, warmup: int, budget: float | None, clock: str,
                device: torch.device, seed: int = 0) -> list[CatchRow]:
    """Rows of environment steps per second for the environments and each agent."""
    runs: dict[tuple[str, int | None], Callable[[], None]] = {
        (GYM, None): _gym_episodes(rules, n_envs, seed),
        (BATCHED, None): _batched_episode(rules, n_envs, seed, device)}
    for model in models:
        for H in hidden:
            for path, graph in (("replay", False), ("steps", True)):
                runs[(f"a2c-{path}:{model}", H)] = _a2c_update(model, H, rules, n_envs, seed,
                                                               device, graph)
    keyed = {f"{s}@{h}": run for (s, h), run in runs.items()}
    times = measure.interleaved(keyed, repeats, warmup, measure.clock_fn(clock, device), budget)
    steps = n_envs * rules.episode_length
    speed = {k: steps / statistics.median(t) for k, t in times.items()}
    gym, batched = speed[f"{GYM}@None"], speed[f"{BATCHED}@None"]
    return [CatchRow(device.type, clock, rules.N, rules.M, n_envs, s, h, speed[f"{s}@{h}"],
                     len(times[f"{s}@{h}"]), speed[f"{s}@{h}"] / gym,
                     speed[f"{s}@{h}"] / batched) for s, h in runs]


def lines(rows: list[CatchRow]) -> tuple[list[str], list[list[str]]]:
    head = ["N", "M", "games", "subject", "hidden", "env steps/s", "×gym", "×batched"]
    return head, [[str(r.N), str(r.M), str(r.n_envs), r.subject,
                   "" if r.hidden is None else str(r.hidden), f"{r.value:,.0f}",
                   f"{r.vs_gym:.2f}", f"{r.vs_batched:.3f}"] for r in rows]


def rich_table(rows: list[CatchRow], title: str = ""):
    return table.rich_lines(*lines(rows), title, left=("subject",))


def write(rows: list[CatchRow], out: Path, meta_md: str) -> list[Path]:
    """bench.csv (tidy) and bench.md (table after `meta_md`) in `out`, atomically."""
    return table.write_files(out, table.to_csv(rows, COLUMNS),
                             meta_md + "\n" + markdown.table(*lines(rows)))
