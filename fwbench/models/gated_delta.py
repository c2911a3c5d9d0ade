"""Gated delta rule (Yang, Kautz & Hatamizadeh 2024), docs/paper.md §4.3: the delta rule with
a learned, data-dependent decay α_t = σ(w_α x_t + b_α) ∈ (0, 1) per head:

    S_t = α_t (I - β_t φ(k_t) φ(k_t)^T) S_{t-1} + β_t φ(k_t) v_t^T,   o_t = S_t^T φ(q_t)

i.e. the delta step applied to α_t S_{t-1}. The decay lets the memory forget wholesale, which
the delta rule alone can only do key by key. Chunked form: with γ_t = Π_{i≤t} α_i inside the
chunk and Γ_ti = γ_t / γ_i (i ≤ t), the UT system of the delta rule becomes

    (I + tril_strict(diag(β) (Γ ⊙ K K^T))) U = diag(β) (V - diag(γ) K S_0),
    O = diag(γ) Q S_0 + (Γ ⊙ tril(Q K^T)) U,   S = γ_C S_0 + (K ⊙ γ_C / γ)^T U.

The decay's parameterisation (a sigmoid, bias `decay_init` at start) is our choice [C]; Yang
et al. use a Mamba-2 style exponential of a softplus.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from fwbench.models.delta import DeltaConfig, delta_step, ut_transform
from fwbench.models.fwp import FWPCore, scores
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class GatedDeltaConfig(DeltaConfig):
    decay_init: float = setting(3.0, "initial bias b_α of the decay α = σ(w_α x + b_α) "
                                "(3: α ≈ 0.95 at start)", paper="[C]")


class GatedDeltaNet(FWPCore):
    Config = GatedDeltaConfig
    summary = "delta rule with a learned decay (Gated DeltaNet, Yang et al. 2024)"
    gate_count = 2
    fused_rule = True

    def __init__(self, input_size, cfg):
        super().__init__(input_size, cfg)
        with torch.no_grad():  # gate outputs are per head (β, α) pairs: [.., h, 2]
            self.gate.bias.view(cfg.heads, 2)[:, 1].fill_(cfg.decay_init)

    def gates(self, pre):
        return torch.sigmoid(pre[..., 0]), F.logsigmoid(pre[..., 1])  # β, log α [B, h, T]

    def rule_step(self, S, q, k, v, beta, log_alpha):
        return delta_step(log_alpha.exp()[..., None, None] * S, q, k, v, beta)

    def rule_chunks(self, S, q, k, v, beta, log_alpha, final=True):
        C = q.shape[3]
        causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        g = log_alpha.cumsum(-1)  # log γ_t inside each chunk [B, h, N, C]
        # Γ_ti = γ_t / γ_i for i ≤ t; masked before exp so that i > t never overflows
        decay = (g[..., :, None] - g[..., None, :]).masked_fill(~causal, float("-inf")).exp()
        outs, N = [], q.shape[2]
        # W reads the state carried into a chunk: none into a lone chunk from zero
        need_w = S is not None or N > 1
        qk, kk = scores(q, k, with_kk=True)  # [B, h, N, C, C]
        W, U = ut_transform(k, v, beta, decay * kk, k_scale=g.exp() if need_w else None,
                            need_w=need_w)
        att = decay * qk  # zero above the diagonal
        if W is None:  # one chunk from zero (short sequences): nothing to read or decay
            if not final:
                return att @ U, None
            tail = (g[..., -1:] - g).exp()  # γ_C / γ_i [B, h, 1, C]
            return att @ U, ((k * tail[..., None]).transpose(-1, -2) @ U)[:, :, 0]
        # unbind once: indexing [:, :, n] per chunk would make backward O(N^2)
        chunks = zip(*(t.unbind(2) for t in (q, k, g, att, W, U)))
        for n, (qn, kn, gn, an, Wn, Un) in enumerate(chunks):
            if S is None:  # zero state: nothing to read, correct or decay
                u = Un
                outs.append(an @ u)
            else:
                u = Un - Wn @ S
                outs.append(gn.exp()[..., None] * (qn @ S) + an @ u)
            if final or n < N - 1:
                tail = (gn[..., -1:] - gn).exp()  # γ_C / γ_i [B, h, C]
                new = (kn * tail[..., None]).transpose(-1, -2) @ u
                S = new if S is None else gn[..., -1].exp()[..., None, None] * S + new
        return torch.stack(outs, dim=2), (S if final else None)
