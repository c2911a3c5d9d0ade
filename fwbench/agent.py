"""The reinforcement-learning agent: a recurrent core with a policy head and a value head.

It acts one step at a time with `core.step` and carried state, which `mask_state` resets where
an episode ended. Its input at each step is the observation (flattened) and a one-hot of its own
previous action (zeros at an episode's start): in Catch a blank screen hides the paddle too, so
only this tells the agent where it is [C]. An optional observation encoder (a Linear+ReLU
layer, the same for every core) turns the observation into features first [C].
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
        x = obs.flatten(1)  # [B, obs_size]
        if hasattr(self, "encoder"):
            x = self.encoder(x)  # [B, units]
        return self.core.step(torch.cat([x, prev], dim=1), state)  # input [B, features + A]

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
