"""Assembling networks from the registries: the task, the model plugin, and around it the
supervised classifier (`fwbench.classifier`) or the reinforcement-learning agent
(`fwbench.agent`), each initialised from the learner's seed."""

from __future__ import annotations

import torch

from fwbench.agent import Agent
from fwbench.classifier import Classifier
from fwbench.config import RunConfig
from fwbench.errors import FwbenchError
from fwbench.models import MODELS
from fwbench.models.base import Model, RecurrentCore
from fwbench.tasks import TASKS


def build_task(cfg: RunConfig):
    """The task object of the run's task settings."""
    return TASKS.get(cfg.task)(cfg.task_cfg)


def build_model(cfg: RunConfig, input_size: int) -> Model:
    """The model plugin for inputs of `input_size` (features, or channels for images)."""
    return MODELS.get(cfg.model)(input_size, cfg.model_cfg)


def build_classifier(cfg: RunConfig, task) -> Classifier:
    """The whole supervised network; initialised from the learner's seed."""
    torch.manual_seed(cfg.learner_cfg.seed)
    model_cls = MODELS.get(cfg.model)
    encoder, size = task.encoder(model_cls.consumes)
    model = build_model(cfg, size)
    marks = task.marks() if model.consumes == "sequence" else None
    return Classifier(encoder, model, cfg.learner_cfg.readout, task.num_classes,
                      getattr(task, "read_positions", None), marks)


def build_agent(cfg: RunConfig, task) -> Agent:
    """The agent playing an episodic task; initialised from the learner's seed."""
    torch.manual_seed(cfg.learner_cfg.seed)
    units = getattr(cfg.learner_cfg, "obs_encoder", 0)
    features = units or task.observation_size
    core = build_model(cfg, features + task.num_actions)
    if not isinstance(core, RecurrentCore):
        raise FwbenchError(f"model {cfg.model!r} is not a recurrent core; the {cfg.learner} "
                           "learner needs one (step with carried state)")
    encoder = (torch.nn.Sequential(torch.nn.Linear(task.observation_size, units),
                                   torch.nn.ReLU()) if units else None)
    return Agent(core, task.num_actions, encoder)
