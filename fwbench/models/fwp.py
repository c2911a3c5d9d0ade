"""Shared parts of the Fast Weight Programmers (docs/paper.md §4).

A slow network programs, per head, a fast weight matrix S (d_phi x d_v, stored key-major so
that the output is o = S^T φ(q)) from projections of the input:

    q_t, k_t, v_t = split( SiLU( conv( W_in x_t ) ) ),   φ(q), φ(k) = norm( feature_map(.) )

* The short causal depthwise convolution over the last `conv_size` projected inputs [R] (the
  short convolution of modern DeltaNets, Yang et al. 2024): when k_t and v_t read x_t alone, a
  one-layer FWP cannot bind a key to the value in the next step (under the sum rule its memory
  is then a bag of tokens); linear with conv_size 0 stays at chance on retrieval [C].
* Feature maps φ: identity, ELU + 1 (Katharopoulos et al. 2020) and DPFP of order ν (Schlag
  et al. 2021: r = ReLU([x, -x]), φ = [r ⊙ roll(r, 1), ..., r ⊙ roll(r, ν)], size 2 d_k ν).
* Normalisations of φ(q) and φ(k): none, sum (φ / Σφ, Schlag et al. 2021) or L2.
  Default: SiLU (from the convolution), identity map, L2 norm, as in Yang et al. 2024 [R]; it
  learned the retrieval task far faster than ELU+1 with sum normalisation in our checks.
  With L2-normalised keys and β in (0, 1) the delta rule's (I - β k k^T) is a contraction.

Each model defines its update rule twice: `rule_step` (one step, the obviously correct
reference, which `step()` and Catch use) and `rule_chunks` (the chunked form used to train:
chunks of `chunk_size` steps are handled as matrix products, the state passed between them).
The outputs of the heads are concatenated ([B, T, hidden]) and mixed by a linear map [R].
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from fwbench.errors import FwbenchError
from fwbench.models import conv_fused, delta_fused, native
from fwbench.models.base import CoreConfig, RecurrentCore
from fwbench.settings import setting

FEATURE_MAPS = ("identity", "elu1", "dpfp")
NORMS = ("none", "sum", "l2")
L2_EPS = 1e-6  # keeps an all-zero φ at zero under L2 normalisation


@dataclasses.dataclass(frozen=True)
class HeadsConfig(CoreConfig):
    """Settings of every multi-head model here; `hidden` is the model width d_model."""

    hidden: int = setting(100, "model width d_model: outputs, and heads x value size per head",
                          low=1)
    heads: int = setting(1, "heads (hidden must divide by it); 1 gives an H x H memory like "
                         "the fast-weights RNN's", low=1, paper="[C]")
    key_dim: int = setting(0, "key size per head (0: hidden / heads)", low=0, paper="[C]")
    conv_size: int = setting(4, "short causal convolution over the projections (0: none)",
                             low=0, paper="[R]")

    def validate(self):
        if self.hidden % self.heads:
            raise FwbenchError(f"invalid value {self.hidden} for hidden: expected a multiple of "
                               f"heads={self.heads}")

    @property
    def value_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def qk_dim(self) -> int:
        return self.key_dim or self.value_dim


@dataclasses.dataclass(frozen=True)
class FWPConfig(HeadsConfig):
    feature_map: str = setting("identity", "feature map φ of keys and queries (after the "
                               "convolution's SiLU)", choices=FEATURE_MAPS, paper="[R]")
    dpfp_nu: int = setting(1, "order ν of the DPFP feature map", low=1, paper="[R]")
    qk_norm: str = setting("l2", "normalisation of φ(k) and φ(q)", choices=NORMS, paper="[R]")

    def validate(self):
        super().validate()
        if self.qk_norm == "sum" and self.feature_map == "identity":
            raise FwbenchError("invalid value 'sum' for qk_norm with feature_map=identity: sum "
                               "normalisation needs a positive feature map (elu1 or dpfp)")


@dataclasses.dataclass(frozen=True)
class ChunkedConfig(FWPConfig):
    chunk_size: int = setting(64, "steps per chunk of the chunked form (0: whole sequence)",
                              low=0, paper="[C]")
    impl: str = setting("auto", "implementation (auto = chunked; reference = step loop)",
                        choices=("auto", "reference", "chunked"))


def feature_dim(d: int, kind: str, nu: int) -> int:
    """Size of φ(x) for x of size d."""
    return 2 * d * nu if kind == "dpfp" else d


def feature_map(x: torch.Tensor, kind: str, nu: int = 1) -> torch.Tensor:
    """φ(x) over the last dimension."""
    if kind == "elu1":
        return F.elu(x) + 1
    if kind == "dpfp":
        r = torch.relu(torch.cat([x, -x], dim=-1))  # [..., 2d]
        return torch.cat([r * torch.roll(r, j, dims=-1) for j in range(1, nu + 1)], dim=-1)
    return x


def normalise(x: torch.Tensor, kind: str, eps: float = L2_EPS) -> torch.Tensor:
    """Sum or L2 normalisation over the last dimension (eps keeps an all-zero φ at zero)."""
    if kind == "sum":
        return x / (x.sum(dim=-1, keepdim=True) + eps)
    if kind == "l2":
        return F.normalize(x, dim=-1, eps=eps)
    return x


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, heads*d] -> [B, heads, T, d]."""
    B, T, _ = x.shape
    return x.reshape(B, T, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, T, d] -> [B, T, heads*d]."""
    B, h, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d)


def to_chunks(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, h, T, ...] -> [B, h, T / size, size, ...], a view (T must divide by size)."""
    return x.unflatten(2, (x.shape[2] // size, size))


class _Scores(torch.autograd.Function):
    """(q, k [..., C, d], with_kk) -> Q K^T [..., C, C] (and K K^T when with_kk), whose
    backward keeps the chunk's steps as the rows of every product.

    Autograd's backward of q @ k.mT forms the key gradient as q^T g, a product with d rows
    and C columns; on the CPU, batched products of that shape at the short odd chunks of
    training (11 steps) ran at a third to a half of the speed of g^T q, the same numbers
    transposed. Here g_q = G_qk K and g_k = G_qk^T Q + (G_kk + G_kk^T) K: three products for
    both scores, where autograd makes four. `scores_reference` is the same left to autograd."""

    @staticmethod
    def forward(ctx, q, k, with_kk):
        ctx.save_for_backward(q, k)
        ctx.set_materialize_grads(False)
        kt = k.mT
        return q @ kt, (k @ kt if with_kk else None)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_qk, g_kk):
        q, k = ctx.saved_tensors
        g_q = g_k = None
        if g_qk is not None:
            g_q = g_qk @ k if ctx.needs_input_grad[0] else None
            g_k = g_qk.mT @ q
        if g_kk is not None:
            sym = (g_kk + g_kk.mT) @ k
            g_k = sym if g_k is None else g_k + sym
        if not ctx.needs_input_grad[1]:
            g_k = None
        return g_q, g_k, None


def scores(q: torch.Tensor, k: torch.Tensor, with_kk: bool = False):
    """Q K^T [..., C, C] for q, k [..., C, d], and K K^T when with_kk (else None): the
    chunked rules' score matrices, through `_Scores` when a gradient is wanted."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        return _Scores.apply(q, k, with_kk)
    return scores_reference(q, k, with_kk)


def scores_reference(q: torch.Tensor, k: torch.Tensor, with_kk: bool = False):
    """`scores` left to autograd (its parity reference)."""
    kt = k.transpose(-1, -2)
    return q @ kt, (k @ kt if with_kk else None)


class _ConvSiLU(torch.autograd.Function):
    """SiLU of the depthwise causal convolution, with a hand-written backward.

    Left to autograd, each tap of the convolution costs a product for the input's gradient,
    another plus a reduction for the weight's, and a zero-filled tensor the size of the whole
    padded input that the slice's gradient is copied into, then summed over the taps: at
    short sequences these passes took nearly half of a training step of the FWPs. Here the
    input's gradient is accumulated tap by tap in one buffer, in place, and the weight's
    gradient is one product over the overlapping windows of the padded input (a view) and
    one reduction.
    The first `n_l2` channels can be L2-normalised in groups of `group` (φ(q), φ(k) of the
    default identity map with L2 norm), their backward written by hand too: F.normalize left
    to autograd is a dozen small operations, which at short sequences cost more by their
    number than by their size.
    Forward: x[B, T, C], buf[B, size-1, C], weight[C, size] -> SiLU(y)[B, T, C].
    """

    @staticmethod
    def forward(ctx, x, buf, weight, n_l2=0, group=1):
        T, size = x.shape[1], weight.shape[1]
        xx = torch.cat([buf, x], dim=1)  # [B, size-1+T, C], oldest first
        w = weight.t().contiguous()  # [size, C]: strided rows make each product 2.5x slower
        y = xx[:, 0:T] * w[0]
        for j in range(1, size):
            y = torch.addcmul(y, xx[:, j:j + T], w[j])
        out = F.silu(y)
        ctx.n_l2, ctx.group = n_l2, group
        if n_l2:  # x / max(|x|, eps) per group, as F.normalize (in place on the new tensor)
            part = out[..., :n_l2].unflatten(-1, (n_l2 // group, group))
            norm = torch.linalg.vector_norm(part, dim=-1, keepdim=True)
            clamped = norm.clamp_min(L2_EPS)
            part.div_(clamped)
            ctx.save_for_backward(xx, y, w, out, clamped, norm < L2_EPS)
        else:
            ctx.save_for_backward(xx, y, w)
        return out

    @staticmethod
    def backward(ctx, grad):
        xx, y, w = ctx.saved_tensors[:3]
        B, T, C = grad.shape
        size = w.shape[0]
        grad = grad.contiguous()
        n = ctx.n_l2
        if n:  # through the norm: (g - φ (φ·g)) / |x| where |x| >= eps, else g / eps
            out, clamped, small = ctx.saved_tensors[3:]
            phi = out[..., :n].unflatten(-1, (n // ctx.group, ctx.group))
            g_phi = grad[..., :n].unflatten(-1, (n // ctx.group, ctx.group))
            along = (phi * g_phi).sum(-1, keepdim=True).masked_fill_(small, 0)
            g_pre = torch.empty_like(grad)
            g_pre[..., :n] = (torch.addcmul(g_phi, phi, along, value=-1) / clamped).flatten(-2)
            g_pre[..., n:] = grad[..., n:]
            grad = g_pre
        gy = torch.ops.aten.silu_backward(grad, y)  # [B, T, C]
        g_in = g_buf = g_w = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            gxx = torch.empty_like(xx)
            gxx[:, size - 1:] = gy * w[size - 1]  # the last tap reads x itself
            gxx[:, :size - 1].zero_()
            for j in range(size - 1):
                gxx[:, j:j + T].addcmul_(gy, w[j])
            g_buf, g_in = gxx[:, :size - 1], gxx[:, size - 1:]
        if ctx.needs_input_grad[2]:
            st = xx.stride()  # windows[b, t, j, c] = xx[b, t + j, c]: a view, nothing copied
            windows = xx.as_strided((B, T, size, C), (st[0], st[1], st[1], st[2]),
                                    xx.storage_offset())
            g_w = (windows * gy[:, :, None]).sum((0, 1)).t()  # [C, size]
        return g_in, g_buf, g_w, None, None


class ShortConv(nn.Module):
    """Depthwise causal convolution over time, then SiLU [R], with a step form via a buffer."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.size, self.channels = size, channels
        if size:  # torch's Conv1d initialisation (fan-in = size)
            bound = 1 / math.sqrt(size)
            self.weight = nn.Parameter(torch.empty(channels, size).uniform_(-bound, bound))

    @property
    def buffer_len(self) -> int:
        return max(self.size - 1, 0)

    def forward(self, x: torch.Tensor, buf: torch.Tensor, n_l2: int = 0,
                group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """x[B, T, C] and the previous inputs buf[B, size-1, C] -> (y[B, T, C], new buf),
        the first n_l2 channels of y L2-normalised in groups of `group` (size > 0 only).

        y_t = SiLU(Σ_j w_j x_{t-size+1+j}): on the CPU in float32/float64 one call of a compiled
        kernel (conv_fused.py, conv_kernel.c; FWBENCH_NO_KERNEL=1 or no C compiler: torch),
        else shifted products (they beat F.conv1d with groups=C on CPU) in `_ConvSiLU` for a
        cheaper backward; `forward_reference` is the same left to autograd."""
        if self.size == 0:
            return x, buf
        L, T = self.buffer_len, x.shape[1]
        new_buf = x[:, T - L:] if T >= L else torch.cat([buf[:, T:], x], dim=1)
        if conv_fused.available(x) and buf.dtype == x.dtype == self.weight.dtype:
            return conv_fused.ConvSiLU.apply(x, buf, self.weight, n_l2, group), new_buf
        return _ConvSiLU.apply(x, buf, self.weight, n_l2, group), new_buf

    def forward_reference(self, x: torch.Tensor, buf: torch.Tensor, n_l2: int = 0,
                          group: int = 1):
        """`forward` in plain autograd operations (its parity reference)."""
        if self.size == 0:
            return x, buf
        T = x.shape[1]
        xx = torch.cat([buf, x], dim=1)  # [B, size-1+T, C], oldest first
        w = self.weight.t().contiguous()  # [size, C]
        y = xx[:, 0:T] * w[0]
        for j in range(1, self.size):
            y = torch.addcmul(y, xx[:, j:j + T], w[j])
        y = F.silu(y)
        if n_l2:
            part = normalise(y[..., :n_l2].unflatten(-1, (n_l2 // group, group)), "l2")
            y = torch.cat([part.flatten(-2), y[..., n_l2:]], dim=-1)
        return y, xx[:, xx.shape[1] - self.buffer_len:]


class Projections(nn.Module):
    """x -> per-head q, k [B, h, T, d_k] and v [B, h, T, d_v] (before feature maps)."""

    def __init__(self, input_size: int, cfg: HeadsConfig):
        super().__init__()
        self.heads, self.dk, self.dv = cfg.heads, cfg.qk_dim, cfg.value_dim
        self.channels = self.heads * (2 * self.dk + self.dv)
        self.proj = nn.Linear(input_size, self.channels, bias=False)
        self.conv = ShortConv(self.channels, cfg.conv_size)

    def forward(self, x, buf, l2: bool = False):
        """x[B, T, D] and the convolution buffer -> (q, k, v, new buffer); with l2 (and a
        convolution), q and k come L2-normalised per head from the convolution itself."""
        h, dk, dv = self.heads, self.dk, self.dv
        z, buf = self.conv(self.proj(x), buf, 2 * h * dk if l2 else 0, dk)  # [B, T, channels]
        q, k, v = z.split([h * dk, h * dk, h * dv], dim=-1)
        return split_heads(q, h), split_heads(k, h), split_heads(v, h), buf


class FWPCore(RecurrentCore):
    """A multi-head fast weight programmer; subclasses give the update rule.

    State: (conv buffer [B, conv_size-1, channels], S [B, heads, d_phi, d_v]).
    Gates are per-head scalars per step computed from x (β, decay): `gate_count` of them.
    """

    Config = ChunkedConfig
    gate_count = 0
    # (conv buffer, S): the fast weights S are the memory, the recent inputs working state [C]
    memory = (1,)

    def __init__(self, input_size: int, cfg: FWPConfig):
        super().__init__(input_size, cfg)
        self.proj = Projections(input_size, cfg)
        self.dphi = feature_dim(cfg.qk_dim, cfg.feature_map, cfg.dpfp_nu)
        if self.gate_count:
            self.gate = nn.Linear(input_size, cfg.heads * self.gate_count)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)

    # the rule as one call of delta_fused's kernel (delta and gated delta; `impl` fused)
    fused_rule = False

    def choose_impl(self, x: torch.Tensor) -> str:
        """The implementation `forward` uses for x[B, T, D]: `auto` is the compiled kernel of
        the rule where the model has one, it runs on x and its size fits, else `chunked`."""
        impl = self.cfg.impl
        if impl in ("auto", "fused") and self.fused_rule:
            why = self._no_fused_reason(x, x.shape[1])
            if why is None:
                return "fused"
            if impl == "fused":
                raise FwbenchError(f"impl=fused cannot run: {why}; use impl=auto to fall back "
                                   "to the chunked torch form")
        elif impl == "fused":
            raise FwbenchError(f"impl=fused: {type(self).__name__} has no compiled kernel")
        return "chunked" if impl == "auto" else impl

    def _no_fused_reason(self, p: torch.Tensor, seq_len: int) -> str | None:
        """Why the rule's kernel does not run on tensors like p over seq_len steps (None: it
        does)."""
        c = self.cfg
        if not delta_fused.fits(c.heads, seq_len, self.dphi, c.value_dim):
            return (f"fast weights of {self.dphi} x {c.value_dim} over {seq_len} steps are "
                    "beyond the kernel's sizes (delta_fused.fits)")
        if not delta_fused.available(p):
            return native.no_kernel_reason(p)
        return None

    def implementation(self, seq_len: int | None = None) -> dict[str, str]:
        out = super().implementation(seq_len)
        if seq_len is not None and self.fused_rule and self.cfg.impl in ("auto", "fused"):
            p = next(self.parameters())
            why = self._no_fused_reason(p, seq_len)
            out = {"impl": "fused"} if why is None else {"impl": "chunked", "reason": why}
        return {**out, **self.conv_implementation(seq_len)}

    def conv_implementation(self, seq_len: int | None) -> dict[str, str]:
        """Which form of the short convolution runs on sequences (`conv`: the compiled kernel,
        `fused`, or `_ConvSiLU` in torch, with the reason); nothing for `step` or without one."""
        if seq_len is None or not self.proj.conv.size:
            return {}
        p = next(self.parameters())
        if conv_fused.available(p):
            return {"conv": "fused"}
        return {"conv": "torch", "conv_reason": native.no_kernel_reason(p)}

    # ---- pieces
    def phi(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(feature_map(x, self.cfg.feature_map, self.cfg.dpfp_nu), self.cfg.qk_norm)

    def gates(self, pre: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Pre-activations [B, h, T, gate_count] -> the rule's gates, each [B, h, T]."""
        return ()

    def initial_state(self, batch, device=None):
        c = self.cfg
        return (self.zeros(batch, self.proj.conv.buffer_len, self.proj.channels, device=device),
                self.zeros(batch, c.heads, self.dphi, c.value_dim, device=device))

    def state_size(self, seq_len):
        return self.proj.conv.buffer_len * self.proj.channels + \
            self.cfg.heads * self.dphi * self.cfg.value_dim

    def inputs(self, x, buf):
        """x[B, T, D] -> φ(q), φ(k), v [B, h, T, .], gates ([B, h, T] each), new buffer."""
        c = self.cfg
        # the default φ (identity, L2 norm) runs inside the convolution's autograd Function
        fused = c.feature_map == "identity" and c.qk_norm == "l2" and self.proj.conv.size > 0
        q, k, v, buf = self.proj(x, buf, l2=fused)
        g = ()
        if self.gate_count:
            g = self.gates(split_heads(self.gate(x), self.cfg.heads))  # [B, h, T, gate_count]
        if fused:
            return q, k, v, g, buf
        return self.phi(q), self.phi(k), v, g, buf

    # ---- the rule, defined by subclasses
    def rule_step(self, S, q, k, v, *g):
        """One step: S[B, h, d_phi, d_v], q, k [B, h, d_phi], v [B, h, d_v], gates [B, h]
        -> (o[B, h, d_v], new S)."""
        raise NotImplementedError

    def rule_chunks(self, S, q, k, v, *g, final: bool = True):
        """Chunked: q, k [B, h, N, C, d_phi], v [B, h, N, C, d_v], gates [B, h, N, C], S None
        for zero -> (o[B, h, N, C, d_v], final S, or None when `final` is False)."""
        raise NotImplementedError

    # ---- step and sequence forms
    def step(self, x, state):
        buf, S = state
        q, k, v, g, buf = self.inputs(x[:, None], buf)  # T = 1
        o, S = self.rule_step(S, q[:, :, 0], k[:, :, 0], v[:, :, 0], *(t[:, :, 0] for t in g))
        return self.out(o.flatten(1)), (buf, S)  # [B, h*d_v]

    def forward(self, x, state=None):
        impl = self.choose_impl(x)
        if impl == "reference":
            return super().forward(x, state)
        if impl == "fused":
            return self.forward_fused(x, state)
        return self.forward_chunked(x, state)

    def outputs(self, x):
        """y[B, T, hidden] from the zero state, never forming the final fast weights."""
        impl = self.choose_impl(x)
        if impl == "reference":
            return super().outputs(x)
        if impl == "fused":
            return self.forward_fused(x, final_state=False)[0]
        return self.forward_chunked(x, final_state=False)[0]

    def segment_len(self, x) -> int:
        """Steps per segment of x[B, T, D]: a multiple of the chunk size whose widest tensors
        (projections, features, gates, chunk products, outputs) stay under `segment_bytes`
        (RecurrentCore's); T itself when the sequence fits, when it is one chunk (chunk_size
        0), or off the CPU (the limit is glibc's)."""
        B, T, _ = x.shape
        C = self.cfg.chunk_size
        if not C or C >= T or x.device.type != "cpu":
            return T
        h = self.cfg.heads
        width = max(self.proj.channels + h * self.gate_count, h * (self.dphi + self.cfg.value_dim),
                    h * C, self.cfg.hidden, x.shape[2])  # elements per step and sequence
        fit = self.segment_bytes // (B * width * x.element_size())
        return min(T, max(C, fit // C * C))

    def _carried(self, x, state):
        """(convolution buffer, S) carried in: `state`, or a zero buffer and no S (zero)."""
        if state is not None:
            return state
        return self.zeros(x.shape[0], self.proj.conv.buffer_len, self.proj.channels,
                          device=x.device), None

    def forward_fused(self, x, state=None, final_state: bool = True):
        """The rule over the whole sequence in one call of the compiled kernel
        (delta_fused.py), from the projections computed at once as in `forward_chunked`."""
        buf, S = self._carried(x, state)
        q, k, v, g, buf = self.inputs(x, buf)
        o, S = delta_fused.DeltaRule.apply(q, k, v, g[0], g[1] if len(g) > 1 else None, S,
                                           final_state)
        y = self.out(merge_heads(o))
        return y, ((buf, S) if final_state else None)

    def forward_chunked(self, x, state=None, final_state: bool = True):
        """All projections at once, then the rule chunk by chunk; the T mod C steps left over
        form one shorter chunk (no padding). A zero initial S is never formed nor multiplied,
        and with final_state=False neither is the final one (the state is then None).
        A long sequence runs in segments of `segment_len` steps (chunk boundaries), the state
        carried from one to the next: the same chunks, in tensors the allocator reuses."""
        seg = self.segment_len(x)
        if seg >= x.shape[1]:
            return self._forward_segment(x, state, final_state)
        parts, ys = x.split(seg, dim=1), []  # split once: one gradient for x, not one per part
        for i, part in enumerate(parts):
            y, state = self._forward_segment(part, state, final_state or i < len(parts) - 1)
            ys.append(y)
        return torch.cat(ys, dim=1), state

    def _forward_segment(self, x, state=None, final_state: bool = True):
        """`forward_chunked` on one segment."""
        T = x.shape[1]
        buf, S = self._carried(x, state)
        q, k, v, g, buf = self.inputs(x, buf)
        C = min(self.cfg.chunk_size or T, T)  # a short sequence is one chunk
        cut = T - T % C
        outs = []
        for lo, hi, size in ((0, cut, C), (cut, T, T - cut)):
            if hi > lo:
                parts = (to_chunks(t[:, :, lo:hi], size) for t in (q, k, v, *g))
                o, S = self.rule_chunks(S, *parts, final=final_state or hi < T)
                outs.append(o.flatten(2, 3))  # [B, h, hi - lo, d_v]
        y = self.out(merge_heads(torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]))
        return y, ((buf, S) if final_state else None)
