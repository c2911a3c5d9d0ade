"""The compiled kernel of the associative LSTM against its torch form (`forward_torch`): values
and gradients in float64 over copies, sequence lengths, carried-in state and level marks; the
fallback without the kernel; run ids untouched by the `impl` setting."""

from __future__ import annotations

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.models import alstm_fused as fused
from fwbench.models.alstm import AssociativeLSTM, ALSTMConfig
from fwbench.models.base import DOWN, UP, RecurrentCore

B, D, H = 3, 5, 8
KERNEL = fused.KERNEL.load(torch.float64) is not None
PATHS = ["fused", "fused-loops", "fused-segments"] if KERNEL else []
needs_kernel = pytest.mark.skipif(not KERNEL, reason="needs a C compiler")


def _model(copies, seed=0, **over):
    torch.manual_seed(seed)
    m = AssociativeLSTM(D, ALSTMConfig(hidden=H, copies=copies, **over)).double()
    with torch.no_grad():  # larger recurrent weights: moduli cross 1, so every bound is active
        m.h_proj.weight.mul_(4.0)
    return m


def _inputs(T, carried, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = (2.0 * torch.randn(B, T, D, generator=gen, dtype=torch.double)).requires_grad_()
    if not carried:
        return x, None
    h0 = torch.randn(B, H, generator=gen, dtype=torch.double).requires_grad_()
    c0 = torch.randn(B, carried, H, generator=gen, dtype=torch.double).requires_grad_()
    return x, (h0, c0)


def _run(m, path, x, state, monkeypatch):
    if path == "fused-loops":  # the kernel's own loops in place of torch's BLAS
        monkeypatch.setattr(fused.KERNEL, "blas", False)
        path = "fused"
    if path == "fused-segments":  # a long sequence: segments of 3 steps, (h, c) carried across
        N = m.cfg.copies
        monkeypatch.setattr(m, "segment_bytes", 3 * B * (9 * m.hc + N * H + 2 * H) * 8)
        path = "fused"
    return {"torch": m.forward_torch, "fused": m.forward_fused}[path](x, state)


def _grads(out, m, x, state, seed=2):
    """Gradients of a random linear function of the outputs and of the final state w.r.t. the
    inputs, every parameter and the carried-in state."""
    y, (h, c) = out
    gen = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (y, h, c))
    wrt = [x, *m.parameters(), *(state or ())]
    names = ["x", *(n for n, _ in m.named_parameters()), *(["h0", "c0"] if state else [])]
    return dict(zip(names, torch.autograd.grad(loss, wrt)))


def _close(a, b, what):
    """Relative agreement to 1e-10 of the largest entry (float64: rounding alone)."""
    err = (a - b).abs().max().item() / (a.abs().max().item() + 1e-3)
    assert err < 1e-10, f"{what}: relative error {err:.2e}"


def _check(m, path, T, carried, monkeypatch):
    x, state = _inputs(T, carried and m.cfg.copies)
    ref = m.forward_torch(x, state)
    out = _run(m, path, x, state, monkeypatch)
    for name, a, b in (("y", ref[0], out[0]), ("h(T)", ref[1][0], out[1][0]),
                       ("c(T)", ref[1][1], out[1][1])):
        _close(a, b, f"values {path} {name}")
    g_ref, g = _grads(ref, m, x, state), _grads(out, m, x, state)
    assert g_ref.keys() == g.keys()
    for name in g_ref:
        _close(g_ref[name], g[name], f"gradients {path} d{name}")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("copies", (1, 2, 4))
@pytest.mark.parametrize("T", (1, 2, 13))
@pytest.mark.parametrize("carried", (False, True))
def test_kernel_matches_torch(path, copies, T, carried, monkeypatch):
    _check(_model(copies), path, T, carried, monkeypatch)


