"""The fused CPU path of the GRU: the recurrence over the whole sequence in one call of the
compiled kernel (gru_kernel.c), its hand-written backward in one more, as an autograd Function.
The input term W_ih x + b_ih stays one torch product over all steps, and its gradient goes back
through it; the kernel returns that gradient and those of W_hh and b_hh. torch's own nn.GRU is
the reference (tests/test_gru_paths.py).

On one CPU thread torch's nn.GRU trained at 0.83-0.89x its nn.LSTM at 20 units, B = 128, T = 11
(`evidence/bench/cpu-T11-kernels`, `-run2`): a step there is a handful of dispatched operations
around a small product; here it is the product and one pass over the batch in SIMD lanes.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from fwbench.models import native

SOURCE = Path(__file__).with_name("gru_kernel.c")


class Args(ctypes.Structure):
    """Mirror of `gru_args` in gru_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "H")]
                + [(n, ctypes.c_void_p) for n in (
                    "X", "W", "bh", "HS", "S", "Y", "dY", "dX", "dW", "db", "dh0", "work",
                    "gemm")])


# no errno from exp (its arguments never make it fail), so the gate loops vectorise
KERNEL = native.Kernel("gru", SOURCE, ("gru_forward", "gru_backward"), Args,
                       flags=("-fno-math-errno",))


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return KERNEL.available(x)


def check(xi, h0, W, bh) -> None:
    """FwbenchError unless the kernel's inputs fit together (the C code trusts them)."""
    B, T, K = xi.shape
    H = W.shape[1]
    want = {"input term": (xi, (B, T, 3 * H)), "h0": (h0, (B, H)), "W_hh": (W, (3 * H, H)),
            "b_hh": (bh, (3 * H,))}
    native.check_inputs("gru", want, xi.dtype)


def _call(fn: str, shape, tensors: dict, blas: int | None) -> None:
    B, T, H = shape
    KERNEL.run(fn, Args(B=B, T=T, H=H, gemm=blas), tensors, tensors["W"].dtype)


def run_forward(xi, h0, W, bh, blas: int | None) -> dict:
    """The kernel's forward pass; returns its tensors by field name."""
    check(xi, h0, W, bh)
    B, T, K = xi.shape
    H, new = K // 3, xi.new_empty
    HS = new(T + 1, H, B)
    if h0 is None:
        HS[0].zero_()
    else:
        HS[0].copy_(h0.t())
    t = dict(X=xi.contiguous(), W=W.contiguous(), bh=bh.contiguous(), HS=HS, S=new(T, 4 * H, B),
             Y=new(B, T, H), work=new((T + 1) * K, B))
    _call("gru_forward", (B, T, H), t, blas)
    return t


class FusedGRU(torch.autograd.Function):
    """(xi[B, T, 3H] = W_ih x + b_ih, h0[B, H] or None (zero), W_hh[3H, H], b_hh[3H]) ->
    y[B, T, H], the outputs h(0..T-1) (the last is the final state)."""

    @staticmethod
    def forward(ctx, xi, h0, W, bh):
        t = run_forward(xi, h0, W, bh, gemm(xi.dtype))
        ctx.save_for_backward(t["W"], t["HS"], t["S"])
        ctx.has_h0 = h0 is not None
        return t["Y"]

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        W, HS, S = ctx.saved_tensors
        T, H, B = HS.shape[0] - 1, HS.shape[1], HS.shape[2]
        new = HS.new_empty
        want_h0 = ctx.has_h0 and ctx.needs_input_grad[1]
        t = dict(W=W, HS=HS, S=S, dY=dy.contiguous(), dX=new(B, T, 3 * H),
                 dW=HS.new_zeros(3 * H, H), db=HS.new_zeros(3 * H),
                 dh0=new(H, B) if want_h0 else None, work=new(T * 4 * H + 4 * H, B))
        _call("gru_backward", (B, T, H), t, gemm(W.dtype))
        return t["dX"], (t["dh0"].t() if want_h0 else None), t["dW"], t["db"]


def _probe(dtype: torch.dtype):
    """The kernel's output on a small problem, as a function of the gemm it uses."""
    gen = torch.Generator().manual_seed(0)
    xi, h0, W, bh = (torch.randn(*s, generator=gen, dtype=dtype)
                     for s in ((3, 4, 12), (3, 4), (12, 4), (12,)))
    return lambda p: run_forward(xi, h0, W, bh, p)["Y"]


KERNEL.probe = _probe
gemm = KERNEL.gemm  # the gemm address to use now (None: the kernel's own loops)
