"""Recurrent Delta Network (Irie, Schlag, Csordás & Schmidhuber 2021), docs/paper.md §4.4: the
delta rule whose keys, values, queries and β also read the previous output y_{t-1}:

    k_t, v_t, q_t = conv(W x)_t + R tanh(y_{t-1}),     β_t = σ(w_β x_t + r_β tanh(y_{t-1}))
    S_t = S_{t-1} + β_t φ(k_t) (v_t - S_{t-1}^T φ(k_t))^T,   y_t = S_t^T φ(q_t)

y is the concatenated output of the heads before the output map; the tanh squashing of the
recurrent input follows Irie et al. [R]. The recurrence through y makes the rule strictly
sequential: `forward` projects every input at once, then steps the rule (no chunked form).
Two implementations step it (`impl`):

* `torch`: `_DeltaLoop`, one fast weight matrix updated in place and a hand-written backward
  through time in torch operations;
* `fused`: the same loop as one call of a compiled CPU kernel, its backward in one more
  (recurrent_delta_fused.py, recurrent_delta_kernel.c), the fast weights formed once per chunk
  of steps; float32/float64 on CPU, feature maps identity and ELU + 1, needs a C compiler
  (compiled once, cached). Its sums run in another order: equal at rounding level.

`auto` picks `fused` when it can run, else `torch`. `forward_reference` is the step loop left
to autograd, the reference of both.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fwbench.errors import FwbenchError
from fwbench.models import recurrent_delta_fused as fused
from fwbench.models.delta import delta_step, delta_step_fast
from fwbench.models.fwp import L2_EPS, FWPConfig, FWPCore
from fwbench.models.native import KernelChoice
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class RecurrentDeltaConfig(FWPConfig):
    impl: str = setting("auto", "implementation (auto: the compiled CPU kernel when it compiles "
                        "and covers the feature map, else torch)",
                        choices=("auto", "torch", "fused"), added=True)


class RecurrentDeltaNet(KernelChoice, FWPCore):
    Config = RecurrentDeltaConfig
    summary = "delta rule whose k, v, q, β also read the previous output (Irie et al. 2021)"
    gate_count = 1
    kernel, step_impl = fused, "step"  # the compiled CPU kernel (impl = fused); `step`: torch

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

    def _step_inputs(self, y_prev, z, weight):
        """φ(q), φ(k) [B, h, d_phi], v [B, h, d_v], β [B, h] of one step, from the previous
        output y_prev[B, hidden] and the step's projections z[B, channels + h]."""
        return self._from_pre(z + F.linear(torch.tanh(y_prev), weight))

    def _from_pre(self, pre):
        """φ(q), φ(k), v, β from the pre-activations pre[B, channels + h] of one step."""
        B, h, dk, C = pre.shape[0], self.cfg.heads, self.proj.dk, self.proj.channels
        qk = self.phi(pre[:, :2 * h * dk].view(B, 2, h, dk))  # φ(q), φ(k) together
        v = pre[:, 2 * h * dk:C].view(B, h, self.proj.dv)
        return qk[:, 0], qk[:, 1], v, torch.sigmoid(pre[:, C:])

    def _rule(self, S, y_prev, z, rule=delta_step):
        """One step from the pre-recurrence projections z[B, channels + h] (q, k, v, β)."""
        return rule(S, *self._step_inputs(y_prev, z, self.rec.weight))

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

    def choose_impl(self, x):
        """As KernelChoice's, but the kernel has no DPFP feature map: `auto` then runs torch,
        `fused` is refused."""
        if not fused.supports(self.cfg.feature_map, self.cfg.qk_norm):
            if self.cfg.impl == "fused":
                raise FwbenchError(f"impl=fused has no feature_map={self.cfg.feature_map}; the "
                                   "kernel covers " + ", ".join(fused.FEATURE_MAPS)
                                   + "; use impl=auto or impl=torch")
            if self.cfg.impl == "auto":
                return "torch"
        return super().choose_impl(x)

    def implementation(self, seq_len=None):
        if (seq_len is not None and self.cfg.impl == "auto"
                and not fused.supports(self.cfg.feature_map, self.cfg.qk_norm)):
            return {"impl": "torch",
                    "reason": f"the kernel has no feature_map={self.cfg.feature_map}",
                    **self.conv_implementation(seq_len)}
        return {**KernelChoice.implementation(self, seq_len), **self.conv_implementation(seq_len)}

    def forward(self, x, state=None):
        if self.choose_impl(x) == "fused":
            return self.forward_fused(x, state)
        return self.forward_torch(x, state)

    def forward_fused(self, x, state=None, final_state: bool = True):
        """The compiled CPU kernel over the whole sequence, with its backward through time. A
        zero initial S (state None) is never formed nor read, and with final_state=False
        neither is the final one (the state is then None). A long sequence runs in segments
        whose projections stay under `segment_bytes`, the state carried."""
        if state is None:
            buf, _, y = self.initial_state(x.shape[0], x.device)
            S = None
        else:
            buf, S, y = state
        width = self.proj.channels + self.cfg.heads  # z: the widest tensor kept per step
        parts = self.segments(x, x.shape[0] * width * x.element_size())
        shape = (self.cfg.heads, self.dphi, self.cfg.value_dim)
        outs = []
        for i, part in enumerate(parts):
            z, buf = self._project(part, buf)
            ys, S = fused.FusedRecurrentDelta.apply(z, S, y, self.rec.weight, shape,
                                                    self.cfg.feature_map, self.cfg.qk_norm,
                                                    final_state or i < len(parts) - 1)
            outs.append(ys)
            y = ys[:, -1]
        ys = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return self.out(ys), ((buf, S, y) if final_state else None)

    def forward_torch(self, x, state=None):
        """`_DeltaLoop`: the in-place loop with its backward through time in torch operations."""
        buf, S, y = self.initial_state(x.shape[0], x.device) if state is None else state
        z, buf = self._project(x, buf)
        ys, S = _DeltaLoop.apply(self, z, S, y, self.rec.weight)
        return self.out(ys), (buf, S, ys[:, -1])

    def forward_stepped(self, x, state=None):
        """The loop with `delta_step_fast`, left to autograd (a second reference)."""
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
        """y[B, T, hidden] from the zero state (no chunked form); the kernel then forms
        neither the zero nor the final fast weights."""
        if self.choose_impl(x) == "fused":
            return self.forward_fused(x, final_state=False)[0]
        return self(x)[0]


