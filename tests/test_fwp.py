"""Fast Weight Programmers: chunked/parallel forms against the step-by-step reference (values
and gradients, float64), the rules against their equations, feature maps, state sizes."""

from __future__ import annotations

import math

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.models import MODELS
from fwbench.models.base import RecurrentCore
from fwbench.models.delta import delta_step
from fwbench.models.fwp import (ShortConv, feature_dim, feature_map, normalise, scores,
                                scores_reference)

D, B, T = 5, 2, 9
FAST = {"linear": "chunked", "delta": "chunked", "gated-delta": "chunked",
        "attention": "parallel"}
VARIANTS = [
    {},
    {"chunk_size": 4},  # chunks that do not divide T: a shorter last chunk
    {"chunk_size": 1, "heads": 2},
    {"chunk_size": 0, "heads": 2, "key_dim": 3, "conv_size": 0},
    {"chunk_size": 3, "feature_map": "dpfp", "dpfp_nu": 2, "qk_norm": "sum"},
    {"chunk_size": 5, "feature_map": "elu1", "qk_norm": "none", "conv_size": 2},
]


def _make(name, seed=0, hidden=8, **over):
    cfg = resolve("retrieval", name, {"hidden": hidden, **over}).model_cfg
    torch.manual_seed(seed)
    return MODELS.get(name)(D, cfg).double()


def _twins(name, **over):
    """The same weights under the reference and the fast implementation."""
    ref = _make(name, impl="reference", **over)
    fast = _make(name, impl=FAST[name], **over)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _grads(m, x, y, w, state=()):
    """Gradients of a random linear loss of y: input, every parameter, carried-in state."""
    return torch.autograd.grad((y * w).sum(), [x, *m.parameters(), *state], retain_graph=True)


def _carried(state):
    """A state that gradients can reach: leaves requiring grad."""
    return tuple(s.detach().clone().requires_grad_() for s in state)


