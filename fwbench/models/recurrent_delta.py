"""Recurrent Delta Network (Irie, Schlag, Csordás & Schmidhuber 2021), PAPER.md section 4: the
delta rule whose keys, values, queries and β also read the previous output y_{t-1}:

    k_t, v_t, q_t = conv(W x)_t + R tanh(y_{t-1}),     β_t = σ(w_β x_t + r_β tanh(y_{t-1}))
    S_t = S_{t-1} + β_t φ(k_t) (v_t - S_{t-1}^T φ(k_t))^T,   y_t = S_t^T φ(q_t)

y is the concatenated output of the heads before the output map; the tanh squashing of the
recurrent input follows Irie et al. [R]. The recurrence through y makes the rule strictly
sequential: `forward` projects every input at once, then steps the rule (no chunked form).
"""

from __future__ import annotations

import torch
from torch import nn

from fwbench.models.delta import delta_step
from fwbench.models.fwp import FWPConfig, FWPCore


class RecurrentDeltaNet(FWPCore):
    Config = FWPConfig
    summary = "delta rule whose k, v, q, β also read the previous output (Irie et al. 2021)"
    gate_count = 1

    def __init__(self, input_size, cfg):
        super().__init__(input_size, cfg)
        self.rec = nn.Linear(cfg.hidden, self.proj.channels + cfg.heads, bias=False)

    def gates(self, pre):
        return (torch.sigmoid(pre[..., 0]),)  # β [B, h, T]

    def initial_state(self, batch, device=None):
        return super().initial_state(batch, device) + \
            (self.zeros(batch, self.cfg.hidden, device=device),)

    def state_size(self, seq_len):
        return super().state_size(seq_len) + self.cfg.hidden

    def _rule(self, S, y_prev, q, k, v, beta_pre):
        """One step from pre-recurrence q, k, v [B, h, d] and β pre-activation [B, h]."""
        h, C = self.cfg.heads, self.proj.channels
        r = self.rec(torch.tanh(y_prev))  # [B, channels + h]
        rq, rk, rv = r[:, :C].split([h * self.proj.dk, h * self.proj.dk, h * self.proj.dv], -1)
        q = self.phi(q + rq.view_as(q))
        k = self.phi(k + rk.view_as(k))
        o, S = delta_step(S, q, k, v + rv.view_as(v), torch.sigmoid(beta_pre + r[:, C:]))
        return o, S

    def _project(self, x, buf):
        """x[B, T, D] -> raw q, k, v [B, h, T, d], β pre-activation [B, h, T], buffer."""
        q, k, v, buf = self.proj(x, buf)
        return q, k, v, self.gate(x).transpose(1, 2), buf

    def step(self, x, state):
        buf, S, y = state
        q, k, v, b, buf = self._project(x[:, None], buf)  # T = 1
        o, S = self._rule(S, y, q[:, :, 0], k[:, :, 0], v[:, :, 0], b[:, :, 0])
        y = o.flatten(1)  # [B, h*d_v]
        return self.out(y), (buf, S, y)

    def forward(self, x, state=None):
        buf, S, y = self.initial_state(x.shape[0], x.device) if state is None else state
        q, k, v, b, buf = self._project(x, buf)
        ys = []
        # unbind once: indexing [:, :, t] per step would make backward O(T^2)
        for qt, kt, vt, bt in zip(*(t.unbind(2) for t in (q, k, v, b))):
            o, S = self._rule(S, y, qt, kt, vt, bt)
            y = o.flatten(1)  # [B, h*d_v]
            ys.append(y)
        return self.out(torch.stack(ys, dim=1)), (buf, S, y)

    def outputs(self, x):
        """y[B, T, hidden] from the zero state (the step loop; no chunked form)."""
        return self(x)[0]
