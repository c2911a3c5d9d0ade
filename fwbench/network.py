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
    """encoder -> model -> (last output) -> hidden layer of ReLUs -> class logits."""

    def __init__(self, encoder: nn.Module, model: Model, readout: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.model = model
        self.head = nn.Sequential(nn.Linear(model.output_size, readout), nn.ReLU(),
                                  nn.Linear(readout, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        if self.model.consumes == "sequence":
            y, _ = self.model(z)  # [B, T, H]
            return y[:, -1]
        return self.model(z)  # [B, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(cfg: RunConfig, task) -> Classifier:
    """The whole supervised network; initialised from the learner's seed."""
    torch.manual_seed(cfg.learner_cfg.seed)
    model_cls = MODELS.get(cfg.model)
    encoder, size = task.encoder(model_cls.consumes)
    model = build_model(cfg, size)
    return Classifier(encoder, model, cfg.learner_cfg.readout, task.num_classes)
