"""Assembling a network from a task's encoder, a model plugin and a head."""

from __future__ import annotations

import torch
from torch import nn

from fwbench.config import RunConfig
from fwbench.models import MODELS
from fwbench.models.base import Model
from fwbench.tasks import TASKS


def build_task(cfg: RunConfig):
    return TASKS.get(cfg.task)(cfg.task_cfg)


def build_model(cfg: RunConfig, input_size: int) -> Model:
    return MODELS.get(cfg.model)(input_size, cfg.model_cfg)


class Classifier(nn.Module):
    """encoder -> model -> (last output) -> hidden layer of ReLUs -> class logits.

    With `read` (output positions, e.g. (-3, -2, -1)) a sequence model's outputs at each of
    those positions are classified: logits [B, len(read), classes] instead of [B, classes].
    """

    def __init__(self, encoder: nn.Module, model: Model, readout: int, num_classes: int,
                 read: tuple[int, ...] | None = None):
        super().__init__()
        self.encoder = encoder
        self.model = model
        self.read = read
        self.head = nn.Sequential(nn.Linear(model.output_size, readout), nn.ReLU(),
                                  nn.Linear(readout, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        if self.model.consumes == "sequence":
            y = self.model.outputs(z)  # [B, T, H]
            return y[:, -1] if self.read is None else y[:, list(self.read)]  # [B, (Q,) H]
        return self.model(z)  # [B, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(cfg: RunConfig, task) -> Classifier:
    """The whole supervised network; initialised from the learner's seed."""
    torch.manual_seed(cfg.learner_cfg.seed)
    model_cls = MODELS.get(cfg.model)
    encoder, size = task.encoder(model_cls.consumes)
    model = build_model(cfg, size)
    return Classifier(encoder, model, cfg.learner_cfg.readout, task.num_classes,
                      getattr(task, "read_positions", None))
