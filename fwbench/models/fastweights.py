"""Fast-weights RNN (Ba, Hinton, Mnih, Leibo & Ionescu 2016, "Using Fast Weights to Attend to
the Recent Past"). Equations as in docs/paper.md §1, with x(t) input and f = ReLU:

    A(t)      = λ A(t-1) + η h(t) h(t)^T,                  A(0) = 0, h(0) = 0     (fast weights)
    h_0(t+1)  = f( W h(t) + C x(t) + b )                     (preliminary state; LN optional [C])
    h_s+1(t+1)= f( LN[ W h(t) + C x(t) + b + A(t) h_s(t+1) ] ),   s = 0 .. S-1
    h(t+1)    = h_S(t+1)

The slow term W h(t) + C x(t) + b is computed once per step and held during the inner loop;
A(t) holds states up to h(t) only. Four implementations compute the same function:

* `reference`: the explicit H x H matrix A(t) per sequence, updated step by step. Obviously
  correct, O(H^2) per inner step, and the form `step()` uses for one-input-at-a-time use.
* `memory`: the paper's memory view, A(t) z = η Σ_τ λ^(t-τ) h(τ) (h(τ)^T z): attention over
  the stored states, O(t H) per inner step, never forming A. Cheaper when T is small against H.
* `chunked`: the memory view inside chunks of L steps, starting from the explicit A at the
  chunk's start; only those boundary A's are kept for backward (each chunk is recomputed), so
  time is O(T (H^2 + L H)) and memory O(T H + (T/L) H^2): linear in T. Any device.
* `fused`: the same chunked algorithm as one compiled CPU kernel call for the whole sequence,
  with a hand-written backward (fastweights_fused.py); float32/float64 on CPU, needs a C
  compiler (compiled once, cached).

`auto` picks `fused` when it can run, else `memory` for one chunk's worth of steps and
`chunked` beyond. Chunks are L = max(16, H/2) steps, and one chunk covers the whole sequence
when T <= 2L: measured on CPU, the best time within 10% for H = 20..100, T = 64..512 [C].
`outputs(x)` skips forming the final H x H fast weights, which training never reads.

With level marks (`forward_levels`, docs/paper.md §3.2 [C]) h is set aside and restored at
the marks while A is kept: the fused kernel runs the whole sequence in one call, told per step
which state it resumes from; without the kernel, the memory view (`forward_levels_memory`).

`stop_grad` stops gradients through A (an ablation: the memory content is then treated as a
constant). Initial W = w_scale * I [R].
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from fwbench.models import fastweights_fused as fused
from fwbench.models.base import CoreConfig, RecurrentCore, check_marks
from fwbench.models.native import KernelChoice
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class FastWeightsConfig(CoreConfig):
    lam: float = setting(0.95, "decay rate λ of the fast weights", low=0.0, high=1.0, paper="[S]")
    eta: float = setting(0.5, "fast learning rate η", low=0.0, paper="[S]")
    S: int = setting(1, "inner-loop steps per time step", low=1, paper="[R]")
    layernorm: bool = setting(True, "layer norm inside the inner loop (per example)", paper="[P]")
    ln_pre: bool = setting(False, "layer norm on the preliminary state h_0 too", paper="[C]")
    stop_grad: bool = setting(False, "stop gradients through the fast weights A", paper="[C]")
    w_scale: float = setting(0.05, "slow recurrent weights start at w_scale * identity", low=0.0,
                             paper="[R]")
    impl: str = setting("auto", "implementation (auto: fused on CPU when the kernel compiles, "
                        "else memory for short sequences and chunked for long ones)",
                        choices=("auto", "reference", "memory", "chunked", "fused"))


class FastWeights(KernelChoice, RecurrentCore):
    Config = FastWeightsConfig
    summary = "fast-weights RNN: Hebbian fast memory with an inner loop (Ba et al. 2016)"
    memory = (1,)  # (h, A): the fast weights A are the memory, h the working state [C]
    kernel = fused  # the compiled CPU kernel (impl = fused); `step` runs the reference

    def __init__(self, input_size: int, cfg: FastWeightsConfig):
        super().__init__(input_size, cfg)
        H = cfg.hidden
        self.C = nn.Linear(input_size, H)
        self.W = nn.Linear(H, H, bias=False)
        with torch.no_grad():
            self.W.weight.copy_(cfg.w_scale * torch.eye(H))
            self.C.bias.zero_()
        self.ln = nn.LayerNorm(H) if cfg.layernorm else nn.Identity()
        self.ln_pre = nn.LayerNorm(H) if cfg.ln_pre else nn.Identity()

    # ---- state: h[B, H] and the explicit fast weights A[B, H, H]
    def initial_state(self, batch, device=None):
        H = self.cfg.hidden
        return (self.zeros(batch, H, device=device), self.zeros(batch, H, H, device=device))

    def _store(self, h):
        return h.detach() if self.cfg.stop_grad else h

    def _inner(self, slow, fast):
        """Preliminary state then S inner steps; fast(z) returns A(t) z for z[B, H]."""
        hs = torch.relu(self.ln_pre(slow))
        for _ in range(self.cfg.S):
            hs = torch.relu(self.ln(slow + fast(hs)))
        return hs

    def _reference_step(self, cx, state):
        h, A = state
        slow = self.W(h) + cx
        # A z computed as the row z^T A^T: the same product, in the layout bmm runs fastest
        h = self._inner(slow, lambda z: torch.bmm(z[:, None, :], A.transpose(1, 2))[:, 0])
        hd = self._store(h)
        # A <- λ A + η h h^T, [B, H, H] (docs/paper.md §1.1)
        A = torch.baddbmm(A, hd[:, :, None], hd[:, None, :], beta=self.cfg.lam, alpha=self.cfg.eta)
        return h, (h, A)

    def step(self, x, state):
        return self._reference_step(self.C(x), state)

    def forward(self, x, state=None, final_state: bool = True):
        """x[B, T, D] -> (y[B, T, H], (h(T), A(T))); with final_state=False the state may be
        None (the fused path then never forms A(T))."""
        impl = self.choose_impl(x)
        if impl == "fused":
            return self.forward_fused(x, state, final_state)
        run = {"reference": self.forward_reference, "memory": self.forward_memory,
               "chunked": self.forward_chunked}[impl]
        return run(x, state)

    def outputs(self, x):
        """y[B, T, H] alone: the fused path then never forms the final H x H fast weights."""
        return self(x, final_state=False)[0]

    def forward_levels(self, x, marks):
        """With level marks, h set aside and restored at the marks while A runs on: the fused
        kernel when `forward` would run it, else the memory view. A is never reset, so it need
        not be formed at each mark (cutting the sequence there for `forward` costs an H x H
        matrix per cut and is many times slower)."""
        check_marks(self, x, marks)
        if self.choose_impl(x) != "fused":
            return self.forward_levels_memory(x, marks)
        return fused.FusedFastWeights.apply(self.C(x), None, None, *self._kernel_args(x),
                                            fused.level_sources(marks))[0]

    def forward_levels_memory(self, x, marks):
        """`forward_levels` in the memory view over the whole sequence (torch, any device)."""
        check_marks(self, x, marks)
        h, aside, ys, stored = x.new_zeros(x.shape[0], self.cfg.hidden), [], [], []
        for t, (cxt, mark) in enumerate(zip(self.C(x).unbind(1), marks)):
            if mark:
                h = self.change_level(mark, (h, None), aside)[0]  # A (leaf 1) is kept
            h = self._inner(self.W(h) + cxt, self._memory_reader(stored, None, t))
            ys.append(h)
            stored.append(self._store(h))
        return torch.stack(ys, dim=1)

    def levels_implementation(self, seq_len: int) -> str:
        """What `forward_levels` runs for `seq_len` steps (for run records)."""
        p = next(self.parameters())
        fast = self.choose_impl(p.new_empty(1, seq_len, self.input_size)) == "fused"
        return "FastWeights.forward_levels" + ("" if fast else "_memory")

    def torch_impl(self, x) -> str:
        """Without the kernel: the memory view, or chunks when the sequence is long."""
        return "memory" if self.chunk_length(x.shape[1]) >= x.shape[1] else "chunked"

    def chunk_length(self, T: int) -> int:
        """Steps per chunk: L = max(16, H/2), or the whole sequence when T <= 2L [C]."""
        L = max(16, self.cfg.hidden // 2)
        return max(T, 1) if T <= 2 * L else L

    def _start(self, x, state):
        """(h(0), A(0) or None) from the carried state; A(0) = None means zero."""
        if state is None:
            return x.new_zeros(x.shape[0], self.cfg.hidden), None
        return state

    def _kernel_args(self, x):
        """(W, LN gain, LN bias, pre-LN gain, pre-LN bias, Spec) for the kernel on x[B, T, D]."""
        c = self.cfg
        ln = (self.ln.weight, self.ln.bias) if c.layernorm else (None, None)
        pre = (self.ln_pre.weight, self.ln_pre.bias) if c.ln_pre else (None, None)
        spec = fused.Spec(c.lam, c.eta, c.S, c.stop_grad, self.chunk_length(x.shape[1]))
        return (self.W.weight, *ln, *pre, spec)

    def forward_fused(self, x, state=None, final_state: bool = True):
        """The compiled CPU kernel over chunks, with its hand-written backward."""
        h0, A0 = (None, None) if state is None else state  # None: zero, skipped by the kernel
        args = self._kernel_args(x)
        y, A_last = fused.FusedFastWeights.apply(self.C(x), h0, A0, *args)
        spec = args[-1]
        if not final_state:
            return y, None
        return y, (y[:, -1], fused.final_fast_weights(y, A_last, A0, spec))

    def forward_chunked(self, x, state=None):
        """Memory view inside chunks, explicit A between them; chunks recomputed in backward."""
        h, A = self._start(x, state)
        cx = self.C(x)  # [B, T, H]
        L, ys = self.chunk_length(x.shape[1]), []
        for c0 in range(0, x.shape[1], L):
            y, (h, A) = checkpoint(self._memory_from_cx, cx[:, c0:c0 + L], h, A,
                                   use_reentrant=False)
            ys.append(y)
        return torch.cat(ys, dim=1), (h, A)

    def forward_reference(self, x, state=None):
        """Explicit A(t), a plain loop over time."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        cx = self.C(x)  # [B, T, H]
        ys = []
        for cxt in cx.unbind(1):  # unbind once: indexing cx[:, t] makes backward O(T^2)
            y, state = self._reference_step(cxt, state)
            ys.append(y)
        return torch.stack(ys, dim=1), state

    def forward_memory(self, x, state=None):
        """Memory view: attend over the stored states with weights η λ^(t-τ), no softmax."""
        return self._memory_from_cx(self.C(x), *self._start(x, state))

    def _memory_from_cx(self, cx, h, A0):
        """The memory view from the input term cx[B, T, H] = C x + b and the carried state."""
        T = cx.shape[1]
        ys: list[torch.Tensor] = []
        stored: list[torch.Tensor] = []  # what enters A: h, or h detached under stop_grad
        for t, cxt in enumerate(cx.unbind(1)):  # unbind: per-step indexing is O(T^2) backward
            slow = self.W(h) + cxt
            h = self._inner(slow, self._memory_reader(stored, A0, t))
            ys.append(h)
            stored.append(self._store(h))
        A = self._memory_to_matrix(stored, A0, T)
        return torch.stack(ys, dim=1), (h, A)

    def _decay(self, t, like):
        """η λ^(t-1-τ) for τ = 0 .. t-1 (oldest first): the weight of each stored state."""
        powers = torch.arange(t - 1, -1, -1, device=like.device, dtype=like.dtype)
        return self.cfg.eta * self.cfg.lam ** powers

    def _memory_reader(self, stored, A0, t):
        """z -> A(t) z from the stored states (and the carried-in A0, decayed by λ^t)."""
        if stored:
            mem = torch.stack(stored, dim=1)  # [B, t, H], oldest first
            w = self._decay(t, mem)
        lam_t = self.cfg.lam ** t

        def read(z):
            out = torch.zeros_like(z)
            if stored:
                scores = torch.bmm(mem, z[:, :, None])[:, :, 0] * w  # [B, t]
                out = out + torch.bmm(scores[:, None, :], mem)[:, 0]  # [B, H]
            if A0 is not None:
                out = out + lam_t * torch.bmm(A0, z[:, :, None])[:, :, 0]
            return out

        return read

    def _memory_to_matrix(self, stored, A0, T):
        """The explicit A(T) that the memory represents, for carrying state onwards."""
        mem = torch.stack(stored, dim=1)  # [B, T, H]
        A = torch.einsum("btk,t,btl->bkl", mem, self._decay(T, mem), mem)
        if A0 is not None:
            A = A + self.cfg.lam ** T * A0
        return A

    def state_size(self, seq_len):
        H = self.cfg.hidden
        return H + H * H
