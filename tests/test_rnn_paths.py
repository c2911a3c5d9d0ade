"""The IRNN on torch's ReLU RNN loop and the LSTM's one-step cell against their references
(values and gradients, float64, with carried state)."""

from __future__ import annotations

import pytest
import torch

from fwbench.models.irnn import IRNN, IRNNConfig
from fwbench.models.lstm import LSTM, LSTMConfig

D, B, T = 5, 3, 13


def _grads(y, inputs):
    w = torch.randn(y.shape, dtype=y.dtype)  # not randn_like: torch's RNN outputs are views
    return torch.autograd.grad((y * w).sum(), inputs, retain_graph=True)


def _assert_close_all(a, b):
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("carried", [False, True])
def test_irnn_fused_loop_matches_step_loop(carried):
    torch.manual_seed(0)
    m = IRNN(D, IRNNConfig(hidden=6, w_scale=0.9)).double()
    with torch.no_grad():  # a nonzero bias and off-identity weights, so both terms matter
        m.C.bias.normal_()
        m.W.weight.add_(0.1 * torch.randn_like(m.W.weight))
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    h0 = torch.rand(B, 6, dtype=torch.double, requires_grad=True) if carried else None
    (y, h), (y_ref, h_ref) = m(x, h0), m.forward_reference(x, h0)
    assert y.min() == 0 < y.max()  # the ReLU is active and cut somewhere
    _assert_close_all((y, h), (y_ref, h_ref))
    inputs = [x, *m.parameters()] + ([h0] if carried else [])
    torch.manual_seed(1)
    g = _grads(y, inputs)
    torch.manual_seed(1)
    _assert_close_all(g, _grads(y_ref, inputs))


def test_irnn_layernorm_uses_the_step_loop():
    torch.manual_seed(0)
    m = IRNN(D, IRNNConfig(hidden=6, layernorm=True)).double()
    x = torch.randn(B, T, D, dtype=torch.double)
    y, h = m(x)
    hs = m.initial_state(B)
    for t in range(T):
        out, hs = m.step(x[:, t], hs)
        torch.testing.assert_close(y[:, t], out)


def test_lstm_cell_step_matches_nn_lstm_sequence():
    torch.manual_seed(0)
    m = LSTM(D, LSTMConfig(hidden=6)).double()
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    state0 = tuple(torch.randn(B, 6, dtype=torch.double, requires_grad=True) for _ in range(2))
    y_ref, (h_ref, c_ref) = m(x, state0)  # nn.LSTM over the whole sequence
    state, ys = state0, []
    for xt in x.unbind(1):
        y, state = m.step(xt, state)
        ys.append(y)
    y = torch.stack(ys, dim=1)
    _assert_close_all((y, *state), (y_ref, h_ref, c_ref))
    inputs = [x, *m.parameters(), *state0]
    torch.manual_seed(1)
    g = _grads(y + state[1][:, None], inputs)
    torch.manual_seed(1)
    _assert_close_all(g, _grads(y_ref + c_ref[:, None], inputs))
