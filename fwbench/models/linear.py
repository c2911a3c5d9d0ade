"""Sum-rule Fast Weight Programmer: the linear Transformer (Schmidhuber 1992; Katharopoulos et
al. 2020; Schlag, Irie & Schmidhuber 2021), docs/paper.md §4.1:

    S_t = S_{t-1} + φ(k_t) v_t^T,        o_t = S_t^T φ(q_t)

(S is stored key-major, d_phi x d_v.) Unrolled, o_t = Σ_{τ≤t} (φ(q_t)·φ(k_τ)) v_τ: causal
attention without softmax. Normalisation is that of the features (`qk_norm`, as in Schlag et
al. 2021) rather than Katharopoulos et al.'s running denominator, so the state is the matrix
alone. Their ELU+1 map with sum normalisation is `--feature_map elu1 --qk_norm sum`.
The chunked form: within chunk n, O = Q S_n + tril(Q K^T) V, with the chunk starts
S_n = S_0 + Σ_{m<n} K_m^T V_m for every chunk at once (a cumulative sum, no Python loop).
"""

from __future__ import annotations

import torch

from fwbench.models.fwp import ChunkedConfig, FWPCore, scores


class LinearFWP(FWPCore):
    Config = ChunkedConfig
    summary = "sum-rule fast weight programmer = linear Transformer (Katharopoulos et al. 2020)"

    def rule_step(self, S, q, k, v):
        S = S + k[..., :, None] * v[..., None, :]  # [B, h, d_phi, d_v]
        return torch.einsum("bhk,bhkv->bhv", q, S), S

    def rule_chunks(self, S, q, k, v, final=True):
        att = scores(q, k)[0].tril()  # [B, h, N, C, C], causal
        o = att @ v  # [B, h, N, C, d_v]: contributions from inside the chunk
        N = q.shape[2]
        if N == 1 and S is None and not final:
            return o, None  # one chunk from zero (training on short sequences): nothing else
        kv = k.transpose(-1, -2) @ v  # [B, h, N, d_phi, d_v]: each chunk's addition to S
        # S at the start of chunk n, for all n at once: S_0 + Σ_{m<n} K_m^T V_m
        starts = kv[:, :, :-1].cumsum(2)
        if S is not None:
            starts = torch.cat([S[:, :, None], S[:, :, None] + starts], dim=2)
        else:
            starts = torch.cat([torch.zeros_like(kv[:, :, :1]), starts], dim=2)
        o = o + q @ starts
        if not final:
            return o, None
        return o, starts[:, :, -1] + kv[:, :, -1]
