"""The fused CPU path of the fast-weights RNN: the whole sequence in one call of the compiled
kernel (fastweights_kernel.c), its hand-written backward in one more, as an autograd Function.

Time is cut into chunks of `chunk` steps. Inside a chunk, A(t) z is read from the fast weights
at the chunk's start and the chunk's own stored states (the memory view, docs/paper.md §1.5); the
explicit A is formed only at chunk ends and kept for the backward pass. Time is
O(T (H^2 + chunk H)) and saved memory O(T S H + (T / chunk) H^2): linear in T. With one chunk
and no carried-in A this is the pure memory view.

The function returns the outputs and A at the start of the last chunk; the final A(T) is formed
from those by `final_fast_weights` only when the caller wants the final state, so training,
which only reads the outputs, never pays the O(B H^2 T) of forming it.

With level marks (the multi-level model) the kernel takes, per step, the step whose output its
slow term reads (`level_sources`): the working state is set aside and restored inside the one
call, while the fast weights run through the whole sequence as in a plain one.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import NamedTuple

import torch

from fwbench.models import fastweights_native as native
from fwbench.models.base import DOWN, UP

KERNEL = native.KERNEL  # the compiled kernel, its library and its use of torch's BLAS


class Spec(NamedTuple):
    lam: float
    eta: float
    S: int
    stop_grad: bool
    chunk: int
    eps: float = 1e-5


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on this tensor (CPU, float32 or float64)."""
    return x.device.type == "cpu" and native.load(x.dtype) is not None


@lru_cache(maxsize=None)
def _powers(lam: float, n: int, dtype: torch.dtype) -> torch.Tensor:
    return lam ** torch.arange(n + 1, dtype=torch.float64).to(dtype)  # lam^j, j = 0 .. n


def _call(fn: str, shape, spec: Spec, tensors: dict, blas: int | None, **flags) -> None:
    """Run kernel function `fn` on `tensors` (field name -> tensor or None)."""
    B, T, H = shape
    dtype = tensors["Y"].dtype
    args = native.Args(B=B, T=T, H=H, S=spec.S, L=spec.chunk, stop_grad=int(spec.stop_grad),
                       eta=spec.eta, eps=spec.eps, gemm=blas, **flags)
    for name, t in tensors.items():
        setattr(args, name, None if t is None else t.data_ptr())
    args.pw = _powers(spec.lam, spec.chunk, dtype).data_ptr()
    getattr(native.load(dtype), fn)(ctypes.byref(args))


def _batch_last(t: torch.Tensor | None) -> torch.Tensor | None:
    """[B, ...] -> [..., B] contiguous (the kernel's layout)."""
    return None if t is None else t.permute(*range(1, t.dim()), 0).contiguous()


def _batch_first(t: torch.Tensor) -> torch.Tensor:
    """[..., B] -> [B, ...] (a view)."""
    return t.permute(t.dim() - 1, *range(t.dim() - 1))


def level_sources(marks: tuple[int, ...]) -> torch.Tensor:
    """For level marks[T] (fwbench.models.base), the step whose output each step's slow term
    reads as its previous state: t - 1 in a plain run, -1 for the initial state, -2 for the
    fresh zero state a finer level starts from, and the step before the matching DOWN where the
    coarser level resumes (what `RecurrentCore.change_level` sets aside and restores)."""
    prev, aside = [], []
    for t, mark in enumerate(marks):
        if mark == DOWN:
            aside.append(t - 1)
            prev.append(-2)
        elif mark == UP:
            prev.append(aside.pop())
        else:
            prev.append(t - 1)
    return torch.tensor(prev, dtype=torch.int64)


