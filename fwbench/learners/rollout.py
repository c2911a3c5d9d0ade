"""Playing an episodic task with an agent: sampled rollouts for training, greedy evaluation.

Nothing here knows a particular game: success is whatever the task's `succeeded` says.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from fwbench.agent import Agent, detach
from fwbench.envs.seeds import env_seeds
from fwbench.tasks.base import EpisodicTask

TRAIN_STREAM, EVAL_STREAM = 0, 1  # env_seeds streams of the training and evaluation episodes


@dataclasses.dataclass
class Rollout:
    """T steps of every game: what was played, the policy outputs for the update, and where
    the games are now."""

    logits: torch.Tensor | None  # [T, B, A] carrying the graph (play's `graph`), else None
    values: torch.Tensor | None  # [T, B], likewise
    actions: torch.Tensor  # [T, B]
    rewards: torch.Tensor  # [T, B]
    dones: torch.Tensor  # [T, B]
    obs: torch.Tensor  # the next observation of every game
    carry: tuple  # the agent's carry into that observation
    ep_return: torch.Tensor  # [B] running return of each game's unfinished episode
    episodes: int  # episodes finished during the rollout
    return_sum: float  # and the sum of their returns
    successes: int  # and how many of them succeeded
    seen: tuple | None = None  # without the graph: (observations [T, B, ...], previous
    # actions [T, B, A], core state before the first step), what `Agent.replay` reads

    def policy(self, agent: Agent) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [T, B, A], values [T, B]) with the graph: kept from play, or replayed."""
        if self.logits is not None:
            return self.logits, self.values
        obs, prev, state = self.seen
        return agent.replay(obs, prev, state, self.dones)


def play(agent: Agent, task: EpisodicTask, env, obs, carry, ep_return, T: int,
         gen: torch.Generator, graph: bool = False) -> Rollout:
    """Sample T actions in every game from the agent's policy, resetting finished games.

    With `graph` the policy outputs keep the step-by-step graph for the update (the
    reference); without it play runs without one and keeps what the steps saw, for
    `Rollout.policy` to replay through the core's sequence path. The actions are the same."""
    carry = detach(carry)
    logits, values, actions, rewards, dones, seen_obs, seen_prev = [], [], [], [], [], [], []
    start = carry[0]
    episodes, return_sum, successes = 0, 0.0, 0
    with torch.set_grad_enabled(graph and torch.is_grad_enabled()):
        for _ in range(T):
            if not graph:
                seen_obs.append(obs)
                seen_prev.append(carry[1])
            lg, value, state = agent(obs, carry)
            action = torch.multinomial(F.softmax(lg.detach(), -1), 1, generator=gen)[:, 0]
            obs, reward, done = env.step(action)
            for seq, item in zip((logits, values, actions, rewards, dones),
                                 (lg, value, action, reward, done)):
                seq.append(item)
            ep_return = ep_return + reward
            if bool(done.any()):
                episodes += int(done.sum())
                return_sum += ep_return[done].sum().item()
                successes += int(task.succeeded(reward, done).sum())
                ep_return = ep_return * ~done
                obs = env.reset(done)
            carry = agent.next_carry(state, action, done)
    kept = (torch.stack(logits), torch.stack(values)) if graph else (None, None)
    seen = None if graph else (torch.stack(seen_obs), torch.stack(seen_prev), start)
    return Rollout(*kept, torch.stack(actions), torch.stack(rewards), torch.stack(dones), obs,
                   carry, ep_return, episodes, return_sum, successes, seen)


@torch.no_grad()
def evaluate(agent: Agent, task: EpisodicTask, episodes: int, seed: int,
             device) -> tuple[float, float]:
    """(mean return, success rate) of the greedy policy over `episodes` fixed episodes."""
    env = task.batched(env_seeds(seed, EVAL_STREAM, episodes), device)
    obs, carry = env.reset(), agent.initial(env.n, device)
    total = torch.zeros(env.n, device=device)
    succeeded = torch.zeros(env.n, dtype=torch.bool, device=device)
    finished = torch.zeros(env.n, dtype=torch.bool, device=device)
    while not bool(finished.all()):
        logits, _, state = agent(obs, carry)
        action = logits.argmax(-1)
        obs, reward, done = env.step(action)
        total += reward * ~finished
        succeeded |= task.succeeded(reward, done) & ~finished
        finished |= done
        carry = agent.next_carry(state, action, done)
        obs = env.reset(done) if bool(done.any()) else obs
    return total.mean().item(), succeeded.float().mean().item()
