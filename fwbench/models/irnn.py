"""IRNN (Le, Jaitly & Hinton 2015): a ReLU RNN whose recurrent weights start at the identity.

    h(t+1) = ReLU(W h(t) + C x(t) + b),   W(0) = I

With `layernorm` the pre-activation is layer-normalised per example (the control that
isolates layer norm from fast weights; registered as `irnn-ln`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class IRNNConfig(CoreConfig):
    layernorm: bool = setting(False, "layer-normalise the pre-activation (per example)")
    w_scale: float = setting(1.0, "recurrent weights start at w_scale * identity", low=0.0)


class IRNN(RecurrentCore):
    Config = IRNNConfig
    summary = "ReLU RNN with identity-initialised recurrent weights (Le et al. 2015)"

    def __init__(self, input_size: int, cfg: IRNNConfig):
        super().__init__(input_size, cfg)
        H = cfg.hidden
        self.C = nn.Linear(input_size, H)
        self.W = nn.Linear(H, H, bias=False)
        with torch.no_grad():
            self.W.weight.copy_(cfg.w_scale * torch.eye(H))
            self.C.bias.zero_()
        self.ln = nn.LayerNorm(H) if cfg.layernorm else nn.Identity()

    def initial_state(self, batch, device=None):
        return self.zeros(batch, self.cfg.hidden, device=device)

    def step(self, x, h):
        h = torch.relu(self.ln(self.W(h) + self.C(x)))
        return h, h

    def forward(self, x, state=None):
        h = self.initial_state(x.shape[0], x.device) if state is None else state
        cx = self.C(x)  # [B, T, H]: input projection for every step at once
        ys = []
        for t in range(x.shape[1]):
            h = torch.relu(self.ln(self.W(h) + cx[:, t]))
            ys.append(h)
        return torch.stack(ys, dim=1), h