def _assert_twins_agree(ref, fast, x, out_ref, out_fast, state=()):
    """Outputs, final states and gradients (input, parameters, the carried-in `state`, and
    through the final state too) of the two forms agree (float64 tolerances)."""
    (y_ref, s_ref), (y_fast, s_fast) = out_ref, out_fast
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(s_fast, s_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y_ref)
    ws = [torch.randn_like(s) for s in s_ref]

    def loss(y, final):
        return y * w + sum((f * v).sum() for f, v in zip(final, ws) if f.requires_grad)

    for a, b in zip(_grads(fast, x, loss(y_fast, s_fast), 1, state),
                    _grads(ref, x, loss(y_ref, s_ref), 1, state)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("over", VARIANTS)
@pytest.mark.parametrize("name", ["linear", "delta", "gated-delta"])
def test_chunked_matches_reference_values_and_gradients(name, over):
    ref, fast = _twins(name, **over)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    (y_ref, s_ref), (y_fast, s_fast) = ref(x), fast(x)
    _assert_twins_agree(ref, fast, x, (y_ref, s_ref), (y_fast, s_fast))


@pytest.mark.parametrize("over", VARIANTS[:3] + VARIANTS[4:5])
@pytest.mark.parametrize("name", ["linear", "delta", "gated-delta"])
def test_chunked_matches_reference_with_carried_state(name, over):
    ref, fast = _twins(name, **over)
    with torch.no_grad():  # a state worth carrying: a reference run over another sequence
        state = ref(torch.randn(B, 6, D, dtype=torch.double))[1]
    state = _carried(state)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    _assert_twins_agree(ref, fast, x, ref(x, state), fast(x, state), state)


@pytest.mark.parametrize("over,seg", [
    ({"chunk_size": 4}, None),  # segments of one chunk, from the byte limit: 4 + 4 + 1
    ({"chunk_size": 3, "heads": 2}, 6),  # 6 + 3
    ({"chunk_size": 2, "feature_map": "dpfp", "dpfp_nu": 2, "qk_norm": "sum"}, 4),
    ({"chunk_size": 2, "feature_map": "elu1", "qk_norm": "l2"}, 2),
])
@pytest.mark.parametrize("name", ["linear", "delta", "gated-delta"])
def test_long_sequences_in_segments_match_reference(name, over, seg):
    """A sequence cut into segments (state carried between them) = the step loop: values,
    final state and gradients, from a carried state and from zero (`outputs`)."""
    ref, fast = _twins(name, **over)
    if seg is None:
        fast.segment_bytes = 1
    else:
        fast.segment_len = lambda x: seg
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    assert fast.segment_len(x) < T
    with torch.no_grad():
        state = _carried(ref(torch.randn(B, 5, D, dtype=torch.double))[1])
    _assert_twins_agree(ref, fast, x, ref(x, state), fast(x, state), state)
    y_ref, y_fast = ref.outputs(x), fast.outputs(x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y_ref)
    for a, b in zip(_grads(fast, x, y_fast, w), _grads(ref, x, y_ref, w)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_segment_length_keeps_tensors_under_the_limit():
    m = _make("delta", hidden=50, chunk_size=64)  # float64, 150 channels: 1200 B per step
    x = torch.zeros(32, 4096, D, dtype=torch.double)
    seg = m.segment_len(x)
    assert seg % 64 == 0 and 32 * seg * 150 * 8 <= m.segment_bytes < 32 * (seg + 64) * 150 * 8
    assert m.segment_len(x[:, :100]) == 100  # short enough: one segment
    assert _make("delta", hidden=50, chunk_size=0).segment_len(x) == 4096  # one chunk


@pytest.mark.parametrize("over", VARIANTS[:2] + VARIANTS[3:4])
@pytest.mark.parametrize("name", ["linear", "delta", "gated-delta", "recurrent-delta"])
def test_outputs_without_final_state_match_reference(name, over):
    """`outputs` (training: no zero or final fast weights formed) = the step loop's outputs."""
    over = over if name != "recurrent-delta" else {}
    ref = _make(name, **({"impl": "reference"} if name != "recurrent-delta" else {}), **over)
    fast = _make(name, **({"impl": FAST[name]} if name in FAST else {}), **over)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    y_ref, _ = RecurrentCore.forward(ref, x)  # the generic loop over `step`
    y_fast = fast.outputs(x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y_ref)
    for a, b in zip(_grads(fast, x, y_fast, w), _grads(ref, x, y_ref, w)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("steps", [T, 1])
@pytest.mark.parametrize("over", [{}, {"heads": 2, "key_dim": 3}, {"feature_map": "dpfp",
                                                                  "qk_norm": "sum"},
                                  {"feature_map": "elu1", "qk_norm": "none", "conv_size": 2},
                                  {"feature_map": "elu1", "qk_norm": "l2", "heads": 2},
                                  {"feature_map": "dpfp", "dpfp_nu": 2, "qk_norm": "l2"}])
def test_recurrent_delta_fast_loop_matches_reference_with_carried_state(over, steps):
    """The in-place torch loop with its backward through time against the step loop left to
    autograd (with the reference and with the fast delta step): values, final state, and
    gradients of input, parameters and carried-in state."""
    m = _make("recurrent-delta", **over)
    with torch.no_grad():
        state = m.forward_reference(torch.randn(B, 6, D, dtype=torch.double))[1]
    state = _carried(state)
    x = torch.randn(B, steps, D, dtype=torch.double, requires_grad=True)
    _assert_twins_agree(m, m, x, m.forward_reference(x, state), m.forward_torch(x, state), state)
    _assert_twins_agree(m, m, x, m.forward_reference(x, state), m.forward_stepped(x, state),
                        state)


@pytest.mark.parametrize("n_l2,group", [(0, 1), (4, 2), (6, 3)])
@pytest.mark.parametrize("size,steps", [(4, 9), (4, 1), (4, 2), (4, 3), (2, 5), (1, 3)])
def test_short_conv_matches_its_autograd_form(size, steps, n_l2, group):
    """The convolution's hand-written backward against the same operations left to autograd
    (F.normalize for the L2-normalised channels): output, new buffer, and gradients of input,
    buffer and weight (T shorter than the buffer included; an all-zero sequence's features
    stay zero)."""
    torch.manual_seed(size * 10 + steps)
    conv = ShortConv(6, size).double()
    x = torch.randn(B, steps, 6, dtype=torch.double)
    buf = torch.randn(B, size - 1, 6, dtype=torch.double)
    x[0], buf[0] = 0, 0  # y = 0: a zero norm
    x.requires_grad_(), buf.requires_grad_()
    (y, new) = conv(x, buf, n_l2, group)
    (y_ref, new_ref) = conv.forward_reference(x, buf, n_l2, group)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(new, new_ref, rtol=0, atol=0)
    w, w_buf = torch.randn_like(y), torch.randn_like(new)
    got = torch.autograd.grad((y * w).sum() + (new * w_buf).sum(), [x, buf, conv.weight])
    want = torch.autograd.grad((y_ref * w).sum() + (new_ref * w_buf).sum(),
                               [x, buf, conv.weight])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_kk", [False, True])
@pytest.mark.parametrize("shape", [(2, 1, 1, 11, 5), (2, 3, 2, 4, 7), (3, 6, 2)])
@pytest.mark.parametrize("needs", ["both", "q", "k"])
def test_scores_match_their_autograd_form(shape, with_kk, needs):
    """The chunk score products Q K^T (and K K^T) with their hand-written backward against
    the same products left to autograd: values, and gradients of whichever inputs want them
    (K K^T's gradient is symmetric in its two uses of K)."""
    torch.manual_seed(len(shape) + shape[-1])
    q = torch.randn(shape, dtype=torch.double, requires_grad=needs in ("both", "q"))
    k = torch.randn(shape, dtype=torch.double, requires_grad=needs in ("both", "k"))
    got, want = scores(q, k, with_kk), scores_reference(q, k, with_kk)
    assert (got[1] is None) == (want[1] is None) == (not with_kk)
    outs = [(a, b) for a, b in zip(got, want) if b is not None]
    for a, b in outs:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    ws = [torch.randn_like(b) for _, b in outs]
    leaves = [t for t in (q, k) if t.requires_grad]
    g_got = torch.autograd.grad(sum((a * w).sum() for (a, _), w in zip(outs, ws)), leaves)
    g_want = torch.autograd.grad(sum((b * w).sum() for (_, b), w in zip(outs, ws)), leaves)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_scores_without_gradient_need_no_graph():
    q, k = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    with torch.no_grad():
        qk, kk = scores(q.requires_grad_(), k, with_kk=True)
    assert not qk.requires_grad and not kk.requires_grad
    torch.testing.assert_close(kk, k @ k.mT)


@pytest.mark.parametrize("over", [{}, {"heads": 2, "key_dim": 3}])
def test_attention_general_path_equals_fused_causal_path(over):
    """From an empty cache the attention runs torch's fused causal kernel; `attend` (the
    path with a cache and validity flags) gives the same outputs and gradients."""
    m = _make("attention", **over)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    q, k, v, _ = m.proj(x, m.initial_state(B)[0])
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    general = m.attend(q, k, v, torch.ones(B, T, dtype=torch.double), 0)
    torch.testing.assert_close(fused, general, rtol=1e-12, atol=1e-14)
    w = torch.randn_like(fused)
    params = [x, *m.parameters()]
    for a, b in zip(torch.autograd.grad((fused * w).sum(), params, retain_graph=True,
                                        allow_unused=True),
                    torch.autograd.grad((general * w).sum(), params, allow_unused=True)):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_attention_equals_torch_causal_softmax_attention():
    m = _make("attention", heads=2)
    x = torch.randn(B, T, D, dtype=torch.double)
    q, k, v, _ = m.proj(x, m.initial_state(B)[0])
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = m(x)[0]
    torch.testing.assert_close(got, m.out(want.transpose(1, 2).reshape(B, T, 8)))


@pytest.mark.parametrize("name", ["linear", "delta", "gated-delta", "attention"])
def test_fast_form_is_causal(name):
    m = _make(name, impl=FAST[name], **({} if name == "attention" else {"chunk_size": 4}))
    x = torch.randn(B, T, D, dtype=torch.double)
    y, _ = m(x)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1:] += torch.randn_like(x2[:, t + 1:])
        torch.testing.assert_close(m(x2)[0][:, :t + 1], y[:, :t + 1], rtol=0, atol=1e-12)


def test_recurrent_delta_reads_previous_output():
    """With the recurrent weights zeroed it is exactly the delta rule, and they matter."""
    m = _make("recurrent-delta")
    d = _make("delta", impl="reference")
    d.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("rec.")})
    x = torch.randn(B, T, D, dtype=torch.double)
    assert not torch.allclose(m(x)[0], d(x)[0])
    with torch.no_grad():
        m.rec.weight.zero_()
    torch.testing.assert_close(m(x)[0], d(x)[0], rtol=1e-12, atol=1e-12)


