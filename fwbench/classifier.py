"""The supervised network: a task's encoder, a model plugin and a classification head."""

from __future__ import annotations

import torch
from torch import nn

from fwbench.models.base import Model


class Classifier(nn.Module):
    """encoder -> model -> (last output) -> hidden layer of ReLUs -> class logits.

    With `read` (output positions, e.g. (-3, -2, -1)) a sequence model's outputs at each of
    those positions are classified: logits [B, len(read), classes] instead of [B, classes].
    With `marks` (a level mark per step, fwbench.models.base) the model honours them.
    """

    def __init__(self, encoder: nn.Module, model: Model, readout: int, num_classes: int,
                 read: tuple[int, ...] | None = None, marks: tuple[int, ...] | None = None):
        super().__init__()
        self.encoder = encoder
        self.model = model
        self.read = read
        self.marks = marks
        self.head = nn.Sequential(nn.Linear(model.output_size, readout), nn.ReLU(),
                                  nn.Linear(readout, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        if self.model.consumes == "sequence":
            y = (self.model.outputs(z) if self.marks is None
                 else self.model.forward_levels(z, self.marks))  # [B, T, H]
            return y[:, -1] if self.read is None else y[:, list(self.read)]  # [B, (Q,) H]
        return self.model(z)  # [B, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
