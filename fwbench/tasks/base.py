"""The task contracts: `SupervisedTask` (classification, learner "supervised") and
`EpisodicTask` (reinforcement learning, learner "a2c").

A supervised task owns its data and the part of the network that is specific to its inputs (the
encoder that turns raw inputs into the vectors a model consumes). An episodic task owns its
game: batched environments (`EpisodicEnv`) and what counts as a successful episode. Which
training loop runs a task is named by its `learner`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, Sequence

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Settings every task has (none yet); tasks subclass this."""


@dataclasses.dataclass
class Split:
    """Inputs and integer targets of one split, held as tensors."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


class SupervisedTask:
    """Classification from a sequence (or an image): the target is read after the last input."""

    Config: ClassVar[type] = TaskConfig
    summary: ClassVar[str] = ""
    learner: ClassVar[str] = "supervised"
    provides: ClassVar[tuple[str, ...]] = ("sequence",)  # input kinds: "sequence", "image"
    learner_defaults: ClassVar[dict[str, Any]] = {}  # task-specific defaults of learner settings

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def splits(self, data_seed: int) -> dict[str, Split]:
        """The fixed "train", "valid" and "test" splits, a pure function of `data_seed`."""
        raise NotImplementedError

    def extra_tests(self, data_seed: int) -> dict[str, Split]:
        """Further test sets evaluated at the end with the best checkpoint (name -> split)."""
        return {}

    def encoder(self, kind: str) -> tuple[nn.Module, int]:
        """The module turning a batch of raw inputs into what a `kind` model consumes, and the
        size of each resulting input vector (or channels, for images)."""
        raise NotImplementedError

    def marks(self) -> tuple[int, ...] | None:
        """Per-step level marks of every input sequence (fwbench.models.base), None: none."""
        return None

    @classmethod
    def check_model(cls, cfg: TaskConfig, model_cls: type) -> None:
        """FwbenchError if the task with settings `cfg` cannot feed model class `model_cls`."""

    # what a memory probe (`fwbench.probe`) can decode from a model's states: none by default
    probes: ClassVar[tuple[str, ...]] = ()

    def probe_targets(self, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Inputs x [N, T, ...] and targets y -> the label probe `name` decodes from the
        state after each step [N, T] (-1: none there)."""
        raise NotImplementedError


class EpisodicEnv(Protocol):
    """`n` episodes of one game held as tensors and stepped together (e.g. `BatchedCatch`)."""

    n: int

    def observe(self) -> torch.Tensor:
        """The current observations [n, ...]."""

    def reset(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes where mask[n] is True (everywhere if None); the observations."""

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """actions [n] -> (observations [n, ...], rewards [n], done [n]); no automatic reset."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, random generators included."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""


class EpisodicTask:
    """A task played in episodes for reward, one discrete action per step, and judged by how
    many episodes succeed. Every episode lasts exactly `episode_length` steps, so games stepped
    together stay in lockstep and a rollout of that length is one whole episode of each."""

    Config: ClassVar[type] = TaskConfig
    summary: ClassVar[str] = ""
    learner: ClassVar[str] = "a2c"
    provides: ClassVar[tuple[str, ...]] = ("sequence",)
    learner_defaults: ClassVar[dict[str, Any]] = {}
    # the success measure's name: metrics "train/<success>_rate", "eval/<success>_rate" and
    # summary keys "eval_<success>_rate", "best_eval_<success>_rate"
    success: ClassVar[str] = "success"

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg

    @property
    def observation_size(self) -> int:
        """Floats per observation (flattened)."""
        raise NotImplementedError

    @property
    def num_actions(self) -> int:
        raise NotImplementedError

    @property
    def episode_length(self) -> int:
        """Steps in every episode."""
        raise NotImplementedError

    def describe(self) -> str:
        """The settings that tell runs apart, for progress titles."""
        return ""

    def batched(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> EpisodicEnv:
        """len(seeds) games stepped together, game i seeded with seeds[i]."""
        raise NotImplementedError

    def succeeded(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Which games [n] ended a successful episode on the step that returned reward, done;
        by default an episode succeeds when its last reward is positive."""
        return done & (reward > 0)

    # what a memory probe (`fwbench.probe`) can decode from an agent's states: none by default
    probes: ClassVar[tuple[str, ...]] = ()

    def probe_targets(self, name: str, env: EpisodicEnv) -> torch.Tensor:
        """The label probe `name` decodes from the state after the current step's
        observation, per game [n] (-1: none there)."""
        raise NotImplementedError