def run_forward(cx, h0, A0, W, g, b, gp, bp, spec: Spec, blas: int | None,
                prev: torch.Tensor | None = None) -> dict:
    """The kernel's forward pass; returns its tensors (batch last) by field name. prev[T]:
    `level_sources` of the level marks, or None for a plain sequence."""
    B, T, H = cx.shape
    S, new = spec.S, cx.new_empty
    t = dict(cx=cx.contiguous(), h0=_batch_last(h0), A0=_batch_last(A0), W=W.contiguous(),
             prev=prev,
             g=g, b=b, gp=gp, bp=bp, Y=new(T, H, B), Yb=new(B, T, H), Q=new(T, S, H, B),
             XH=None, RS=None, XP=None, RP=None, work=new(8 * H + 8, B),
             AB=new(-(-T // spec.chunk) - 1, H, H, B))  # A at every chunk end but the last
    if g is not None:
        t.update(XH=new(T, S, H, B), RS=new(T, S, B))
    if gp is not None:
        t.update(XP=new(T, H, B), RP=new(T, B))
    _call("fw_forward", (B, T, H), spec, t, blas)
    return t


class FusedFastWeights(torch.autograd.Function):
    """(cx, h0, A0, W, LN gain, LN bias, pre-LN gain, pre-LN bias, spec, prev) ->
    (Y[B, T, H], A at the start of the last chunk [B, H, H], empty when there is one chunk).
    h0 and A0 may be None (zero); so may the layer-norm parameters (no layer norm) and prev
    (no level marks)."""

    @staticmethod
    def forward(ctx, cx, h0, A0, W, g, b, gp, bp, spec: Spec, prev=None):
        t = run_forward(cx, h0, A0, W, g, b, gp, bp, spec, gemm(cx.dtype), prev)
        ctx.spec, ctx.prev = spec, prev
        ctx.save_for_backward(*(t[k] for k in ("h0", "A0", "W", "g", "gp", "Y", "Q", "XH", "RS",
                                               "XP", "RP", "AB")))
        ctx.set_materialize_grads(False)
        A_last = _batch_first(t["AB"][-1]).contiguous() if len(t["AB"]) else cx.new_empty(0)
        return t["Yb"], A_last

    @staticmethod
    def backward(ctx, dY, dA_last):
        spec, (h0, A0, W, g, gp, Y, Q, XH, RS, XP, RP, AB) = ctx.spec, ctx.saved_tensors
        T, H, B = Y.shape
        zeros, empty = Y.new_zeros, Y.new_empty
        need_A0 = A0 is not None and ctx.needs_input_grad[2]
        has_G = dA_last is not None and dA_last.numel() > 0
        G = None
        if has_G:
            G = _batch_last(dA_last)
        elif need_A0 or (T > spec.chunk and not spec.stop_grad):  # dL/dA needed upstream
            G = empty(H, H, B)
        t = dict(h0=h0, A0=A0, W=W, g=g, gp=gp, prev=ctx.prev, Y=Y, Q=Q, XH=XH, RS=RS, XP=XP, RP=RP, AB=AB,
                 dY=zeros(B, T, H) if dY is None else dY.contiguous(), G=G, DS=empty(T, H, B),
                 DSb=empty(B, T, H), D=empty(T, spec.S, H, B), dW=zeros(H, H),
                 work=empty(8 * H + 8, B), dh0=zeros(H, B) if ctx.needs_input_grad[1] else None,
                 dg=None, db=None, dgp=None, dbp=None)
        if g is not None:
            t.update(dg=zeros(H), db=zeros(H))
        if gp is not None:
            t.update(dgp=zeros(H), dbp=zeros(H))
        _call("fw_backward", (B, T, H), spec, t, gemm(Y.dtype), has_G=int(has_G),
              need_A0=int(need_A0))
        dh0 = None if t["dh0"] is None else t["dh0"].t()
        dA0 = _batch_first(G) if need_A0 else None
        return t["DSb"], dh0, dA0, t["dW"], t["dg"], t["db"], t["dgp"], t["dbp"], None, None


def final_fast_weights(y, A_last, A0, spec: Spec):
    """A(T) from the outputs y[B, T, H] and A at the last chunk's start (differentiable)."""
    T = y.shape[1]
    c0 = (T - 1) // spec.chunk * spec.chunk
    start = A_last if c0 > 0 else A0
    keys = y[:, c0:].detach() if spec.stop_grad else y[:, c0:]  # [B, n, H]
    n = T - c0
    w = spec.eta * _powers(spec.lam, n, y.dtype)[:n].flip(0)  # eta lam^(T-1-tau)
    A = torch.bmm((keys * w[:, None]).transpose(1, 2), keys)  # [B, H, H]
    return A if start is None else A + spec.lam ** n * start


def _probe(dtype: torch.dtype):
    """The kernel's output on a small problem, as a function of the gemm it uses."""
    gen = torch.Generator().manual_seed(0)
    cx, h0, W = (torch.randn(*s, generator=gen, dtype=dtype) for s in ((3, 4, 5), (3, 5), (5, 5)))
    spec = Spec(0.9, 0.5, 1, False, 4)
    return lambda p: run_forward(cx, h0, None, W, None, None, None, None, spec, p)["Y"]


KERNEL.probe = _probe
gemm = KERNEL.gemm  # the gemm address to use now (None: the kernel's own loops)


describe_kernel = KERNEL.describe  # for bench records
