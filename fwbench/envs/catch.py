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


def ball_paths(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a ball at (column c, direction d) is k steps later: columns and directions
    [3N, N] indexed by [3c + d + 1, k], by CatchEnv.step's rule applied k times."""
    starts = torch.arange(3 * N)
    col, direction = starts // 3, starts % 3 - 1
    cols, dirs = [col], [direction]
    for _ in range(N - 1):
        col = col + direction
        bounce = (col < 0) | (col > N - 1)  # off a side wall: reflect position and direction
        col = torch.where(col < 0, -col, torch.where(col > N - 1, 2 * (N - 1) - col, col))
        direction = torch.where(bounce, -direction, direction)
        cols.append(col)
        dirs.append(direction)
    return torch.stack(cols, 1), torch.stack(dirs, 1)


class BatchedCatch:
    """n Catch games as tensors [n], stepped together; same rules and draws as CatchEnv.

    A ball's flight is fixed when it is dropped, so each game holds its whole path (the flat
    frame cell and direction at every step) and a step only moves the paddle and the clock.
    Python-side bounds on the games' clocks skip the work no game needs: drawing frames once
    every game is past its M visible frames, scoring before any game has ended.
    """

    def __init__(self, rules: CatchRules, seeds: Sequence[int], device: str | torch.device = "cpu"):
        self.rules, self.n, self.device = rules, len(seeds), torch.device(device)
        self._rngs = [seeding.np_random(int(s))[0] for s in seeds]
        N, w, dev = rules.N, rules.paddle, self.device
        cols, dirs = ball_paths(N)
        self._cell_table = (cols + torch.arange(N) * N).to(dev)  # [3N, N]: flat cell row*N+col
        self._dir_table = dirs.to(dev)
        cells = torch.arange(N)
        left = torch.arange(N - w + 1)[:, None]
        # the bottom row with the paddle's left edge at p: [N - w + 1, N]
        self._paddle_rows = ((cells >= left) & (cells < left + w)).float().to(dev)
        self._steps = torch.arange(N, device=dev)
        self.t = torch.zeros(self.n, dtype=torch.long, device=dev)
        self.paddle = torch.zeros(self.n, dtype=torch.long, device=dev)
        self._cells = torch.zeros(self.n, N, dtype=torch.long, device=dev)  # [n, N] ball path
        self._dirs = torch.zeros(self.n, N, dtype=torch.long, device=dev)
        self.reset()

    def reset(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes where mask[n] is True (everywhere if None); the observations."""
        every = mask is None or bool(mask.all())
        idx = list(range(self.n)) if every else mask.nonzero()[:, 0].tolist()
        if idx:
            # each game draws from its own generator, as its CatchEnv twin would
            draws = [draw_start(self._rngs[i], self.rules) for i in idx]
            start = torch.tensor([3 * c + d + 1 for c, d in draws], device=self.device)
            at = slice(None) if every else torch.tensor(idx, device=self.device)
            self._cells[at], self._dirs[at] = self._cell_table[start], self._dir_table[start]
            self.t[at], self.paddle[at] = 0, self.rules.paddle_start
            self._t_min = 0
            self._t_max = 0 if every else int(self.t.max())
        return self.observe()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """actions[n] -> (observations [n, N, N], rewards [n], done [n]); no automatic reset."""
        L = self.rules.episode_length
        if self._t_max >= L:
            raise RuntimeError("step() on finished episodes: reset(done) them first")
        # paddle moves by action - 1 and stops at the walls
        self.paddle.add_(actions.to(self.device, torch.long)).sub_(1)
        self.paddle.clamp_(0, self.rules.N - self.rules.paddle)
        self.t.add_(1)
        self._t_min, self._t_max = self._t_min + 1, self._t_max + 1
        if self._t_max < L:  # no game ends on this step
            reward = torch.zeros(self.n, device=self.device)
            return self.observe(), reward, torch.zeros_like(reward, dtype=torch.bool)
        done = self.t == L
        col = self.col
        caught = (col >= self.paddle) & (col < self.paddle + self.rules.paddle)
        reward = torch.where(caught, 1.0, -1.0) * done
        return self.observe(), reward, done

    def observe(self) -> torch.Tensor:
        """The current frames [n, N, N], blank after the first M."""
        N, M = self.rules.N, self.rules.M
        frame = torch.zeros(self.n, N, N, device=self.device)
        if self._t_min >= M:  # every game is past its visible frames
            return frame
        frame[:, N - 1] = self._paddle_rows[self.paddle]
        frame.view(self.n, N * N).scatter_(1, self._cell_now()[:, None], 1.0)  # the ball
        if self._t_max >= M:  # some games see a blank screen already
            frame *= (self.t < M)[:, None, None]
        return frame

    @property
    def col(self) -> torch.Tensor:
        """The ball's column in every game [n]."""
        return self._cell_now() % self.rules.N

    @property
    def dir(self) -> torch.Tensor:
        """The ball's horizontal direction (-1, 0, +1) in every game [n]."""
        return self._dirs.gather(1, self.t[:, None])[:, 0]

    def _cell_now(self) -> torch.Tensor:
        """The ball's flat cell row*N + col in every game [n]."""
        return self._cells.gather(1, self.t[:, None])[:, 0]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: positions and each game's generator."""
        return {"t": self.t.cpu().clone(), "col": self.col.cpu(), "dir": self.dir.cpu(),
                "paddle": self.paddle.cpu().clone(),
                "rngs": [r.bit_generator.state for r in self._rngs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["rngs"]) != self.n:
            raise ValueError(f"state of {len(state['rngs'])} games loaded into {self.n}")
        t, col, direction = (state[k].to(self.device, torch.long) for k in ("t", "col", "dir"))
        self.t = t.clone()
        self.paddle = state["paddle"].to(self.device, torch.long).clone()
        # the path from where each ball is now: step k of the game is k - t steps ahead
        ahead = (self._steps - t[:, None]).clamp(min=0)  # [n, N]; steps before t are unused
        start = 3 * col + direction + 1
        self._cells = self._cell_table[start].gather(1, ahead)
        # the table's cells count rows from the ball's row at t: shift them down by t rows
        self._cells += (t * self.rules.N)[:, None]
        self._dirs = self._dir_table[start].gather(1, ahead)
        self._t_min, self._t_max = int(self.t.min()), int(self.t.max())
        for rng, s in zip(self._rngs, state["rngs"]):
            rng.bit_generator.state = s
