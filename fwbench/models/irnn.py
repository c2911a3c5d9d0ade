"""IRNN (Le, Jaitly & Hinton 2015): a ReLU RNN whose recurrent weights start at the identity.

    h(t+1) = ReLU(W h(t) + C x(t) + b),   W(0) = I

With `layernorm` the pre-activation is layer-normalised per example (the control that
isolates layer norm from fast weights; registered as `irnn-ln`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import _VF, nn

from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class IRNNConfig(CoreConfig):
    layernorm: bool = setting(False, "layer-normalise the pre-activation (per example)")
    w_scale: float = setting(1.0, "recurrent weights start at w_scale * identity", low=0.0)


class IRNN(RecurrentCore):
    Config = IRNNConfig
    summary = "ReLU RNN with identity-initialised recurrent weights (Le et al. 2015)"
    memory = ()  # h is all the state: under level marks the finer level leaves no trace [C]
    replay_update = False  # its step is a cell as cheap as the sequence form, per step

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
        if self.cfg.layernorm:
            return self.forward_reference(x, state)
        h = self.initial_state(x.shape[0], x.device) if state is None else state
        # torch's own ReLU RNN loop on our weights (the same sums, far fewer Python-side ops);
        # its second bias is a constant zero: b is C's alone
        weights = [self.C.weight, self.W.weight, self.C.bias, self._zero_bias(x)]
        y, h = _VF.rnn_relu(x, h[None], weights, True, 1, 0.0, self.training, False, True)
        return y, h[0]

    def forward_reference(self, x, state=None):
        """The step loop (any setting): input projection for every step at once, then W h."""
        h = self.initial_state(x.shape[0], x.device) if state is None else state
        ys = []
        for cx in self.C(x).unbind(1):  # unbind: per-step indexing would be O(T^2) backward
            h = torch.relu(self.ln(self.W(h) + cx))
            ys.append(h)
        return torch.stack(ys, dim=1), h

    def _zero_bias(self, x):
        return torch.zeros(self.cfg.hidden, dtype=self.W.weight.dtype, device=x.device)
