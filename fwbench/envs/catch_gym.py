"""Catch as gymnasium sees it: the single game built from keyword rules, and the batched twin as a
`gymnasium.vector.VectorEnv`, both registered as `fwbench/Catch-v0` (see fwbench/envs/__init__.py).

`CatchVectorEnv` follows `gymnasium.vector.SyncVectorEnv` over `CatchGymEnv` step for step: the
same seeds (an int s seeds game i with s + i), the same next-step autoreset (the step after a
game ends ignores its action and returns the new episode's first frame with reward 0), and the
same infos (`caught` with its mask `_caught` on the final step). Every episode lasts N - 1 steps,
so games reset together stay in phase and autoreset together.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from fwbench.envs.catch import NUM_ACTIONS, BatchedCatch, CatchEnv, CatchRules
from fwbench.errors import FwbenchError

RULE_FIELDS = tuple(f.name for f in dataclasses.fields(CatchRules))
_POSITIONS = ("t", "col", "dir", "paddle")  # the per-game tensors of BatchedCatch.state_dict()


def rules_from_kwargs(rules: dict[str, Any]) -> CatchRules:
    """CatchRules from keyword arguments, naming the allowed ones when one is unknown."""
    unknown = sorted(set(rules) - set(RULE_FIELDS))
    if unknown:
        raise FwbenchError(f"unknown Catch rule {unknown[0]!r}: expected one of "
                           + ", ".join(RULE_FIELDS))
    return CatchRules(**rules)


class CatchGymEnv(CatchEnv):
    """CatchEnv taking the rules as keywords, as gymnasium.make passes them (N=24, M=5, ...)."""

    def __init__(self, render_mode: str | None = None, **rules: Any):
        super().__init__(rules_from_kwargs(rules), render_mode=render_mode)


class CatchVectorEnv(gym.vector.VectorEnv):
    """num_envs Catch games stepped as tensors (BatchedCatch), with numpy in and out."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", **rules: Any):
        if int(num_envs) < 1:
            raise FwbenchError(f"invalid num_envs {num_envs}: at least one game is needed")
        self.rules, self.num_envs = rules_from_kwargs(rules), int(num_envs)
        N = self.rules.N
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, shape=(N, N), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # unseeded games draw fresh entropy, as an unseeded gymnasium.Env does
        fresh = np.random.SeedSequence().generate_state(self.num_envs, dtype=np.uint64)
        self.games = BatchedCatch(self.rules, [int(s) for s in fresh], device=device)
        self._autoreset = np.zeros(self.num_envs, dtype=np.bool_)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes (options={"reset_mask": mask} for some games only)."""
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}: only 'reset_mask'")
        mask = np.ones(self.num_envs, dtype=np.bool_) if mask is None else self._check_mask(mask)
        self._reseed(self._seed_list(seed), mask)
        obs = self.games.reset(torch.as_tensor(mask, device=self.games.device))
        self._autoreset[mask] = False
        return obs.cpu().numpy(), {}

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                     dict[str, Any]]:
        """One step of every game; a game that ended on the last step starts over instead."""
        actions = self._check_actions(actions)
        restart = torch.as_tensor(self._autoreset, device=self.games.device)
        if restart.all():  # the usual case: games in phase all ended together
            obs = self.games.reset()
            reward = torch.zeros(self.num_envs)
            done = torch.zeros(self.num_envs, dtype=torch.bool)
        else:
            obs, reward, done = self._step_live(actions, restart)
        reward, done = reward.cpu().numpy().astype(np.float64), done.cpu().numpy()
        infos: dict[str, Any] = {}
        if done.any():
            infos = {"caught": np.where(done, reward > 0, False), "_caught": done.copy()}
        self._autoreset = done.copy()
        return (obs.cpu().numpy(), reward, done, np.zeros(self.num_envs, dtype=np.bool_),
                infos)

    def _step_live(self, actions: torch.Tensor, restart: torch.Tensor):
        """Step the games still playing; the ones in `restart` only reset, without stepping."""
        if restart.any():
            self.games.reset(restart)
        before = self.games.state_dict()
        _, reward, done = self.games.step(actions)
        # BatchedCatch steps every game; put the restarted ones back on their first frame
        state = self.games.state_dict()
        for name in _POSITIONS:
            state[name] = torch.where(restart.cpu(), before[name], state[name])
        self.games.load_state_dict(state)
        # a restarted game's one step cannot end it (episodes last N - 1 >= 2 steps): reward 0
        return self.games.observe(), reward, done

    def _seed_list(self, seed: int | list[int | None] | None) -> list[int | None]:
        """Per-game seeds as SyncVectorEnv reads them: None, s (s + i for game i) or a list."""
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds given for {self.num_envs} games")
        return seeds

    def _reseed(self, seeds: list[int | None], mask: np.ndarray) -> None:
        """Give game i a generator seeded with seeds[i] where it is set and mask[i] holds."""
        if all(s is None for s, m in zip(seeds, mask) if m):
            return
        state = self.games.state_dict()
        for i, (s, m) in enumerate(zip(seeds, mask)):
            if m and s is not None:
                state["rngs"][i] = seeding.np_random(int(s))[0].bit_generator.state
        self.games.load_state_dict(state)

    def _check_mask(self, mask) -> np.ndarray:
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_
                and mask.shape == (self.num_envs,) and mask.any()):
            raise ValueError(f"reset_mask must be a bool numpy array of shape ({self.num_envs},) "
                             "with at least one True")
        return mask

    def _check_actions(self, actions) -> torch.Tensor:
        a = np.asarray(actions)
        if (a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer)
                or (a < 0).any() or (a >= NUM_ACTIONS).any()):
            raise ValueError(f"invalid actions {a!r}: expected {self.num_envs} integers in "
                             "0 (left), 1 (stay), 2 (right)")
        return torch.as_tensor(a, dtype=torch.long, device=self.games.device)
