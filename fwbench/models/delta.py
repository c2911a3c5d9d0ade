"""Delta-rule Fast Weight Programmer, DeltaNet (Schlag, Irie & Schmidhuber 2021),
docs/paper.md §4.2, with a learned per-step learning rate β_t = σ(w_β x_t + b_β) per head:

    v̄_t = S_{t-1}^T φ(k_t),   S_t = S_{t-1} + β_t φ(k_t) (v_t - v̄_t)^T,   o_t = S_t^T φ(q_t)

The old value stored under the key is retrieved and replaced, so a re-assigned key overwrites
instead of piling up. Chunked training form, the WY/UT representation (Yang et al. 2024):
with u_t = β_t (v_t - v̄_t), inside a chunk started from S_0

    (I + tril_strict(diag(β) K K^T)) U = diag(β) (V - K S_0),

so U = U' - W S_0 with U' = T β V, W = T β K, T = (I + A)^-1 computed for every chunk at once
by a triangular solve; then O = Q S_0 + tril(Q K^T) U and S = S_0 + K^T U, chunk after chunk.
Keys normalised to ||φ(k)|| ≤ 1 (L2 by default, or sum with a positive feature map) make
(I - β φ(k) φ(k)^T) a contraction, so the memory stays bounded.
"""

from __future__ import annotations

import dataclasses

import torch

from fwbench.models.fwp import ChunkedConfig, FWPCore, scores
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class DeltaConfig(ChunkedConfig):
    impl: str = setting("auto", "implementation (auto = the compiled CPU kernel for fast weights "
                        "of at most 24 x 24 when it compiles, else chunked; reference = step "
                        "loop)", choices=("auto", "reference", "chunked", "fused"))


def delta_step(S, q, k, v, beta):
    """One delta-rule step (the reference): S[B, h, d_phi, d_v] -> (o[B, h, d_v], new S)."""
    v_old = torch.einsum("bhk,bhkv->bhv", k, S)  # what the key retrieves now
    S = S + beta[..., None, None] * k[..., :, None] * (v - v_old)[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", q, S), S


def delta_step_fast(S, q, k, v, beta):
    """`delta_step` in fewer passes over S: one product reads k and q against S_{t-1}, then
    o_t = S_{t-1}^T q + (q·k) u and S_t = S_{t-1} + k u^T (in a baddbmm, whose backward forms
    no S-sized products of its own). S[B, h, d_phi, d_v], q, k [B, h, d_phi], v [B, h, d_v]."""
    B, h, dk, dv = S.shape
    Sf = S.reshape(B * h, dk, dv)
    kq = torch.stack([k, q], dim=2).reshape(B * h, 2, dk)
    read = torch.bmm(kq, Sf).view(B, h, 2, dv)  # [k; q]^T S_{t-1}
    u = beta[..., None] * (v - read[:, :, 0])  # [B, h, d_v]
    o = torch.addcmul(read[:, :, 1], (q * k).sum(-1, keepdim=True), u)
    S = torch.baddbmm(Sf, k.reshape(B * h, dk, 1), u.reshape(B * h, 1, dv))
    return o, S.view(B, h, dk, dv)


def ut_transform(k, v, beta, kk, k_scale=None, need_w=True):
    """W = T diag(β) K_s and U' = T diag(β) V with T = (I + tril_strict(diag(β) kk))^-1, for
    every chunk at once: k [B, h, N, C, d_phi], kk [B, h, N, C, C] (pairwise key products,
    decay-weighted for the gated rule), k_scale [B, h, N, C] multiplies K in W (decay).
    W only corrects for a state carried into a chunk: need_w=False skips it (W is then None).

    A batched triangular solve costs in proportion to its right-hand columns (C x C systems
    of a few steps each are far from BLAS speed), so when a chunk has fewer steps than there
    are columns T itself is solved for (against I) and applied by one batched product."""
    C = k.shape[3]
    eye = torch.eye(C, dtype=k.dtype, device=k.device)
    A = eye + (beta[..., :, None] * kk).tril(-1)  # unit lower triangular [B, h, N, C, C]
    bv = beta[..., None] * v
    if need_w:
        bk = beta[..., None] * (k if k_scale is None else k * k_scale[..., None])
        rhs = torch.cat([bk, bv], dim=-1)  # [B, h, N, C, d_phi + d_v]
    else:
        rhs = bv
    if C < rhs.shape[-1]:
        inv = torch.linalg.solve_triangular(A, eye.expand_as(A), upper=False,
                                            unitriangular=True)
        sol = inv @ rhs
    else:
        sol = torch.linalg.solve_triangular(A, rhs, upper=False, unitriangular=True)
    if not need_w:
        return None, sol
    return sol.split([k.shape[-1], v.shape[-1]], dim=-1)


class DeltaNet(FWPCore):
    Config = DeltaConfig
    summary = "delta-rule fast weight programmer, learned β (DeltaNet, Schlag et al. 2021)"
    gate_count = 1
    fused_rule = True

    def gates(self, pre):
        return (torch.sigmoid(pre[..., 0]),)  # β [B, h, T]

    def rule_step(self, S, q, k, v, beta):
        return delta_step(S, q, k, v, beta)

    def rule_chunks(self, S, q, k, v, beta, final=True):
        N = q.shape[2]
        # W reads the state carried into a chunk: none into a lone chunk from zero
        qk, kk = scores(q, k, with_kk=True)  # [B, h, N, C, C]
        W, U = ut_transform(k, v, beta, kk, need_w=S is not None or N > 1)
        att = qk.tril()  # causal
        if W is None:  # one chunk from zero (short sequences): O = tril(Q K^T) U', S = K^T U'
            return att @ U, ((k.transpose(-1, -2) @ U)[:, :, 0] if final else None)
        outs = []
        # unbind once: indexing [:, :, n] per chunk would make backward O(N^2)
        for n, (qn, kn, an, Wn, Un) in enumerate(zip(*(t.unbind(2) for t in (q, k, att, W, U)))):
            if S is None:  # zero state: nothing to read or correct
                u = Un
                outs.append(an @ u)
            else:
                u = Un - Wn @ S  # [B, h, C, d_v]: corrected new values
                outs.append(qn @ S + an @ u)
            if final or n < N - 1:
                S = kn.transpose(-1, -2) @ u if S is None else S + kn.transpose(-1, -2) @ u
        return torch.stack(outs, dim=2), (S if final else None)
