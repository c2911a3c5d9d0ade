"""The task contract.

A task owns its data and the part of the network that is specific to its inputs (the encoder
that turns raw inputs into the vectors a model consumes). Which training loop runs it is named
by `learner` ("supervised" here; reinforcement-learning tasks name their own).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

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
