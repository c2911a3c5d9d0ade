"""The models compute the paper's equations (docs/paper.md §1 and §2), checked by hand."""

from __future__ import annotations

import torch

from fwbench.config import resolve
from fwbench.models import MODELS


def _fw(**over):
    cfg = resolve("retrieval", "fastweights", {"hidden": 6, **over}).model_cfg
    torch.manual_seed(0)
    return MODELS.get("fastweights")(4, cfg).double()


def test_fast_weights_are_the_decayed_sum_of_outer_products():
    """A(T) = η Σ_τ λ^(T-τ) h(τ) h(τ)^T, with A(0) = 0."""
    m = _fw(lam=0.8, eta=0.3)
    x = torch.randn(2, 5, 4, dtype=torch.double)
    for run in (m.forward_reference, m.forward_memory):
        h, (_, A) = run(x)
        expected = sum(0.3 * 0.8 ** (4 - t) * h[:, t, :, None] * h[:, t, None, :]
                       for t in range(5))
        torch.testing.assert_close(A, expected)


def test_inner_loop_by_hand():
    """h_s+1 = ReLU(LN[W h + C x + b + A h_s]) with A(t) from earlier states only."""
    m = _fw(lam=0.9, eta=0.5, S=2)
    x = torch.randn(2, 3, 4, dtype=torch.double)
    y, _ = m.forward_reference(x)
    h = torch.zeros(2, 6, dtype=torch.double)
    A = torch.zeros(2, 6, 6, dtype=torch.double)
    ln = torch.nn.functional.layer_norm
    for t in range(3):
        slow = h @ m.W.weight.T + x[:, t] @ m.C.weight.T + m.C.bias
        hs = torch.relu(slow)
        for _ in range(2):
            pre = slow + torch.einsum("bij,bj->bi", A, hs)
            hs = torch.relu(ln(pre, (6,), m.ln.weight, m.ln.bias, 1e-5))
        h = hs
        torch.testing.assert_close(y[:, t], h)
        A = 0.9 * A + 0.5 * h[:, :, None] * h[:, None, :]


def test_eta_zero_is_depth_without_memory():
    """With η = 0 the outputs do not depend on the fast weights' decay λ."""
    x = torch.randn(2, 5, 4, dtype=torch.double)
    a, b = _fw(eta=0.0, lam=0.5, S=2), _fw(eta=0.0, lam=0.99, S=2)
    torch.testing.assert_close(a(x)[0], b(x)[0])
    c = _fw(eta=0.5, lam=0.5, S=2)
    assert not torch.allclose(a(x)[0], c(x)[0])


def test_stop_grad_blocks_gradients_through_A_only():
    x = torch.randn(2, 5, 4, dtype=torch.double)
    for impl in ("reference", "memory"):
        m = _fw(impl=impl, stop_grad=True)
        y, _ = m(x)
        g = torch.autograd.grad(y[:, -1].sum(), m.C.weight)[0]
        m2 = _fw(impl=impl, stop_grad=False)
        g2 = torch.autograd.grad(m2(x)[0][:, -1].sum(), m2.C.weight)[0]
        torch.testing.assert_close(m(x)[0], m2(x)[0])  # same values
        assert g.abs().sum() > 0 and not torch.allclose(g, g2)  # different gradients


def test_slow_weight_initialisations():
    fw = _fw(w_scale=0.05)
    torch.testing.assert_close(fw.W.weight, 0.05 * torch.eye(6, dtype=torch.double))
    cfg = resolve("retrieval", "irnn", {"hidden": 6}).model_cfg
    irnn = MODELS.get("irnn")(4, cfg)
    torch.testing.assert_close(irnn.W.weight, torch.eye(6))


def test_irnn_ln_registered_variant_has_layernorm():
    assert resolve("retrieval", "irnn-ln", {}).model_cfg.layernorm is True
    assert resolve("retrieval", "irnn", {}).model_cfg.layernorm is False


def test_associative_lstm_bound_and_copies():
    from fwbench.models.alstm import _bound

    re, im = torch.tensor([3.0, 0.3]), torch.tensor([4.0, 0.4])
    bre, bim = _bound(re, im)
    torch.testing.assert_close(bre, torch.tensor([0.6, 0.3]))  # |3+4i| = 5 -> unit modulus
    torch.testing.assert_close(bim, torch.tensor([0.8, 0.4]))  # modulus < 1: unchanged
    cfg = resolve("retrieval", "alstm", {"hidden": 8, "copies": 3}).model_cfg
    m = MODELS.get("alstm")(4, cfg)
    assert m.perms.shape == (3, 4)
    assert all(sorted(p.tolist()) == list(range(4)) for p in m.perms)
    h, (_, c) = m(torch.randn(2, 5, 4))
    modulus = torch.sqrt(h[:, :, :4] ** 2 + h[:, :, 4:] ** 2)
    assert modulus.max() <= 1.0 + 1e-6  # output = sigmoid gate * bounded complex
    assert c.shape == (2, 3, 8)
