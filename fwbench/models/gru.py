"""GRU (Cho et al. 2014), one layer, in torch's nn.GRU parameterisation:

    r = σ(W_ir x + b_ir + W_hr h + b_hr),   z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),   h' = (1 - z) ⊙ n + z ⊙ h

Two implementations compute the same function (`impl`): `torch` is nn.GRU itself (the
reference; `step` runs its cell on the same weights); `fused` is a C kernel for CPU (gru_fused.py, gru_kernel.c:
the recurrence over the whole sequence per call, batch in SIMD lanes, the recurrent product
through torch's BLAS, hand-written backward), which `auto` picks when it compiles.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import _VF, nn

from fwbench.models import gru_fused as fused
from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.models.native import KernelChoice
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class GRUConfig(CoreConfig):
    impl: str = setting("auto", "implementation (auto: the compiled CPU kernel when it compiles, "
                        "else torch's nn.GRU)", choices=("auto", "torch", "fused"), added=True)


class GRU(KernelChoice, RecurrentCore):
    Config = GRUConfig
    summary = "gated recurrent unit (torch nn.GRU's equations)"
    memory = ()  # h is all the state: under level marks the finer level leaves no trace [C]
    kernel, step_impl = fused, "torch"  # the compiled CPU kernel (impl = fused); `step`: torch
    replay_update = False  # its step is a cell as cheap as the sequence form, per step

    def __init__(self, input_size: int, cfg: GRUConfig):
        super().__init__(input_size, cfg)
        self.gru = nn.GRU(input_size, cfg.hidden, batch_first=True)

    def initial_state(self, batch, device=None):
        return self.zeros(batch, self.cfg.hidden, device=device)

    def step(self, x, h):
        # the cell on nn.GRU's own weights: a length-1 nn.GRU call costs several times more
        g = self.gru
        h = _VF.gru_cell(x, h, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
        return h, h

    def forward(self, x, state=None):
        """x[B, T, D] -> (y[B, T, H], h(T)), from `state` (None: zero)."""
        if self.choose_impl(x) == "fused":
            return self.forward_fused(x, state)
        return self.forward_torch(x, state)

    def forward_fused(self, x, state=None):
        """The compiled CPU kernel over the whole sequence, with its hand-written backward;
        a long sequence in segments of at most `segment_bytes` of kept state."""
        g = self.gru
        ys, h = [], state
        for part in self.segments(x, x.shape[0] * 4 * self.cfg.hidden * x.element_size()):
            y = fused.FusedGRU.apply(F.linear(part, g.weight_ih_l0, g.bias_ih_l0), h,
                                     g.weight_hh_l0, g.bias_hh_l0)
            ys.append(y)
            h = y[:, -1]
        return (torch.cat(ys, dim=1) if len(ys) > 1 else ys[0]), h

    def forward_torch(self, x, state=None):
        """torch's nn.GRU (the reference)."""
        h = self.initial_state(x.shape[0], x.device) if state is None else state
        y, h = self.gru(x, h[None])  # torch wants [layers, B, H]
        return y, h[0]