def test_linear_equals_unnormalised_causal_attention():
    """Sum rule, unrolled: o_t = Σ_{τ≤t} (φ(q_t)·φ(k_τ)) v_τ (docs/paper.md §4.1)."""
    m = _make("linear", heads=2, feature_map="elu1", qk_norm="sum")
    x = torch.randn(B, T, D, dtype=torch.double)
    q, k, v, _, _ = m.inputs(x, m.initial_state(B)[0])
    scores = (q @ k.transpose(-1, -2)).tril()  # [B, h, T, T]
    want = m.out((scores @ v).transpose(1, 2).reshape(B, T, 8))
    torch.testing.assert_close(m(x)[0], want)


def test_delta_rule_overwrites_a_reassigned_key():
    """β = 1, unit key: writing (k, v1) then (k, v2) retrieves v2; the sum rule gives v1 + v2."""
    S = torch.zeros(1, 1, 4, 3, dtype=torch.double)
    k = torch.tensor([[[0.6, 0.8, 0.0, 0.0]]], dtype=torch.double)
    v1, v2 = torch.tensor([[[1.0, 2.0, 3.0]]]).double(), torch.tensor([[[-1.0, 0.5, 4.0]]]).double()
    one = torch.ones(1, 1, dtype=torch.double)
    _, S = delta_step(S, k, k, v1, one)
    out, S = delta_step(S, k, k, v2, one)
    torch.testing.assert_close(out, v2)
    half = 0.5 * one  # β = 1/2 moves halfway from the old value to the new one
    out, _ = delta_step(S, k, k, v1, half)
    torch.testing.assert_close(out, (v1 + v2) / 2)


