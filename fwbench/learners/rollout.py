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
    """T steps of every game: the graph-carrying policy outputs, and where the games are now."""

    logits: torch.Tensor  # [T, B, A]
    values: torch.Tensor  # [T, B]
    actions: torch.Tensor  # [T, B]
    rewards: torch.Tensor  # [T, B]
    dones: torch.Tensor  # [T, B]
    obs: torch.Tensor  # the next observation of every game
    carry: tuple  # the agent's carry into that observation
    ep_return: torch.Tensor  # [B] running return of each game's unfinished episode
    episodes: int  # episodes finished during the rollout
    return_sum: float  # and the sum of their returns
    successes: int  # and how many of them succeeded


def play(agent: Agent, task: EpisodicTask, env, obs, carry, ep_return, T: int,
         gen: torch.Generator) -> Rollout:
    """Sample T actions in every game from the agent's policy, resetting finished games."""
    carry = detach(carry)
    logits, values, actions, rewards, dones = [], [], [], [], []
    episodes, return_sum, successes = 0, 0.0, 0
    for _ in range(T):
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
    return Rollout(torch.stack(logits), torch.stack(values), torch.stack(actions),
                   torch.stack(rewards), torch.stack(dones), obs, carry, ep_return, episodes,
                   return_sum, successes)


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
