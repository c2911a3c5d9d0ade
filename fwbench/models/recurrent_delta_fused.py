"""The fused CPU path of the recurrent delta rule: the rule over the whole sequence in one call of
the compiled kernel (recurrent_delta_kernel.c), its hand-written backward through time in one
more, as an autograd Function. The projections z (convolution, β pre-activation) stay torch
operations over all steps at once; the kernel takes z and returns the gradient w.r.t. it.

The torch loop in recurrent_delta.py (`_DeltaLoop`) dispatches some twenty small operations per
step and about as many again in backward, and reads and writes each fast weight matrix several
times per step; here a step is one gemm for the recurrent input (torch's own BLAS) and a few
vectors per earlier step of its chunk, the fast weights being formed once per chunk (and not at
all within a first chunk from the zero state): see the kernel's header. Feature maps: identity
and ELU + 1, with any normalisation; DPFP stays on torch.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from fwbench.models import native

SOURCE = Path(__file__).with_name("recurrent_delta_kernel.c")
FEATURE_MAPS = ("identity", "elu1")  # the kernel's MAP_* codes, in order
NORMS = ("none", "sum", "l2")  # its NORM_* codes, in order


class Args(ctypes.Structure):
    """Mirror of `rd_args` in recurrent_delta_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "H", "dk", "dv", "fmap", "norm", "L",
                                                "s0", "final", "ds0", "dsT")]
                + [(n, ctypes.c_void_p) for n in (
                    "z", "R", "y0", "S", "Y", "TH", "P", "Rr", "Qn", "Kn", "U", "dY", "dS", "DO",
                    "dP", "dy0", "work", "gemm")])


# no errno from exp, tanh and sqrt (their arguments never make them fail), so loops vectorise
KERNEL = native.Kernel("recurrent_delta", SOURCE, ("rd_forward", "rd_backward"), Args,
                       flags=("-fno-math-errno",))


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return KERNEL.available(x)


def supports(feature_map: str, qk_norm: str) -> bool:
    """Whether the kernel computes this φ (DPFP is left to torch)."""
    return feature_map in FEATURE_MAPS and qk_norm in NORMS


