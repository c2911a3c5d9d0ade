"""The compiled CPU path of the delta and gated delta rules for small fast weight matrices:
the rule over the whole sequence in one call of delta_kernel.c, its backward in one more, as an
autograd Function over the rule's inputs (φ(q), φ(k), v, β, log α), which torch computes for
all steps at once as before. The models' chunked forms (`rule_chunks`) stay the fallback and
their step loops (`rule_step`) the reference.

Every S_t is kept for backward, so the kernel serves where they are few: `fits` bounds them.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from fwbench.models import native

SOURCE = Path(__file__).with_name("delta_kernel.c")
# the kernel runs where d_phi x d_v is at most this: at batch 128 and 11 steps the gated rule's
# training step ran 1.28x, 1.16x and 1.11x as fast as the chunked torch form's at width 16, 20
# and 24, the plain delta rule's 1.12x, 1.02x and 0.97x (`evidence/bench/cpu-T11-delta-kernel-
# bound`, in turns, the chunked form with `fwp.scores`); at 28, beyond the bound, both rows of
# that record run the chunked form, 0.94x and 0.98x apart: the noise of one run
MAX_STATE = 24 * 24
MAX_KEPT = 1 << 17  # elements of the kept S_t per example: 512 KiB in float32


class Args(ctypes.Structure):
    """Mirror of `dr_args` in delta_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("BH", "T", "dk", "dv")]
                + [(n, ctypes.c_void_p) for n in (
                    "q", "k", "v", "beta", "la", "S0", "o", "ST", "Qb", "Kb", "Bb", "Ab", "S0b",
                    "Sh", "Rb", "dO", "dST", "dq", "dk_", "dv_", "dbeta", "dla", "dS0",
                    "work")])


KERNEL = native.Kernel("delta", SOURCE, ("dr_forward", "dr_backward"), Args,
                       flags=("-fno-math-errno",))


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return KERNEL.available(x)


def fits(heads: int, steps: int, dk: int, dv: int) -> bool:
    """Whether the kernel serves this size: small fast weights, and an example's S_t within
    MAX_KEPT."""
    return dk * dv <= MAX_STATE and heads * steps * dk * dv <= MAX_KEPT


def _call(fn: str, dims: dict, tensors: dict) -> None:
    KERNEL.run(fn, Args(**dims), tensors, tensors["Qb"].dtype)


VL = 16  # delta_kernel.c's VL: lanes per vector block


def _c(t):
    return None if t is None else t.contiguous()


def _unflat(ctx, t):
    """The backward's gradients, [B h, ...] back to [B, h, ...]."""
    B, h = ctx.bh
    out = [None if t[n] is None else t[n].unflatten(0, (B, h))
           for n in ("dq", "dk_", "dv_", "dbeta", "dla", "dS0")]
    return (*out, None)


class DeltaRule(torch.autograd.Function):
    """(φ(q), φ(k) [B, h, T, d_phi], v [B, h, T, d_v], β [B, h, T], log α [B, h, T] or None
    (the delta rule), S0 [B, h, d_phi, d_v] or None (zero), final) -> (o [B, h, T, d_v], S_T,
    or None unless `final`). Inputs of one floating type on the CPU."""

    @staticmethod
    def forward(ctx, q, k, v, beta, la, S0, final=True):
        B, h, T, dk = q.shape
        dv = v.shape[-1]
        N = -(-B * h // VL) * VL  # lanes, padded to the kernel's vector blocks
        dims = dict(BH=B * h, T=T, dk=dk, dv=dv)
        new = q.new_empty
        t = dict(q=_c(q), k=_c(k), v=_c(v), beta=_c(beta), la=_c(la), S0=_c(S0),
                 o=new(B, h, T, dv), ST=new(B, h, dk, dv) if final else None,
                 Qb=new(T, dk, N), Kb=new(T, dk, N), Bb=new(T, N), Ab=new(T, N),
                 S0b=None if S0 is None else new(dk, dv, N), Sh=new(T, dk, dv, N),
                 Rb=new(T, dv, N), work=new((2 * T * dv + 2 * dv + 1) * N))
        _call("dr_forward", dims, t)
        ctx.dims, ctx.gated, ctx.has_s0, ctx.bh = dims, la is not None, S0 is not None, (B, h)
        ctx.save_for_backward(*(t[n] for n in ("Qb", "Kb", "Bb", "Ab", "S0b", "Sh", "Rb")))
        ctx.set_materialize_grads(False)
        return t["o"], t["ST"]

    @staticmethod
    @once_differentiable
    def backward(ctx, dO, dST):
        Qb, Kb, Bb, Ab, S0b, Sh, Rb = ctx.saved_tensors
        T, dk, dv, N = Sh.shape
        d = ctx.dims
        B_h = (d["BH"],)
        new = Qb.new_empty
        t = dict(Qb=Qb, Kb=Kb, Bb=Bb, Ab=Ab, S0=S0b, S0b=S0b, Sh=Sh, Rb=Rb, dO=_c(dO),
                 dST=_c(dST), dq=new(*B_h, T, dk), dk_=new(*B_h, T, dk), dv_=new(*B_h, T, dv),
                 dbeta=new(*B_h, T), dla=new(*B_h, T) if ctx.gated else None,
                 dS0=new(*B_h, dk, dv) if ctx.has_s0 else None,
                 work=new((T * (2 * dk + 2 * dv + 2) + dk * dv + 2 * dv + 3 * dk + 5) * N))
        _call("dr_backward", d, t)
        return _unflat(ctx, t)