class _DeltaLoop(torch.autograd.Function):
    """The recurrent delta rule over a whole sequence, with a hand-written backward.

    Left to autograd, every step forms a new fast weight matrix S_t (B x h x d_phi x d_v) and
    keeps it for backward, and its backward adds S-sized gradients out of place: at hidden
    100 copying and adding such matrices took a quarter of the step loop's time. Here one S
    is updated in place; backward walks the steps in reverse, restoring
    S_{t-1} = S_t - φ(k_t) u_t^T from the kept r_t (u_t = β_t r_t; the update is a pure
    addition, so undoing it costs rounding only, as much as float32 autograd's own), and
    accumulates the gradient of S in place. The feature map and normalisation are
    recomputed from the kept pre-activations and, but for the default φ (identity, L2 norm,
    differentiated by hand), differentiated by autograd one step at a time; the recurrent
    weight's gradient is one product over all steps at the end.

    Forward: (core, z[B, T, channels + h], S0[B, h, d_phi, d_v], y0[B, hidden], recurrent
    weight) -> (y[B, T, hidden], final S). One step, with pre_t = z_t + R tanh(y_{t-1}) giving
    φ(q_t), φ(k_t), v_t, β_t and u_t = β_t (v_t - S_{t-1}^T φ(k_t)):
    o_t = S_{t-1}^T φ(q_t) + (φ(q_t)·φ(k_t)) u_t, S_t = S_{t-1} + φ(k_t) u_t^T, y_t = o_t.
    """

    @staticmethod
    def forward(ctx, core, z, S0, y0, weight):
        B, T = z.shape[:2]
        _, h, dk, dv = S0.shape
        S = S0.clone(memory_format=torch.contiguous_format)
        Sf = S.view(B * h, dk, dv)
        ys = z.new_empty(B, T, h * dv)
        pres = torch.empty_like(z)
        rs = z.new_empty(B, T, h, dv)  # v_t - S_{t-1}^T φ(k_t), so that u_t = β_t r_t
        y = y0
        for t in range(T):
            pre = torch.add(z[:, t], F.linear(torch.tanh(y), weight), out=pres[:, t])
            q, k, v, beta = core._from_pre(pre)
            kq = torch.stack([k, q], dim=2).view(B * h, 2, dk)
            read = torch.bmm(kq, Sf).view(B, h, 2, dv)  # [k; q]^T S_{t-1}
            r = torch.sub(v, read[:, :, 0], out=rs[:, t])
            u = beta[..., None] * r  # [B, h, d_v]
            o = torch.addcmul(read[:, :, 1], (q * k).sum(-1, keepdim=True), u)
            Sf.baddbmm_(k.reshape(B * h, dk, 1), u.view(B * h, 1, dv))
            ys[:, t] = o.view(B, h * dv)
            y = ys[:, t]
        ctx.core = core
        ctx.set_materialize_grads(False)  # an unused final S: no S-sized zeros to copy
        ctx.save_for_backward(y0, weight, S, ys, pres, rs)
        return ys, S

    @staticmethod
    def backward(ctx, g_ys, g_S):
        y0, weight, S_T, ys, pres, rs = ctx.saved_tensors
        core = ctx.core
        B, T = pres.shape[:2]
        _, h, dk, dv = S_T.shape
        Bh, n_qk, C = B * h, 2 * core.cfg.heads * core.proj.dk, core.proj.channels
        Sf = S_T.clone().view(Bh, dk, dv)  # S_t, walked back to S_0
        dS = (torch.zeros_like(Sf) if g_S is None else  # dL/dS_t
              g_S.clone(memory_format=torch.contiguous_format).view(Bh, dk, dv))
        if g_ys is None:
            g_ys = torch.zeros_like(ys)
        g_pre = torch.empty_like(pres)  # = dL/dz
        # what does not depend on the walk back, for all steps at once
        tanh_prev = torch.tanh(torch.cat([y0[:, None], ys[:, :-1]], dim=1))  # [B, T, hidden]
        d_tanh = 1 - tanh_prev ** 2
        betas = torch.sigmoid(pres[:, :, C:])  # [B, T, h]
        d_sig = betas * (1 - betas)
        # the default φ (identity map, L2 norm) is differentiated by hand: an autograd call per
        # step cost more than the rest of the step at small widths
        l2 = core.cfg.feature_map == "identity" and core.cfg.qk_norm == "l2"
        if l2:  # φ(x) = x / max(|x|, eps), as F.normalize
            pre_qk = pres[:, :, :n_qk].unflatten(-1, (2, core.cfg.heads, core.proj.dk))
            norms = torch.linalg.vector_norm(pre_qk, dim=-1, keepdim=True)
            clamped = norms.clamp_min(L2_EPS)
            qks = pre_qk / clamped  # [B, T, 2, h, d_phi]
            small = norms < L2_EPS
        g_y = torch.zeros_like(y0)  # dL/dy_t through the steps after t
        for t in reversed(range(T)):
            if l2:
                qk = qks[:, t]
            else:
                with torch.enable_grad():
                    pre_qk = pres[:, t, :n_qk].view(B, 2, core.cfg.heads, core.proj.dk)
                    pre_qk = pre_qk.detach().requires_grad_()
                    qk_graph = core.phi(pre_qk)
                qk = qk_graph.detach()
            q, k = qk[:, 0], qk[:, 1]
            r = rs[:, t]  # [B, h, dv]
            beta = betas[:, t]  # [B, h]
            u = (beta[..., None] * r).view(Bh, 1, dv)
            kc, qc = k.reshape(Bh, dk, 1), q.reshape(Bh, dk, 1)
            Sf.baddbmm_(kc, u, alpha=-1)  # back to S_{t-1}
            do = (g_ys[:, t] + g_y).view(Bh, 1, dv)  # dL/do_t
            qk_dot = (q * k).sum(-1).view(Bh, 1, 1)
            du = torch.baddbmm(qk_dot * do, kc.transpose(1, 2), dS)  # (φq·φk) do + dS_t^T φk
            g_beta = (du.view(B, h, dv) * r).sum(-1)  # [B, h]
            dr = beta.reshape(Bh, 1, 1) * du  # dL/dv_t, and -dL/d(S_{t-1}^T φk)
            rows = torch.cat([do, dr], dim=1)  # [Bh, 2, dv]
            s_rows = torch.bmm(Sf, rows.transpose(1, 2))  # [Bh, dk, 2]: S_{t-1} do, S_{t-1} dr
            ud = (u * do).sum(-1, keepdim=True)  # u·do [Bh, 1, 1]
            g_q = torch.addcmul(s_rows[:, :, :1], ud, kc)
            g_k = torch.addcmul(torch.bmm(dS, u.transpose(1, 2)) - s_rows[:, :, 1:], ud, qc)
            dS.baddbmm_(torch.cat([qc, -kc], dim=2), rows)  # dL/dS_{t-1} = + φq do^T - φk dr^T
            g_qk = torch.stack([g_q.view(B, h, dk), g_k.view(B, h, dk)], dim=1)
            if l2:  # (g - φ (φ·g)) / |x| where |x| >= eps, else g / eps
                along = (qk * g_qk).sum(-1, keepdim=True).masked_fill_(small[:, t], 0)
                g_pre[:, t, :n_qk] = (torch.addcmul(g_qk, qk, along, value=-1)
                                      / clamped[:, t]).view(B, n_qk)
            else:
                g_pre[:, t, :n_qk] = torch.autograd.grad(qk_graph, pre_qk, g_qk)[0].view(B, n_qk)
            g_pre[:, t, n_qk:C] = dr.view(B, h * dv)
            torch.mul(g_beta, d_sig[:, t], out=g_pre[:, t, C:])
            # through pre_t = z_t + R tanh(y_{t-1})
            g_y = (g_pre[:, t] @ weight) * d_tanh[:, t]
        g_w = g_pre.flatten(0, 1).t() @ tanh_prev.flatten(0, 1)
        return None, g_pre, dS.view_as(S_T), g_y, g_w
