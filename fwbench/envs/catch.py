"""Catch (Ba et al. 2016, section 4.3; docs/paper.md §3.4), partially observable.

A ball falls from the top row of an N x N screen, one row per step; the agent moves a paddle
along the bottom row (0 = left, 1 = stay, 2 = right). Only the first M frames show the screen;
every later frame is blank, so the agent must remember where the ball was. The rules the paper
leaves open are our conventions [C]:

* the ball starts on row 0 in a uniformly random column; with `motion="straight"` it falls
  straight down, with `motion="diagonal"` it also moves one column per step in a random
  direction, bouncing off the side walls;
* the paddle is `paddle` cells wide, starts in the middle (left edge (N - paddle) // 2) and stops
  at the walls; each step the paddle moves first, then the ball;
* the episode ends when the ball reaches the bottom row, after N - 1 steps, with reward +1 if the
  paddle is under the ball and -1 otherwise (0 on every earlier step);
* a frame is N x N float32 with 1 at the ball and at the paddle's cells, 0 elsewhere; frames
  t = 0 .. M-1 are shown (t counts steps since the reset), later ones are all zeros.

Two implementations of the same rules:

* `CatchEnv`, a `gymnasium.Env` playing one episode at a time: the obviously correct reference;
* `BatchedCatch`, many episodes held as tensors and stepped at once: sub-environment i behaves
  exactly like a `CatchEnv` reset with `seed=seeds[i]` the first time and without a seed after.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding

from fwbench.envs.seeds import env_seeds  # noqa: F401  (importable from here too)
from fwbench.errors import FwbenchError

LEFT, STAY, RIGHT = 0, 1, 2
NUM_ACTIONS = 3
MOTIONS = ("straight", "diagonal")
MIN_N, MAX_N = 3, 64


@dataclasses.dataclass(frozen=True)
class CatchRules:
    """Screen size N, visible frames M, paddle width and ball motion; checked on creation."""

    N: int = 16
    M: int = 3
    paddle: int = 1
    motion: str = "straight"

    def __post_init__(self):
        if not MIN_N <= self.N <= MAX_N:
            raise FwbenchError(f"invalid N {self.N}: the screen must be {MIN_N} to {MAX_N} cells "
                               "wide (the ball needs at least two moves to be caught)")
        if not 1 <= self.M <= self.N:
            raise FwbenchError(f"invalid M {self.M}: an episode has N = {self.N} frames, so the "
                               f"visible frames M must be 1 to {self.N}")
        if not 1 <= self.paddle <= self.N:
            raise FwbenchError(f"invalid paddle {self.paddle}: the paddle must be 1 to N = "
                               f"{self.N} cells wide (it cannot be wider than the screen)")
        if self.motion not in MOTIONS:
            raise FwbenchError(f"invalid motion {self.motion!r}: expected one of "
                               + ", ".join(MOTIONS))

    @property
    def episode_length(self) -> int:
        """Steps per episode: the ball falls from row 0 to row N-1."""
        return self.N - 1

    @property
    def paddle_start(self) -> int:
        return (self.N - self.paddle) // 2


def draw_start(rng: np.random.Generator, rules: CatchRules) -> tuple[int, int]:
    """The ball's start column and horizontal direction (-1, 0, +1) for a new episode."""
    column = int(rng.integers(rules.N))
    direction = int(rng.integers(2)) * 2 - 1 if rules.motion == "diagonal" else 0
    return column, direction


