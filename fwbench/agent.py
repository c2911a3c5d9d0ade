"""The reinforcement-learning agent: a recurrent core with a policy head and a value head.

It acts one step at a time with `core.step` and carried state, which `mask_state` resets where
an episode ended. For a training update, `replay` recomputes the policy and value of the steps
it played through the core's sequence path (its fastest form, often a compiled kernel) in one
call per stretch between episode ends: the same numbers as stepping, up to rounding. Its input
at each step is the observation (flattened) and a one-hot of its own previous action (zeros at
an episode's start): in Catch a blank screen hides the paddle too, so only this tells the agent
where it is [C]. An optional observation encoder (a Linear+ReLU layer, the same for every core)
turns the observation into features first [C].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwbench.models.base import RecurrentCore, mask_state


class Agent(nn.Module):
    """[observation, one-hot previous action] -> recurrent core -> policy logits and value."""

    def __init__(self, core: RecurrentCore, num_actions: int, encoder: nn.Module | None = None):
        super().__init__()
        self.core, self.num_actions = core, num_actions
        if encoder is not None:  # absent, not an identity: older weights load unchanged
            self.encoder = encoder
        self.policy = nn.Linear(core.output_size, num_actions)
        self.value = nn.Linear(core.output_size, 1)
        with torch.no_grad():  # a near-uniform first policy [C]
            self.policy.weight.mul_(0.01)
            self.policy.bias.zero_()

    def initial(self, batch: int, device) -> tuple:
        """(core state, previous action one-hot [B, A]) at the start of episodes."""
        return (self.core.initial_state(batch, device),
                self.core.zeros(batch, self.num_actions, device=device))

    def forward(self, obs: torch.Tensor, carry: tuple):
        """obs[B, ...] -> (logits [B, A], value [B], new core state)."""
        y, state = self.hidden(obs, carry)
        return self.policy(y), self.value(y)[:, 0], state

    def hidden(self, obs: torch.Tensor, carry: tuple):
        """obs[B, ...] -> (the core's output y [B, output_size], new core state)."""
        state, prev = carry
        x = self._features(obs, 1)  # [B, features]
        return self.core.step(torch.cat([x, prev], dim=1), state)  # input [B, features + A]

    def _features(self, obs: torch.Tensor, lead: int) -> torch.Tensor:
        """obs with `lead` leading dims ([B, ...] or [T, B, ...]) -> its features: flattened,
        in the agent's dtype, through the observation encoder if there is one."""
        x = obs.flatten(lead).to(self.policy.weight.dtype)
        return self.encoder(x) if hasattr(self, "encoder") else x

    def replay(self, obs: torch.Tensor, prev: torch.Tensor, state, dones: torch.Tensor):
        """The logits [T, B, A] and values [T, B] of T steps already played, with the graph:
        obs[T, B, ...] and prev[T, B, A] as each step saw them, `state` the core state before
        the first, dones[T, B] where episodes ended. The core reads each stretch between steps
        where any episode ended in one sequence call, its state then masked as `next_carry`
        masks it; stepping with `forward` is the reference (tests/test_agent_replay.py)."""
        T = obs.shape[0]
        x = torch.cat([self._features(obs, 2), prev], dim=2).transpose(0, 1)  # [B, T, D + A]
        ends = (torch.nonzero(dones[:-1].any(1))[:, 0] + 1).tolist()  # steps after an end
        ys = []
        for start, stop in zip([0] + ends, ends + [T]):
            if start:
                state = mask_state(state, ~dones[start - 1])
            y, state = self.core(x[:, start:stop], state)
            ys.append(y)
        y = torch.cat(ys, dim=1).transpose(0, 1)  # [T, B, output_size]
        return self.policy(y), self.value(y)[..., 0]

    def next_carry(self, state, action: torch.Tensor, done: torch.Tensor) -> tuple:
        """Carry into the next step; games whose episode ended start from zeros."""
        keep = ~done
        prev = F.one_hot(action, self.num_actions).to(self.policy.weight.dtype)
        return mask_state(state, keep), prev * keep[:, None]


def detach(state):
    """Cut the graph at a rollout boundary (truncated backpropagation through time)."""
    if isinstance(state, tuple):
        return tuple(detach(s) for s in state)
    return state.detach()
