"""Associative LSTM (Danihelka, Wayne, Uria, Kalchbrenner & Graves 2016, arXiv 1602.03032).

A holographic memory of complex vectors. From [x(t), h(t-1)]: real gates g_f, g_i, g_o
(sigmoid) and complex input key r_i, output key r_o and update u, each bounded elementwise by
bound(z) = z / max(1, |z|). The cell keeps N copies c_s; copy s sees the keys through a fixed
random permutation P_s (redundant storage reduces retrieval noise):

    c_s(t) = g_f * c_s(t-1) + (P_s r_i) ⊛ (g_i * u)
    h(t)   = g_o * bound( (1/N) Σ_s (P_s r_o) ⊛ c_s(t) )

⊛ is the elementwise complex product. Hidden size H counts real units (H/2 complex units), so
H must be even. The complex numbers are kept as (real, imaginary) halves of real tensors.

Two implementations compute the same function (`impl`):

* `torch`: the step loop below, a few dozen small torch operations per step; the reference,
  and the form `step()` uses for one-input-at-a-time use.
* `fused`: the recurrence over the whole sequence as one call of a compiled CPU kernel, with a
  hand-written backward (alstm_fused.py, alstm_kernel.c); float32/float64 on CPU, needs a C
  compiler (compiled once, cached). The same operations in the same order: equal at rounding
  level.

`auto` picks `fused` when it can run, else `torch`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fwbench.errors import FwbenchError
from fwbench.models import alstm_fused as fused
from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.models.native import KernelChoice
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class ALSTMConfig(CoreConfig):
    copies: int = setting(4, "number of redundant memory copies N", low=1, paper="[C]")
    impl: str = setting("auto", "implementation (auto: the compiled CPU kernel when it compiles, "
                        "else torch)", choices=("auto", "torch", "fused"), added=True)

    def validate(self):
        if self.hidden % 2:
            raise FwbenchError(f"invalid value {self.hidden} for hidden: alstm needs an even "
                               "number of units (H/2 complex units)")


def _cmul(a_re, a_im, b_re, b_im):
    return a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re


def _bound(re, im):
    scale = torch.clamp(torch.sqrt(re * re + im * im), min=1.0)
    return re / scale, im / scale


class AssociativeLSTM(KernelChoice, RecurrentCore):
    Config = ALSTMConfig
    summary = "associative LSTM: holographic complex memory with N permuted copies"
    memory = (1,)  # (h, c): the holographic copies c are the memory, h the working state [C]
    kernel, step_impl = fused, "torch"  # the compiled CPU kernel (impl = fused); `step`: torch

    def __init__(self, input_size: int, cfg: ALSTMConfig):
        super().__init__(input_size, cfg)
        H, N = cfg.hidden, cfg.copies
        self.hc = H // 2
        # 3 real gates of Hc, 3 complex vectors (r_i, r_o, u) of Hc each = 9 Hc outputs
        self.x_proj = nn.Linear(input_size, 9 * self.hc)
        self.h_proj = nn.Linear(H, 9 * self.hc, bias=False)
        perms = torch.stack([torch.randperm(self.hc) for _ in range(N)])  # [N, Hc]
        self.register_buffer("perms", perms)

    def initial_state(self, batch, device=None):
        H, N = self.cfg.hidden, self.cfg.copies
        return (self.zeros(batch, H, device=device), self.zeros(batch, N, H, device=device))

    def _cell(self, px, state):
        h, c = state  # h[B, H], c[B, N, H] (real halves then imaginary halves)
        Hc = self.hc
        z = px + self.h_proj(h)  # [B, 9 Hc]
        gf, gi, go = torch.sigmoid(z[:, :3 * Hc]).split(Hc, dim=1)
        ri_re, ri_im, ro_re, ro_im, u_re, u_im = z[:, 3 * Hc:].split(Hc, dim=1)
        ri_re, ri_im = _bound(ri_re, ri_im)
        ro_re, ro_im = _bound(ro_re, ro_im)
        u_re, u_im = _bound(u_re, u_im)
        # permuted keys for every copy: [B, N, Hc]
        pri_re, pri_im = ri_re[:, self.perms], ri_im[:, self.perms]
        pro_re, pro_im = ro_re[:, self.perms], ro_im[:, self.perms]
        w_re, w_im = _cmul(pri_re, pri_im, (gi * u_re)[:, None], (gi * u_im)[:, None])
        c_re = gf[:, None] * c[..., :Hc] + w_re
        c_im = gf[:, None] * c[..., Hc:] + w_im
        r_re, r_im = _cmul(pro_re, pro_im, c_re, c_im)
        o_re, o_im = _bound(r_re.mean(dim=1), r_im.mean(dim=1))
        h = torch.cat([go * o_re, go * o_im], dim=1)
        return h, (h, torch.cat([c_re, c_im], dim=2))

    def step(self, x, state):
        return self._cell(self.x_proj(x), state)

    def forward(self, x, state=None):
        """x[B, T, D] -> (y[B, T, H], (h(T), c(T))), from `state` (None: zero)."""
        if self.choose_impl(x) == "fused":
            return self.forward_fused(x, state)
        return self.forward_torch(x, state)

    def forward_fused(self, x, state=None):
        """The compiled CPU kernel over the whole sequence, with its hand-written backward; a
        long sequence in segments of at most `segment_bytes` of kept tensors."""
        h, c = (None, None) if state is None else state  # None: zero, skipped by the kernel
        H, N = self.cfg.hidden, self.cfg.copies
        per_step = x.shape[0] * (9 * self.hc + N * H + 2 * H) * x.element_size()  # Z, C, M, Y
        ys = []
        for part in self.segments(x, per_step):
            y, c = fused.FusedALSTM.apply(self.x_proj(part), h, c, self.h_proj.weight,
                                          self.perms)
            ys.append(y)
            h = y[:, -1]
        return (torch.cat(ys, dim=1) if len(ys) > 1 else ys[0]), (h, c)

    def forward_torch(self, x, state=None):
        """The step loop of `_cell` in torch operations (the reference)."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        px = self.x_proj(x)  # [B, T, 9 Hc] for all steps at once
        ys = []
        for pxt in px.unbind(1):  # unbind once: indexing px[:, t] makes backward O(T^2)
            y, state = self._cell(pxt, state)
            ys.append(y)
        return torch.stack(ys, dim=1), state
