"""The compiled CPU path of the FWPs' short convolution (fwp.ShortConv): convolution, SiLU and
the L2 normalisation of φ(q), φ(k) in one call of conv_kernel.c, its backward in one more, as an
autograd Function. `fwp._ConvSiLU` is the same in torch operations (the fallback), and
`ShortConv.forward_reference` the same left to autograd (the reference of both).

The torch form's passes over [B, T, channels] tensors, and its [B, T, size, channels] product
for the weight's gradient, cost a third of a training step of the FWPs at 11 steps and width
20; here forward and backward are one pass each.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from fwbench.models import native

SOURCE = Path(__file__).with_name("conv_kernel.c")


class Args(ctypes.Structure):
    """Mirror of `cv_args` in conv_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "C", "size", "n_l2", "group")]
                + [(n, ctypes.c_void_p) for n in (
                    "x", "buf", "w", "y", "nrm", "out", "grad", "gx", "gbuf", "gw",
                    "work")])


# no errno from exp and sqrt (their arguments never make them fail), so loops vectorise
KERNEL = native.Kernel("conv", SOURCE, ("cv_forward", "cv_backward"), Args,
                       flags=("-fno-math-errno",))


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return KERNEL.available(x)


def _call(fn: str, dims: dict, tensors: dict) -> None:
    KERNEL.run(fn, Args(**dims), tensors, tensors["w"].dtype)


BLOCK = 16  # conv_kernel.c's BLOCK: rows per flat block


def _work(x: torch.Tensor, size: int, C: int) -> torch.Tensor:
    return x.new_empty((2 * size + 1) * BLOCK * C)


class ConvSiLU(torch.autograd.Function):
    """x[B, T, C], buf[B, size-1, C], weight[C, size] (size >= 1), n_l2, group ->
    SiLU(conv(x))[B, T, C] with its first n_l2 channels L2-normalised in groups of `group`;
    as fwp._ConvSiLU. Inputs of one floating type on the CPU."""

    @staticmethod
    def forward(ctx, x, buf, weight, n_l2=0, group=1):
        B, T, C = x.shape
        size = weight.shape[1]
        if buf.dtype != x.dtype or weight.dtype != x.dtype or tuple(buf.shape) != (B, size - 1, C):
            raise ValueError(f"conv kernel: x {x.dtype} {tuple(x.shape)}, buf {buf.dtype} "
                             f"{tuple(buf.shape)}, weight {weight.dtype} {tuple(weight.shape)}")
        dims = dict(B=B, T=T, C=C, size=size, n_l2=n_l2, group=group)
        t = dict(x=x.contiguous(), buf=buf.contiguous(), w=weight.t().contiguous(),
                 y=x.new_empty(B, T, C), nrm=x.new_empty(B, T, n_l2 // group), out=x.new_empty(B, T, C),
                 work=_work(x, size, C))
        _call("cv_forward", dims, t)
        ctx.dims = dims
        ctx.save_for_backward(*(t[k] for k in ("x", "buf", "w", "y", "nrm", "out")))
        return t["out"]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, buf, w, y, nrm, out = ctx.saved_tensors
        dims = ctx.dims
        t = dict(x=x, buf=buf, w=w, y=y, nrm=nrm, out=out, grad=grad.contiguous(),
                 gx=torch.empty_like(x), gbuf=torch.empty_like(buf), gw=torch.empty_like(w),
                 work=_work(x, dims["size"], dims["C"]))
        _call("cv_backward", dims, t)
        return t["gx"], t["gbuf"], t["gw"].t(), None, None
