"""The fused CPU path of the recurrent delta rule: the rule over the whole sequence in one call of
the compiled kernel (recurrent_delta_kernel.c), its hand-written backward through time in one
more, as an autograd Function. The projections z (convolution, β pre-activation) stay torch
operations over all steps at once; the kernel takes z and returns the gradient w.r.t. it.

The torch loop in recurrent_delta.py (`_DeltaLoop`) dispatches some twenty small operations per
step and about as many again in backward, and passes over each fast weight matrix several times
per step; here a step is one gemm for the recurrent input (torch's own BLAS) and one pass over
the fast weights in memory, forward and backward. Feature maps: identity and ELU + 1, with any
normalisation; DPFP stays on torch.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from fwbench.errors import FwbenchError
from fwbench.models import native

SOURCE = Path(__file__).with_name("recurrent_delta_kernel.c")
FEATURE_MAPS = ("identity", "elu1")  # the kernel's MAP_* codes, in order
NORMS = ("none", "sum", "l2")  # its NORM_* codes, in order


class Args(ctypes.Structure):
    """Mirror of `rd_args` in recurrent_delta_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "H", "dk", "dv", "fmap", "norm")]
                + [(n, ctypes.c_void_p) for n in (
                    "z", "R", "y0", "S", "Y", "TH", "P", "Rr", "dY", "dS", "dP", "dy0", "work",
                    "gemm")])


# no errno from exp, tanh and sqrt (their arguments never make them fail), so loops vectorise
KERNEL = native.Kernel("recurrent_delta", SOURCE, ("rd_forward", "rd_backward"), Args,
                       flags=("-fno-math-errno",))


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return x.device.type == "cpu" and KERNEL.load(x.dtype) is not None


def supports(feature_map: str, qk_norm: str) -> bool:
    """Whether the kernel computes this φ (DPFP is left to torch)."""
    return feature_map in FEATURE_MAPS and qk_norm in NORMS


def _call(fn: str, dims: tuple, tensors: dict, blas: int | None) -> None:
    """Run kernel function `fn` on `tensors` (field name -> tensor or None)."""
    B, T, H, dk, dv, fmap, norm = dims
    args = Args(B=B, T=T, H=H, dk=dk, dv=dv, fmap=FEATURE_MAPS.index(fmap),
                norm=NORMS.index(norm), gemm=blas)
    for name, t in tensors.items():
        setattr(args, name, None if t is None else t.data_ptr())
    getattr(KERNEL.load(tensors["R"].dtype), fn)(ctypes.byref(args))


def _work(like: torch.Tensor, B: int, H: int, dk: int, dv: int) -> torch.Tensor:
    return like.new_empty(B * H * dv + 16 * max(dk, dv))


def check(z, S0, y0, R) -> None:
    """FwbenchError unless the kernel's inputs fit together (the C code trusts them): shapes,
    and one scalar type on the CPU."""
    B, T, K = z.shape
    _, H, dk, dv = S0.shape
    want = {"z": (z, (B, T, H * (2 * dk + dv + 1))), "S0": (S0, (B, H, dk, dv)),
            "y0": (y0, (B, H * dv)), "recurrent weight": (R, (K, H * dv))}
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape or t.dtype != z.dtype or t.device.type != "cpu":
            raise FwbenchError(f"recurrent delta kernel: {name} is {t.dtype} {tuple(t.shape)} "
                               f"on {t.device}; expected {z.dtype} {shape} on the CPU")


def run_forward(z, S0, y0, R, fmap: str, norm: str, blas: int | None) -> dict:
    """The kernel's forward pass; returns its tensors by field name."""
    check(z, S0, y0, R)
    B, T, K = z.shape
    _, H, dk, dv = S0.shape
    new = z.new_empty
    t = dict(z=z.contiguous(), R=R.contiguous(), y0=y0.contiguous(),
             S=S0.clone(memory_format=torch.contiguous_format), Y=new(B, T, H * dv),
             TH=new(B, T, H * dv), P=new(B, T, K), Rr=new(B, T, H, dv),
             work=_work(z, 1, 0, dk, dv))
    _call("rd_forward", (B, T, H, dk, dv, fmap, norm), t, blas)
    return t


class FusedRecurrentDelta(torch.autograd.Function):
    """(z[B, T, channels + h], S0[B, h, d_phi, d_v], y0[B, hidden], recurrent weight
    [channels + h, hidden], feature map, norm) -> (y[B, T, hidden], final S), as `_DeltaLoop`
    in recurrent_delta.py. Backward gives the gradients of z, S0, y0 and the weight (the last
    one product over all steps, in torch)."""

    @staticmethod
    def forward(ctx, z, S0, y0, R, fmap, norm):
        t = run_forward(z, S0, y0, R, fmap, norm, gemm(z.dtype))
        ctx.save_for_backward(t["R"], t["S"], t["TH"], t["P"], t["Rr"])
        ctx.phi = fmap, norm
        ctx.set_materialize_grads(False)  # an unused final S: no S-sized zeros to copy
        return t["Y"], t["S"]

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dS):
        R, S, TH, P, Rr = ctx.saved_tensors
        B, T, K = P.shape
        _, H, dk, dv = S.shape
        t = dict(R=R, S=S.clone(), TH=TH, P=P, Rr=Rr,
                 dY=None if dY is None else dY.contiguous(),
                 dS=(torch.zeros_like(S) if dS is None
                     else dS.clone(memory_format=torch.contiguous_format)),
                 dP=P.new_empty(B, T, K), dy0=P.new_empty(B, H * dv), work=_work(P, B, H, dk, dv))
        _call("rd_backward", (B, T, H, dk, dv, *ctx.phi), t, gemm(P.dtype))
        g_w = t["dP"].flatten(0, 1).t() @ TH.flatten(0, 1) if ctx.needs_input_grad[3] else None
        return t["dP"], t["dS"], t["dy0"], g_w, None, None


BLAS = True  # use torch's BLAS inside the kernel when it passes its check (tests turn it off)


def gemm(dtype: torch.dtype) -> int | None:
    """The gemm address the kernel should use now (None: its own loops)."""
    return _checked_gemm(dtype) if BLAS else None


@lru_cache(maxsize=None)
def _checked_gemm(dtype: torch.dtype) -> int | None:
    """torch's BLAS gemm, if it agrees with the kernel's own loops on a small problem."""
    ptr = native.torch_gemm(dtype)
    if ptr is None:
        return None
    gen = torch.Generator().manual_seed(0)
    B, T, H, dk, dv = 3, 4, 2, 3, 2
    K = H * (2 * dk + dv + 1)
    z, S0, y0, R = (torch.randn(*s, generator=gen, dtype=dtype)
                    for s in ((B, T, K), (B, H, dk, dv), (B, H * dv), (K, H * dv)))
    loops, blas = (run_forward(z, S0, y0, R, "identity", "l2", p)["Y"] for p in (None, ptr))
    return ptr if torch.allclose(loops, blas, rtol=1e-4, atol=1e-5) else None
