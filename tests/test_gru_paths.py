"""The GRU's compiled kernel against torch's nn.GRU (`forward_torch`): values and gradients in
float64 over sequence lengths, carried-in state and segments (level marks: tests/test_multilevel.py, run
ids: tests/test_config.py); the fallback without the kernel."""

from __future__ import annotations

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.models import gru_fused as fused
from fwbench.models.gru import GRU, GRUConfig

B, D, H = 3, 5, 8
KERNEL = fused.KERNEL.load(torch.float64) is not None
PATHS = ["fused", "fused-loops", "fused-segments"] if KERNEL else []
needs_kernel = pytest.mark.skipif(not KERNEL, reason="needs a C compiler")


def _model(seed=0, **over):
    torch.manual_seed(seed)
    m = GRU(D, GRUConfig(hidden=H, **over)).double()
    with torch.no_grad():  # larger weights: gates and tanh away from their linear middle
        for p in m.parameters():
            p.mul_(3.0)
    return m


def _inputs(T, carried, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.double).requires_grad_()
    h0 = torch.randn(B, H, generator=gen, dtype=torch.double).requires_grad_() if carried \
        else None
    return x, h0


def _run(m, path, x, h0, monkeypatch):
    if path == "fused-loops":  # the kernel's own loops in place of torch's BLAS
        monkeypatch.setattr(fused.KERNEL, "blas", False)
    if path == "fused-segments":  # a long sequence: segments of 3 steps, h carried across
        monkeypatch.setattr(m, "segment_bytes", 3 * B * 4 * H * x.element_size())
    return m.forward_fused(x, h0)


def _grads(out, m, x, h0, seed=2):
    """Gradients of a random linear function of the outputs and of the final state w.r.t. the
    input, every parameter and the carried-in state."""
    y, h = out
    gen = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (y, h))
    wrt = [x, *m.parameters(), *([h0] if h0 is not None else [])]
    names = ["x", *(n for n, _ in m.named_parameters()), *(["h0"] if h0 is not None else [])]
    return dict(zip(names, torch.autograd.grad(loss, wrt)))


def _close(a, b, what):
    """Relative agreement to 1e-10 of the largest entry (float64: rounding alone)."""
    err = (a - b).abs().max().item() / (a.abs().max().item() + 1e-3)
    assert err < 1e-10, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T", (1, 2, 13))
@pytest.mark.parametrize("carried", (False, True))
def test_kernel_matches_torch(path, T, carried, monkeypatch):
    m = _model()
    x, h0 = _inputs(T, carried)
    ref = m.forward_torch(x, h0)
    out = _run(m, path, x, h0, monkeypatch)
    _close(ref[0], out[0], f"values {path} y")
    _close(ref[1], out[1], f"values {path} h(T)")
    g_ref, g = _grads(ref, m, x, h0), _grads(out, m, x, h0)
    assert g_ref.keys() == g.keys()
    for name in g_ref:
        _close(g_ref[name], g[name], f"gradients {path} d{name}")


def test_the_gates_leave_their_linear_range():
    """The inputs above drive r, z towards 0 and 1 and n towards +-1 on some units."""
    g = _model().gru
    x, _ = _inputs(13, False)
    with torch.no_grad():
        y = g(x)[0]
        prev = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)  # h(t - 1)
        xi = x @ g.weight_ih_l0.T + g.bias_ih_l0
        hh = prev @ g.weight_hh_l0.T + g.bias_hh_l0
    r, z = torch.sigmoid(xi[..., :2 * H] + hh[..., :2 * H]).split(H, dim=-1)
    n = torch.tanh(xi[..., 2 * H:] + r * hh[..., 2 * H:])
    for gate in (r, z):
        assert (gate < 0.1).any() and (gate > 0.9).any()
    assert (n.abs() > 0.9).any() and (n.abs() < 0.5).any()


@needs_kernel
def test_only_some_gradients_wanted():
    """A carried state without gradient, frozen recurrent weights: the rest still agree."""
    m = _model()
    x, h0 = _inputs(6, True)
    h0 = h0.detach()
    m.gru.weight_hh_l0.requires_grad_(False)
    wrt = [x, m.gru.weight_ih_l0, m.gru.bias_hh_l0]
    y_ref, _ = m.forward_torch(x, h0)
    y, _ = m.forward_fused(x, h0)
    _close(y_ref, y, "values")
    w = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad((y_ref * w).sum(), wrt),
                    torch.autograd.grad((y * w).sum(), wrt)):
        _close(a, b, "gradients")


@needs_kernel
def test_float32_kernel_matches_float64_torch():
    m = _model()
    x, h0 = _inputs(11, True)
    y64, h64 = m.forward_torch(x, h0)
    g64 = torch.autograd.grad(y64.sum(), [x, *m.parameters()])
    m32 = m.float()
    x32 = x.detach().float().requires_grad_()
    assert m32.choose_impl(x32) == "fused"
    y32, h32 = m32(x32, h0.detach().float())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    g32 = torch.autograd.grad(y32.sum(), [x32, *m32.parameters()])
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@needs_kernel
def test_auto_picks_the_kernel_and_says_so():
    m = _model()
    assert m.implementation(11) == {"impl": "fused"}
    assert m.implementation(None)["impl"] == "torch"  # step() stays on torch
    forced = _model(impl="torch")
    assert forced.choose_impl(torch.zeros(1, 3, D, dtype=torch.double)) == "torch"
    assert fused.KERNEL.describe(torch.device("cpu"))["fused"] is True


def test_without_the_kernel_auto_falls_back_and_fused_is_refused(monkeypatch):
    monkeypatch.setenv("FWBENCH_NO_KERNEL", "1")
    fused.KERNEL.load.cache_clear()
    try:
        m = _model()
        x, _ = _inputs(4, False)
        assert m.choose_impl(x) == "torch"
        assert m.implementation(4) == {"impl": "torch", "reason": "FWBENCH_NO_KERNEL is set"}
        m(x)  # runs, on torch
        with pytest.raises(FwbenchError, match="impl=fused needs float32/float64 CPU tensors"):
            _model(impl="fused")(x)
    finally:
        monkeypatch.delenv("FWBENCH_NO_KERNEL")
        fused.KERNEL.load.cache_clear()  # later tests load the real kernel again


@needs_kernel
def test_inputs_that_do_not_fit_are_refused_before_the_kernel_runs():
    m = _model()
    x, h0 = _inputs(3, True)
    with pytest.raises(FwbenchError, match=r"h0 is torch.float64 \(3, 4\) .* expected "
                                           r"torch.float64 \(3, 8\)"):
        m.forward_fused(x, h0[:, :4])
    with pytest.raises(FwbenchError, match="h0 is torch.float32"):
        m.forward_fused(x, h0.float())


def test_bad_impl_is_a_clear_error():
    with pytest.raises(FwbenchError, match="impl"):
        resolve("retrieval", "gru", {"impl": "cuda"})