def test_gated_delta_step_matches_its_equation():
    """S_t = α (I - β k k^T) S_{t-1} + β k v^T with explicit matrices."""
    m = _make("gated-delta", heads=1)
    S = torch.randn(B, 1, 8, 8, dtype=torch.double)
    q, k, v = (torch.randn(B, 1, 8, dtype=torch.double) for _ in range(3))
    beta = torch.rand(B, 1, dtype=torch.double)
    log_alpha = -torch.rand(B, 1, dtype=torch.double)
    o, S1 = m.rule_step(S, q, k, v, beta, log_alpha)
    eye = torch.eye(8, dtype=torch.double)
    a, b = log_alpha.exp()[:, 0, None, None], beta[:, 0, None, None]
    kk = k[:, 0, :, None] * k[:, 0, None, :]
    want = a * (eye - b * kk) @ S[:, 0] + b * k[:, 0, :, None] * v[:, 0, None, :]
    torch.testing.assert_close(S1[:, 0], want)
    torch.testing.assert_close(o[:, 0], (q[:, 0, :, None] * want).sum(1))


def test_gated_decay_starts_near_its_init():
    m = _make("gated-delta", heads=2, decay_init=3.0)
    with torch.no_grad():
        m.gate.weight.zero_()
    _, log_alpha = m.gates(m.gate(torch.randn(1, 1, D, dtype=torch.double)).view(1, 1, 2, 2)
                           .transpose(1, 2))
    torch.testing.assert_close(log_alpha.exp(), torch.full_like(log_alpha, 1 / (1 + math.exp(-3))))