def test_every_bound_is_exercised():
    """The inputs above put complex moduli on both sides of 1 (both branches of the bound)."""
    m = _model(4)
    x, _ = _inputs(13, False)
    parts = m.x_proj(x)[:, 0, 3 * (H // 2):].split(H // 2, dim=1)  # step 0 (h(0) = 0)
    mod = torch.cat([torch.sqrt(a * a + b * b) for a, b in zip(parts[0::2], parts[1::2])])
    assert (mod > 1).any() and (mod < 1).any()


@needs_kernel
def test_a_carried_state_without_gradient_and_only_c0():
    """State given as plain tensors (no gradient wanted) and h0 = zero-valued tensor."""
    m = _model(2)
    x, (h0, c0) = _inputs(5, 2)
    state = (torch.zeros_like(h0), c0.detach())
    y_ref, (_, c_ref) = m.forward_torch(x, state)
    y, (_, c) = m.forward_fused(x, state)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=1e-10, atol=1e-12)
    g_ref, = torch.autograd.grad(y_ref.sum() + c_ref.sum(), x)
    g, = torch.autograd.grad(y.sum() + c.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


MARKS = (0, DOWN, 0, 0, UP, 0, DOWN, 0, UP, 0)


@needs_kernel
@pytest.mark.parametrize("copies", (1, 4))
def test_level_marks_carry_state_through_the_kernel(copies):
    """`forward_levels` runs the kernel on each run between marks with the state carried in,
    and agrees with the step loop (torch) on values and gradients."""
    m = _model(copies)
    assert m.choose_impl(torch.zeros(1, 1, D, dtype=torch.double)) == "fused"
    x, _ = _inputs(len(MARKS), False)
    y = RecurrentCore.forward_levels(m, x, MARKS)
    y_ref = m.forward_levels_reference(x, MARKS)
    _close(y_ref, y, "values levels y")
    w = torch.randn_like(y)
    g = torch.autograd.grad((y * w).sum(), [x, *m.parameters()])
    g_ref = torch.autograd.grad((y_ref * w).sum(), [x, *m.parameters()])
    for a, b in zip(g_ref, g):
        _close(a, b, "gradients levels")


@needs_kernel
def test_float32_kernel_matches_float64_torch():
    m = _model(4)
    x, state = _inputs(11, 4)
    y64, (h64, c64) = m.forward_torch(x, state)
    g64 = torch.autograd.grad(y64.sum() + c64.sum(), [x, *m.parameters()])
    m32 = m.float()
    x32 = x.detach().float().requires_grad_()
    state32 = tuple(s.detach().float() for s in state)
    assert m32.choose_impl(x32) == "fused"
    y32, (h32, c32) = m32(x32, state32)
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c32.double(), c64, rtol=1e-4, atol=1e-5)
    g32 = torch.autograd.grad(y32.sum() + c32.sum(), [x32, *m32.parameters()])
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@needs_kernel
def test_auto_picks_the_kernel_and_says_so():
    m = _model(2)
    assert m.implementation(11) == {"impl": "fused"}
    assert m.implementation(None)["impl"] == "torch"  # step() stays on torch
    forced = _model(2, impl="torch")
    assert forced.choose_impl(torch.zeros(1, 3, D, dtype=torch.double)) == "torch"
    assert forced.implementation(11) == {"impl": "torch"}
    assert fused.describe_kernel(torch.device("cpu"))["fused"] is True  # for bench records


def test_without_the_kernel_auto_falls_back_and_fused_is_refused(monkeypatch):
    monkeypatch.setenv("FWBENCH_NO_KERNEL", "1")
    fused.KERNEL.load.cache_clear()
    try:
        m = _model(2)
        x, _ = _inputs(4, False)
        assert m.choose_impl(x) == "torch"
        assert m.implementation(4) == {"impl": "torch", "reason": "FWBENCH_NO_KERNEL is set"}
        m(x)  # runs, on torch
        forced = _model(2, impl="fused")
        with pytest.raises(FwbenchError, match="impl=fused needs float32/float64 CPU tensors "
                                               "and a working C compiler"):
            forced(x)
    finally:
        monkeypatch.delenv("FWBENCH_NO_KERNEL")
        fused.KERNEL.load.cache_clear()  # later tests load the real kernel again


@needs_kernel
def test_inputs_that_do_not_fit_are_refused_before_the_kernel_runs():
    m = _model(2)
    x, (h0, c0) = _inputs(3, 2)
    with pytest.raises(FwbenchError, match=r"c0 is torch.float64 \(3, 4, 8\) .* expected "
                                           r"torch.float64 \(3, 2, 8\)"):
        m.forward_fused(x, (h0, torch.zeros(3, 4, H, dtype=torch.double)))
    with pytest.raises(FwbenchError, match="h0 is torch.float32"):
        m.forward_fused(x, (h0.float(), c0))
    with torch.no_grad():
        m.perms[0, 0] = H  # out of range: Hc = H / 2
    with pytest.raises(FwbenchError, match=r"permutations must be int64 indices in \[0, 4\)"):
        m.forward_fused(x)


def test_other_dtypes_fall_back_to_torch():
    m = AssociativeLSTM(D, ALSTMConfig(hidden=H)).to(torch.bfloat16)
    assert m.choose_impl(torch.zeros(1, 2, D, dtype=torch.bfloat16)) == "torch"
    assert "is not float32/float64" in m.implementation(2)["reason"]


def test_bad_impl_is_a_clear_error():
    with pytest.raises(FwbenchError, match="impl"):
        resolve("retrieval", "alstm", {"impl": "cuda"})
