"""Partially observable Catch (Ba et al. 2016; docs/paper.md §3.4), learned by actor-critic.

The agent sees the first M of the N frames of each episode and must then move its paddle to
where the ball will land from memory. The paper's settings are N = 16, M = 3 and N = 24, M = 5.
Rules and conventions: `fwbench.envs.catch`. The learner ("a2c") steps `n` games at once with
`batched(seeds)`; `make_env()` gives the gymnasium form of the same game. With N = 5, M = 2
the ball is seen on rows 0 and 1, then the screen goes blank:

>>> env = Catch(CatchConfig(N=5, M=2)).make_env(render_mode="ansi")
>>> _ = env.reset(options={"column": 0})
>>> for action in (LEFT, LEFT, STAY):
...     _ = env.step(action)
>>> frame, reward, terminated, _, info = env.step(STAY)
>>> print(env.render())
|.....|
|.....|
|.....|
|.....|
|o....|  (agent sees a blank screen)
>>> reward, terminated, info, float(frame.sum())
(1.0, True, {'caught': True}, 0.0)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import torch

from fwbench.envs.catch import (LEFT, MAX_N, MIN_N, MOTIONS, NUM_ACTIONS, STAY,  # noqa: F401
                                BatchedCatch, CatchEnv, CatchRules)
from fwbench.settings import setting
from fwbench.tasks.base import EpisodicTask, TaskConfig


@dataclasses.dataclass(frozen=True)
class CatchConfig(TaskConfig):
    N: int = setting(16, "screen size: N x N cells; the ball falls N-1 rows per episode",
                     low=MIN_N, high=MAX_N, paper="[S]")
    M: int = setting(3, "frames shown before the screen goes blank (M = N: fully visible)",
                     low=1, high=MAX_N, paper="[S]")
    paddle: int = setting(1, "paddle width in cells", low=1, high=MAX_N, paper="[C]")
    motion: str = setting("straight", "ball motion: straight down, or diagonal bouncing off "
                          "the side walls", choices=MOTIONS, paper="[C]")

    def validate(self) -> None:
        self.rules()

    def rules(self) -> CatchRules:
        """The game's rules (raises FwbenchError on impossible combinations such as M > N)."""
        return CatchRules(N=self.N, M=self.M, paddle=self.paddle, motion=self.motion)


class Catch(EpisodicTask):
    """An episodic task: a successful episode is a catch (its last reward is +1)."""

    Config: ClassVar[type] = CatchConfig
    summary: ClassVar[str] = ("partially observable Catch: the screen goes blank after M of N "
                              "frames (Ba et al. 2016, Figure 4)")
    success: ClassVar[str] = "catch"  # metrics train/catch_rate, eval/catch_rate
    # the ball's column at the blind steps, from frame M on: what must be remembered
    probes: ClassVar[tuple[str, ...]] = ("ball_column",)

    def __init__(self, cfg: CatchConfig):
        super().__init__(cfg)
        self.rules = cfg.rules()

    @property
    def observation_size(self) -> int:
        """Floats per observation (the flattened N x N frame)."""
        return self.rules.N * self.rules.N

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    @property
    def episode_length(self) -> int:
        return self.rules.episode_length

    def describe(self) -> str:
        """The settings that tell runs apart, for progress titles."""
        return f"N={self.rules.N} M={self.rules.M}"

    def batched(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> BatchedCatch:
        """len(seeds) games stepped together, game i seeded with seeds[i]."""
        return BatchedCatch(self.rules, seeds, device)

    def probe_targets(self, name: str, env: BatchedCatch) -> torch.Tensor:
        """The ball's column [n] where the screen is blank (step M on), -1 where it shows."""
        return torch.where(env.t >= self.rules.M, env.col, -1)

    def make_env(self, render_mode: str | None = None) -> CatchEnv:
        """One game as a gymnasium.Env."""
        return CatchEnv(self.rules, render_mode=render_mode)
