"""Registry-driven checks that every model honours the model contract."""

from __future__ import annotations

import pytest
import torch

from fwbench.config import resolve
from fwbench.models import MODELS
from fwbench.models.base import RecurrentCore, mask_state

HIDDEN, D, B, T = 8, 5, 3, 7


def _make(name: str, seed: int = 0, **over):
    cls = MODELS.get(name)
    cfg = resolve("retrieval", name, {"hidden": HIDDEN, **over}).model_cfg \
        if cls.consumes == "sequence" else None
    torch.manual_seed(seed)
    return cls(D, cfg).double()


SEQUENCE = [e.name for e in MODELS if e.load().consumes == "sequence"]


def _leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


def _flat(state):
    out = []
    for s in _leaves(state):
        out.extend(_flat(s) if isinstance(s, tuple) else [s])
    return out


@pytest.mark.parametrize("name", SEQUENCE)
def test_shapes_and_state_size(name):
    m = _make(name)
    assert isinstance(m, RecurrentCore)
    y, state = m(torch.randn(B, T, D, dtype=torch.double))
    assert y.shape == (B, T, m.output_size)
    assert all(s.shape[0] == B for s in _flat(state))
    per_seq = sum(s[0].numel() for s in _flat(state))
    assert m.state_size(T) == per_seq > 0
    assert m.num_parameters() == sum(p.numel() for p in m.parameters()) > 0


@pytest.mark.parametrize("name", SEQUENCE)
def test_causal(name):
    """Changing inputs after step t never changes outputs up to t."""
    m = _make(name)
    x = torch.randn(B, T, D, dtype=torch.double)
    y, _ = m(x)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 3
        y2, _ = m(x2)
        torch.testing.assert_close(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:])


@pytest.mark.parametrize("name", SEQUENCE)
def test_deterministic_under_seed(name):
    x = torch.randn(B, T, D, dtype=torch.double)
    a, b = _make(name, seed=3), _make(name, seed=3)
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)
    c = _make(name, seed=4)
    assert not torch.allclose(a(x)[0], c(x)[0])


@pytest.mark.parametrize("name", SEQUENCE)
def test_forward_matches_step_loop_values_and_gradients(name):
    """The sequence forward (the fast path) equals stepping one input at a time."""
    m = _make(name)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    y_fast, s_fast = m(x)
    state, ys = m.initial_state(B), []
    for t in range(T):
        y, state = m.step(x[:, t], state)
        ys.append(y)
    y_slow = torch.stack(ys, dim=1)
    torch.testing.assert_close(y_fast, y_slow, rtol=1e-9, atol=1e-10)
    for a, b in zip(_flat(s_fast), _flat(state)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    params = [x] + [p for p in m.parameters()]
    weights = torch.randn_like(y_fast)
    g_fast = torch.autograd.grad((y_fast * weights).sum(), params, allow_unused=True)
    g_slow = torch.autograd.grad((y_slow * weights).sum(), params, allow_unused=True)
    for a, b in zip(g_fast, g_slow):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", SEQUENCE)
def test_carried_state_continues_the_sequence(name):
    """Running [0, t) then [t, T) from the carried state equals running [0, T) at once."""
    m = _make(name)
    x = torch.randn(B, T, D, dtype=torch.double)
    y, _ = m(x)
    y1, s1 = m(x[:, :3])
    y2, _ = m(x[:, 3:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", SEQUENCE)
def test_mask_state_resets_rows(name):
    m = _make(name)
    x = torch.randn(B, T, D, dtype=torch.double)
    _, state = m(x)
    keep = torch.tensor([True, False, True])
    masked = mask_state(state, keep)
    y_masked, _ = m.step(x[:, 0], masked)
    y_fresh, _ = m.step(x[:, 0], m.initial_state(B))
    torch.testing.assert_close(y_masked[1], y_fresh[1], rtol=0, atol=0)
    y_kept, _ = m.step(x[:, 0], state)
    torch.testing.assert_close(y_masked[0], y_kept[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", SEQUENCE)
def test_examples_in_a_batch_are_independent(name):
    """No statistic is shared across the batch (layer norm is per example, never per batch)."""
    m = _make(name)
    x = torch.randn(B, T, D, dtype=torch.double)
    y, _ = m(x)
    x2 = x.clone()
    x2[1:] = torch.randn_like(x2[1:])
    y2, _ = m(x2)
    torch.testing.assert_close(y2[0], y[0], rtol=0, atol=1e-12)
