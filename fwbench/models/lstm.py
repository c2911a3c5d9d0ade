"""LSTM (Hochreiter & Schmidhuber 1997): torch's fused nn.LSTM, one layer."""

from __future__ import annotations

import dataclasses

import torch
from torch import _VF, nn

from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class LSTMConfig(CoreConfig):
    forget_bias: float = setting(1.0, "initial forget-gate bias", paper="[C]")


class LSTM(RecurrentCore):
    Config = LSTMConfig
    summary = "standard LSTM cell (torch nn.LSTM)"
    memory = (1,)  # (h, c): the gated cell c is the memory, h the working state [C]
    replay_update = False  # its step is a cell as cheap as the sequence form, per step

    def __init__(self, input_size: int, cfg: LSTMConfig):
        super().__init__(input_size, cfg)
        H = cfg.hidden
        self.lstm = nn.LSTM(input_size, H, batch_first=True)
        with torch.no_grad():  # gate order in torch: input, forget, cell, output
            self.lstm.bias_ih_l0[H:2 * H].fill_(cfg.forget_bias)
            self.lstm.bias_hh_l0[H:2 * H].zero_()

    def initial_state(self, batch, device=None):
        z = self.zeros(batch, self.cfg.hidden, device=device)
        return (z, z.clone())

    def step(self, x, state):
        # the cell on nn.LSTM's own weights: a length-1 nn.LSTM call costs several times more
        m = self.lstm
        h, c = _VF.lstm_cell(x, state, m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)
        return h, (h, c)

    def forward(self, x, state=None):
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        h, c = state
        y, (h, c) = self.lstm(x, (h[None], c[None]))  # torch wants [layers, B, H]
        return y, (h[0], c[0])
