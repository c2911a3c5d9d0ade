"""Causal softmax attention, the unbounded-memory reference of the FWP family
(docs/paper.md §4.6: sum-rule FWPs are this attention with the softmax replaced by a feature map):

    o_t = Σ_{τ≤t} softmax_τ( q_t · k_τ / sqrt(d_k) ) v_τ

with q, k, v from the same projections and short convolution as the FWPs (the convolution is
also what gives it positions: there is no positional encoding [C]). Its state is the cache of
every key and value so far, so it grows with t (`state_size(seq_len)` says by how much), plus
a validity flag per cached step: `mask_state` zeroes the flags of a finished episode, which
hides its cached steps from later queries.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from fwbench.models.base import RecurrentCore
from fwbench.models.fwp import HeadsConfig, Projections, merge_heads
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class AttentionConfig(HeadsConfig):
    impl: str = setting("auto", "implementation (auto = parallel; reference = step loop)",
                        choices=("auto", "reference", "parallel"))


class Attention(RecurrentCore):
    Config = AttentionConfig
    summary = "causal softmax attention with a growing key-value cache (unbounded memory)"
    memory = (1, 2, 3)  # the key-value cache (with its validity flags) is the memory [C]

    def __init__(self, input_size, cfg):
        super().__init__(input_size, cfg)
        self.proj = Projections(input_size, cfg)
        self.out = torch.nn.Linear(cfg.hidden, cfg.hidden)

    def initial_state(self, batch, device=None):
        c = self.cfg
        return (self.zeros(batch, self.proj.conv.buffer_len, self.proj.channels, device=device),
                self.zeros(batch, c.heads, 0, c.qk_dim, device=device),
                self.zeros(batch, c.heads, 0, c.value_dim, device=device),
                self.zeros(batch, 0, device=device))

    def state_size(self, seq_len):
        c = self.cfg
        per_step = c.heads * (c.qk_dim + c.value_dim) + 1  # key, value, validity flag
        return self.proj.conv.buffer_len * self.proj.channels + seq_len * per_step

    def attend(self, q, K, V, valid, offset):
        """q[B, h, T, d_k] at steps offset..offset+T-1 over cache K, V [B, h, L, .] whose
        validity flags are valid[B, L]; step i of q sees cache entries up to offset + i."""
        T, L = q.shape[2], K.shape[2]
        scores = q @ K.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, h, T, L]
        pos = torch.arange(L, device=q.device)
        future = pos[None, :] > offset + torch.arange(T, device=q.device)[:, None]  # [T, L]
        hidden = future[None, None] | (valid[:, None, None, :] == 0)
        weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)
        return weights @ V  # [B, h, T, d_v]

    def _run(self, x, state):
        buf, K, V, valid = state
        offset = K.shape[2]
        q, k, v, buf = self.proj(x, buf)
        K, V = torch.cat([K, k], dim=2), torch.cat([V, v], dim=2)
        valid = torch.cat([valid, valid.new_ones(x.shape[0], x.shape[1])], dim=1)
        if offset == 0:  # no cache before: plain causal attention, torch's fused kernel
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            o = self.attend(q, K, V, valid, offset)
        return self.out(merge_heads(o)), (buf, K, V, valid)

    def step(self, x, state):
        y, state = self._run(x[:, None], state)  # T = 1
        return y[:, 0], state

    def forward(self, x, state=None):
        if self.cfg.impl == "reference":
            return super().forward(x, state)
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        return self._run(x, state)
