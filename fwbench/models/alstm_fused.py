"""The fused CPU path of the associative LSTM: the recurrence over the whole sequence in one call
of the compiled kernel (alstm_kernel.c), its hand-written backward in one more, as an autograd
Function. The input projection x_proj stays a torch Linear over all steps at once; the kernel
takes its output px and returns the gradient w.r.t. it.

The torch form in alstm.py dispatches some thirty small operations per step and as many again
in backward; here a step is one gemm (the h_proj product, torch's own BLAS) and one pass over
batch x copies x units, and the backward the same.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from fwbench.errors import FwbenchError
from fwbench.models import native

SOURCE = Path(__file__).with_name("alstm_kernel.c")


class Args(ctypes.Structure):
    """Mirror of `al_args` in alstm_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "Hc", "N")]
                + [(n, ctypes.c_void_p) for n in (
                    "px", "h0", "c0", "W", "perm", "Z", "C", "M", "Y", "Yb", "cT", "dY", "GH", "dcT",
                    "DZ", "dpx", "dW", "dh0", "dc0", "work", "gemm")])


# no errno from sqrt and exp (their arguments never make them fail), so their loops vectorise
KERNEL = native.Kernel("alstm", SOURCE, ("al_forward", "al_backward"), Args,
                       flags=("-fno-math-errno",))


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return KERNEL.available(x)


def _work(px: torch.Tensor, N: int) -> torch.Tensor:
    B, _, K = px.shape
    return px.new_empty((32 + 2 * N) * (K // 9), B)


def _call(fn: str, shape, tensors: dict, blas: int | None) -> None:
    """Run kernel function `fn` on `tensors` (field name -> tensor or None)."""
    B, T, Hc, N = shape
    KERNEL.run(fn, Args(B=B, T=T, Hc=Hc, N=N, gemm=blas), tensors, tensors["W"].dtype)


def _contiguous(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def check(px, h0, c0, W, perm) -> None:
    """FwbenchError unless the kernel's inputs fit together (the C code trusts them): shapes,
    one scalar type on the CPU, and permutations within range."""
    N, Hc = perm.shape
    B, H, K = px.shape[0], 2 * Hc, 9 * Hc
    want = {"px": (px, (B, px.shape[1], K)), "h0": (h0, (B, H)), "c0": (c0, (B, N, H)),
            "h_proj weight": (W, (K, H))}
    native.check_inputs("alstm", want, px.dtype)
    if perm.dtype != torch.int64 or perm.numel() and (perm.min() < 0 or perm.max() >= Hc):
        raise FwbenchError(f"alstm kernel: the copies' permutations must be int64 indices in "
                           f"[0, {Hc}); got {perm.dtype} values {perm.min()}..{perm.max()}")


def run_forward(px, h0, c0, W, perm, blas: int | None) -> dict:
    """The kernel's forward pass; returns its tensors by field name."""
    check(px, h0, c0, W, perm)
    B, T, K = px.shape
    N, Hc = perm.shape
    H, new = 2 * Hc, px.new_empty
    t = dict(px=px.contiguous(), h0=_contiguous(h0), c0=_contiguous(c0), W=W.contiguous(),
             perm=perm.contiguous(), Z=new(T, K, B), C=new(T + 1, N, H, B), M=new(T, H, B),
             Y=new(T, H, B), Yb=new(B, T, H), cT=new(B, N, H), work=_work(px, N))
    _call("al_forward", (B, T, Hc, N), t, blas)
    return t


class FusedALSTM(torch.autograd.Function):
    """(px[B, T, 9 Hc], h0[B, H], c0[B, N, H], h_proj weight[9 Hc, H], perms[N, Hc]) ->
    (y[B, T, H], c(T)[B, N, H]). h0 and c0 may be None (zero)."""

    @staticmethod
    def forward(ctx, px, h0, c0, W, perm):
        t = run_forward(px, h0, c0, W, perm, gemm(px.dtype))
        ctx.save_for_backward(*(t[k] for k in ("h0", "W", "perm", "Z", "C", "M", "Y")))
        ctx.has_c0 = c0 is not None
        ctx.set_materialize_grads(False)
        return t["Yb"], t["cT"]

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dcT):
        h0, W, perm, Z, C, M, Y = ctx.saved_tensors
        T, K, B = Z.shape
        N, Hc = perm.shape
        H, new = 2 * Hc, Z.new_empty
        want_h0 = h0 is not None and ctx.needs_input_grad[1]
        want_c0 = ctx.has_c0 and ctx.needs_input_grad[2]
        t = dict(h0=h0, W=W, perm=perm, Z=Z, C=C, M=M, Y=Y, dY=_contiguous(dY), GH=new(T, H, B),
                 dcT=_contiguous(dcT), DZ=new(T, K, B), dpx=new(B, T, K), dW=Z.new_zeros(K, H),
                 dh0=new(B, H) if want_h0 else None, dc0=new(B, N, H) if want_c0 else None,
                 work=Z.new_empty((32 + 2 * N) * Hc, B))
        _call("al_backward", (B, T, Hc, N), t, gemm(Z.dtype))
        return t["dpx"], t["dh0"], t["dc0"], t["dW"], None


def _probe(dtype: torch.dtype):
    """The kernel's output on a small problem, as a function of the gemm it uses."""
    gen = torch.Generator().manual_seed(0)
    px, h0, W = (torch.randn(*s, generator=gen, dtype=dtype) for s in ((3, 4, 18), (3, 4),
                                                                         (18, 4)))
    perm = torch.stack([torch.randperm(2, generator=gen) for _ in range(2)])
    return lambda p: run_forward(px, h0, None, W, perm, p)["Yb"]


KERNEL.probe = _probe
gemm = KERNEL.gemm  # the gemm address to use now (None: the kernel's own loops)


describe_kernel = KERNEL.describe  # for bench records
