"""GRU (Cho et al. 2014): torch's fused nn.GRU, one layer.

    r = σ(W_ir x + b_ir + W_hr h + b_hr),   z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),   h' = (1 - z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

from torch import nn

from fwbench.models.base import CoreConfig, RecurrentCore


class GRU(RecurrentCore):
    Config = CoreConfig
    summary = "gated recurrent unit (torch nn.GRU)"
    memory = ()  # h is all the state: under level marks the finer level leaves no trace [C]

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__(input_size, cfg)
        self.gru = nn.GRU(input_size, cfg.hidden, batch_first=True)

    def initial_state(self, batch, device=None):
        return self.zeros(batch, self.cfg.hidden, device=device)

    def step(self, x, h):
        y, h = self.forward(x[:, None], h)
        return y[:, 0], h

    def forward(self, x, state=None):
        h = self.initial_state(x.shape[0], x.device) if state is None else state
        y, h = self.gru(x, h[None])  # torch wants [layers, B, H]
        return y, h[0]