def chunk_len(dk: int, dv: int) -> int:
    """Steps per chunk of the kernel. Inside a chunk a step costs about 4 (d_k + d_v) per
    earlier step of the chunk, where forming and reading the fast weights costs passes over
    d_k d_v values; at batch 128 the train step was fastest with one chunk for 11 steps at
    d_k = d_v = 20, 50 and 100, and over 64 steps with chunks of about d_k d_v / (d_k + d_v)
    steps (8 to 64)."""
    return max(16, min(64, dk * dv // (dk + dv)))


def _call(fn: str, dims: dict, tensors: dict, blas: int | None) -> None:
    """Run kernel function `fn` on `tensors` (field name -> tensor or None)."""
    KERNEL.run(fn, Args(**dims, gemm=blas), tensors, tensors["R"].dtype)


def _work(like: torch.Tensor, B: int, H: int, dk: int, dv: int) -> torch.Tensor:
    return like.new_empty(B * H * dv + 16 * max(dk, dv))


def check(z, S0, y0, R, shape) -> None:
    """FwbenchError unless the kernel's inputs fit together (the C code trusts them): shapes,
    and one scalar type on the CPU. S0 may be None (zero)."""
    B, T, K = z.shape
    H, dk, dv = shape
    want = {"z": (z, (B, T, H * (2 * dk + dv + 1))), "S0": (S0, (B, H, dk, dv)),
            "y0": (y0, (B, H * dv)), "recurrent weight": (R, (K, H * dv))}
    native.check_inputs("recurrent delta", want, z.dtype)


def run_forward(z, S0, y0, R, shape, fmap: str, norm: str, final: bool,
                blas: int | None) -> tuple[dict, dict]:
    """The kernel's forward pass from S0 (None: zero) over z with fast weights of `shape`
    (heads, d_phi, d_v); returns its sizes and flags, and its tensors by field name."""
    B, T, K = z.shape
    H, dk, dv = shape
    check(z, S0, y0, R, shape)
    dims = dict(B=B, T=T, H=H, dk=dk, dv=dv, fmap=FEATURE_MAPS.index(fmap),
                norm=NORMS.index(norm), L=chunk_len(dk, dv), s0=S0 is not None, final=final)
    if S0 is not None:
        S = S0.clone(memory_format=torch.contiguous_format)
    else:  # formed only at a chunk's end
        S = z.new_empty(B, H, dk, dv) if final or T > dims["L"] else None
    new = z.new_empty
    t = dict(z=z.contiguous(), R=R.contiguous(), y0=y0.contiguous(), S=S, Y=new(B, T, H * dv),
             TH=new(B, T, H * dv), P=new(B, T, K), Rr=new(B, T, H, dv), Qn=new(B, T, H, dk),
             Kn=new(B, T, H, dk), U=new(B, T, H, dv), work=_work(z, 1, 0, dk, dv))
    _call("rd_forward", dims, t, blas)
    return dims, t


class FusedRecurrentDelta(torch.autograd.Function):
    """(z[B, T, channels + h], S0[B, h, d_phi, d_v] or None (zero), y0[B, hidden], recurrent
    weight [channels + h, hidden], (h, d_phi, d_v), feature map, norm, final) ->
    (y[B, T, hidden], final S, or None unless `final`), as `_DeltaLoop` in recurrent_delta.py.
    Backward gives the gradients of z, S0, y0 and the weight (the last one product over all
    steps, in torch)."""

    @staticmethod
    def forward(ctx, z, S0, y0, R, shape, fmap, norm, final=True):
        dims, t = run_forward(z, S0, y0, R, shape, fmap, norm, final, gemm(z.dtype))
        S = t["S"]
        ctx.dims = dims
        ctx.save_for_backward(t["R"], S, t["TH"], t["P"], t["Rr"], t["Qn"], t["Kn"], t["U"])
        ctx.set_materialize_grads(False)  # an unused final S: no S-sized zeros to copy
        if not final:
            return t["Y"], None
        return t["Y"], S

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dS):
        R, S, TH, P, Rr, Qn, Kn, U = ctx.saved_tensors
        B, T, K = P.shape
        dims = dict(ctx.dims, ds0=ctx.dims["s0"] and ctx.needs_input_grad[1],
                    dsT=dS is not None)
        H, dk, dv = dims["H"], dims["dk"], dims["dv"]
        if dS is not None:
            dS = dS.clone(memory_format=torch.contiguous_format)
        elif dims["ds0"] or T > dims["L"]:
            dS = P.new_empty(B, H, dk, dv)
        t = dict(R=R, S=None if S is None else S.clone(), TH=TH, P=P, Rr=Rr, Qn=Qn, Kn=Kn, U=U,
                 dY=None if dY is None else dY.contiguous(), dS=dS, DO=P.new_empty(B, T, H, dv),
                 dP=P.new_empty(B, T, K), dy0=P.new_empty(B, H * dv), work=_work(P, B, H, dk, dv))
        _call("rd_backward", dims, t, gemm(P.dtype))
        g_w = t["dP"].flatten(0, 1).t() @ TH.flatten(0, 1) if ctx.needs_input_grad[3] else None
        return (t["dP"], dS if dims["ds0"] else None, t["dy0"], g_w, None, None, None, None)


def _probe(dtype: torch.dtype):
    """The kernel's output on a small problem, as a function of the gemm it uses."""
    gen = torch.Generator().manual_seed(0)
    B, T, H, dk, dv = 3, 4, 2, 3, 2
    K = H * (2 * dk + dv + 1)
    z, S0, y0, R = (torch.randn(*s, generator=gen, dtype=dtype)
                    for s in ((B, T, K), (B, H, dk, dv), (B, H * dv), (K, H * dv)))
    return lambda p: run_forward(z, S0, y0, R, (H, dk, dv), "identity", "l2", True, p)[1]["Y"]


KERNEL.probe = _probe
gemm = KERNEL.gemm  # the gemm address to use now (None: the kernel's own loops)