def test_feature_maps_and_normalisations():
    x = torch.tensor([[1.0, -2.0]], dtype=torch.double)
    # DPFP ν=1: r = relu([1, -2, -1, 2]) = [1, 0, 0, 2]; r ⊙ roll(r, 1) = [1*2, 0*1, 0*0, 2*0]
    torch.testing.assert_close(feature_map(x, "dpfp", 1), torch.tensor([[2.0, 0, 0, 0]]).double())
    assert feature_map(x, "dpfp", 3).shape[-1] == feature_dim(2, "dpfp", 3) == 12
    assert (feature_map(torch.randn(50, 4), "elu1") > 0).all()
    z = feature_map(torch.randn(10, 4, dtype=torch.double), "elu1")
    torch.testing.assert_close(normalise(z, "sum").sum(-1), torch.ones(10, dtype=torch.double),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(normalise(z, "l2").norm(dim=-1), torch.ones(10).double())
    assert torch.equal(normalise(torch.zeros(1, 4), "sum"), torch.zeros(1, 4))  # no NaN


@pytest.mark.parametrize("name,over,want", [
    ("linear", {}, 8 * 8 + 3 * 24),  # S (d_phi x d_v) + conv buffer (3 steps x q, k, v)
    ("delta", {"heads": 2, "key_dim": 3}, 2 * 3 * 4 + 3 * 2 * (3 + 3 + 4)),
    ("gated-delta", {"feature_map": "dpfp", "dpfp_nu": 2, "conv_size": 0}, 32 * 8),
    ("recurrent-delta", {}, 8 * 8 + 3 * 24 + 8),  # + y_{t-1}
    ("gru", {}, 8),
])
def test_state_sizes(name, over, want):
    m = _make(name, **over)
    _, state = m(torch.randn(B, T, D, dtype=torch.double))
    leaves = state if isinstance(state, tuple) else (state,)
    assert m.state_size(T) == want == sum(s[0].numel() for s in leaves)


def test_attention_state_grows_with_length():
    m = _make("attention", heads=2, key_dim=3)
    for t in (1, 4, T):
        _, state = m(torch.randn(B, t, D, dtype=torch.double))
        assert m.state_size(t) == sum(s[0].numel() for s in state) == 3 * 20 + t * (2 * 7 + 1)


def test_gru_matches_its_equations():
    m = _make("gru")
    x = torch.randn(B, T, D, dtype=torch.double)
    g, h = m.gru, torch.zeros(B, 8, dtype=torch.double)
    for t in range(T):
        gi = x[:, t] @ g.weight_ih_l0.T + g.bias_ih_l0
        gh = h @ g.weight_hh_l0.T + g.bias_hh_l0
        r, z = torch.sigmoid(gi[:, :8] + gh[:, :8]), torch.sigmoid(gi[:, 8:16] + gh[:, 8:16])
        n = torch.tanh(gi[:, 16:] + r * gh[:, 16:])
        h = (1 - z) * n + z * h
    torch.testing.assert_close(m(x)[0][:, -1], h)


@pytest.mark.parametrize("name,over", [
    ("delta", {"hidden": 10, "heads": 3}),
    ("linear", {"feature_map": "identity", "qk_norm": "sum"}),
    ("attention", {"heads": 3}),
    ("gated-delta", {"impl": "parallel"}),
])
def test_invalid_settings(name, over):
    with pytest.raises(FwbenchError, match="expected|needs"):
        resolve("retrieval", name, over)
