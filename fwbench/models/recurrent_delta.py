"""Recurrent Delta Network (Irie, Schlag, Csordás & Schmidhuber 2021), docs/paper.md §4.4: the
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

from fwbench.models.delta import delta_step, delta_step_fast
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

    def _rule(self, S, y_prev, z, rule=delta_step):
        """One step from the pre-recurrence projections z[B, channels + h] (q, k, v, β)."""
        B, h, dk, C = z.shape[0], self.cfg.heads, self.proj.dk, self.proj.channels
        pre = z + self.rec(torch.tanh(y_prev))  # [B, channels + h]
        qk = self.phi(pre[:, :2 * h * dk].view(B, 2, h, dk))  # φ(q), φ(k) together
        v = pre[:, 2 * h * dk:C].view(B, h, self.proj.dv)
        return rule(S, qk[:, 0], qk[:, 1], v, torch.sigmoid(pre[:, C:]))

    def _project(self, x, buf):
        """x[B, T, D] -> z[B, T, channels + h] (convolved q, k, v and β pre-activation), buf."""
        z, buf = self.proj.conv(self.proj.proj(x), buf)
        return torch.cat([z, self.gate(x)], dim=-1), buf

    def step(self, x, state):
        buf, S, y = state
        z, buf = self._project(x[:, None], buf)  # T = 1
        o, S = self._rule(S, y, z[:, 0])
        y = o.flatten(1)  # [B, h*d_v]
        return self.out(y), (buf, S, y)

    def forward(self, x, state=None):
        return self._loop(x, state, delta_step_fast)

    def forward_reference(self, x, state=None):
        """The loop with the reference delta step (the form `step` uses)."""
        return self._loop(x, state, delta_step)

    def _loop(self, x, state, rule):
        buf, S, y = self.initial_state(x.shape[0], x.device) if state is None else state
        z, buf = self._project(x, buf)
        ys = []
        for zt in z.unbind(1):  # unbind once: indexing z[:, t] per step makes backward O(T^2)
            o, S = self._rule(S, y, zt, rule)
            y = o.flatten(1)  # [B, h*d_v]
            ys.append(y)
        return self.out(torch.stack(ys, dim=1)), (buf, S, y)

    def outputs(self, x):
        """y[B, T, hidden] from the zero state (the step loop; no chunked form)."""
        return self(x)[0]