class CatchEnv(gym.Env):
    """One Catch game (the reference). reset(options={"column": c, "direction": d}) fixes the
    ball's start instead of drawing it."""

    # gymnasium asks for a frame rate; at 4 rows of fall a second a game can be followed by eye
    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, rules: CatchRules = CatchRules(), render_mode: str | None = None):
        self.rules = rules
        N = rules.N
        self.observation_space = spaces.Box(0.0, 1.0, shape=(N, N), dtype=np.float32)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.render_mode = render_mode
        self._t: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "column" in options:
            column, direction = int(options["column"]), int(options.get("direction", 0))
        else:
            column, direction = draw_start(self.np_random, self.rules)
        self._t, self._col, self._dir = 0, column, direction
        self._paddle = self.rules.paddle_start
        return self._frame(), {}

    def step(self, action):
        N, w = self.rules.N, self.rules.paddle
        if self._t is None or self._t >= self.rules.episode_length:
            raise RuntimeError("step() called before reset() or after the episode ended")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected 0 (left), 1 (stay), 2 (right)")
        self._paddle = min(max(self._paddle + int(action) - 1, 0), N - w)
        col = self._col + self._dir
        if col < 0 or col > N - 1:  # bounce off a side wall
            col, self._dir = (-col if col < 0 else 2 * (N - 1) - col), -self._dir
        self._col, self._t = col, self._t + 1
        terminated = self._t == self.rules.episode_length
        info: dict[str, Any] = {}
        reward = 0.0
        if terminated:
            info["caught"] = self._paddle <= self._col < self._paddle + w
            reward = 1.0 if info["caught"] else -1.0
        return self._frame(), reward, terminated, False, info

    def _frame(self, always: bool = False) -> np.ndarray:
        N = self.rules.N
        frame = np.zeros((N, N), dtype=np.float32)
        if always or self._t < self.rules.M:
            frame[self._t, self._col] = 1.0
            frame[N - 1, self._paddle:self._paddle + self.rules.paddle] = 1.0
        return frame

    def render(self) -> str | None:
        """The true screen as text between its walls ('o' ball, '=' paddle), seen or not."""
        if self.render_mode != "ansi" or self._t is None:
            return None
        frame = self._frame(always=True)
        chars = np.where(frame > 0, "=", ".")
        chars[self._t, self._col] = "o"
        blank = "" if self._t < self.rules.M else "  (agent sees a blank screen)"
        return "\n".join("|" + "".join(row) + "|" for row in chars) + blank


class BatchedCatch:
    """n Catch games as tensors [n], stepped together; same rules and draws as CatchEnv."""

    def __init__(self, rules: CatchRules, seeds: Sequence[int], device: str | torch.device = "cpu"):
        self.rules, self.n, self.device = rules, len(seeds), torch.device(device)
        self._rngs = [seeding.np_random(int(s))[0] for s in seeds]
        z = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.t, self.col, self.dir, self.paddle = z.clone(), z.clone(), z.clone(), z.clone()
        self._cells = torch.arange(rules.N, device=self.device)
        self.reset()

    def reset(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes where mask[n] is True (everywhere if None); the observations."""
        idx = torch.arange(self.n) if mask is None else mask.nonzero()[:, 0].cpu()
        if len(idx):
            draws = torch.tensor([draw_start(self._rngs[i], self.rules) for i in idx.tolist()],
                                 dtype=torch.long, device=self.device)  # [k, 2]: column, direction
            idx = idx.to(self.device)
            self.col[idx], self.dir[idx] = draws[:, 0], draws[:, 1]
            self.t[idx] = 0
            self.paddle[idx] = self.rules.paddle_start
        return self.observe()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """actions[n] -> (observations [n, N, N], rewards [n], done [n]); no automatic reset."""
        N, w = self.rules.N, self.rules.paddle
        if bool((self.t >= self.rules.episode_length).any()):
            raise RuntimeError("step() on finished episodes: reset(done) them first")
        self.paddle = (self.paddle + actions.to(self.device, torch.long) - 1).clamp(0, N - w)
        col = self.col + self.dir
        bounce = (col < 0) | (col > N - 1)  # off a side wall: reflect position and direction
        self.col = torch.where(col < 0, -col, torch.where(col > N - 1, 2 * (N - 1) - col, col))
        self.dir = torch.where(bounce, -self.dir, self.dir)
        self.t = self.t + 1
        done = self.t == self.rules.episode_length
        caught = (self.col >= self.paddle) & (self.col < self.paddle + w)
        reward = torch.where(caught, 1.0, -1.0) * done
        return self.observe(), reward, done

    def observe(self) -> torch.Tensor:
        """The current frames [n, N, N], blank after the first M."""
        N = self.rules.N
        frame = torch.zeros(self.n, N, N, device=self.device)
        frame[torch.arange(self.n, device=self.device), self.t, self.col] = 1.0
        on_paddle = (self._cells >= self.paddle[:, None]) & (self._cells < self.paddle[:, None]
                                                             + self.rules.paddle)  # [n, N]
        frame[:, N - 1] = torch.maximum(frame[:, N - 1], on_paddle.float())
        visible = (self.t < self.rules.M).float()
        return frame * visible[:, None, None]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: positions and each game's generator."""
        return {"t": self.t.cpu(), "col": self.col.cpu(), "dir": self.dir.cpu(),
                "paddle": self.paddle.cpu(), "rngs": [r.bit_generator.state for r in self._rngs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["rngs"]) != self.n:
            raise ValueError(f"state of {len(state['rngs'])} games loaded into {self.n}")
        for name in ("t", "col", "dir", "paddle"):
            setattr(self, name, state[name].to(self.device))
        for rng, s in zip(self._rngs, state["rngs"]):
            rng.bit_generator.state = s
