"""The compiled kernels of the FWPs against their torch forms. The recurrent delta kernel
(impl = fused) against the step loop left to autograd (`forward_reference`) and the torch loop
(`forward_torch`): values and gradients in float64 (input, every parameter, carried-in state,
through the final state), float32 closeness, the fallback without a kernel, and the run ids of
default runs. The short convolution's kernel against `_ConvSiLU` and the autograd form."""

from __future__ import annotations

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.models import conv_fused, delta_fused
from fwbench.models import recurrent_delta_fused as fused
from fwbench.models.fwp import ShortConv, _ConvSiLU
from tests.test_fwp import D, _assert_twins_agree, _carried, _make

needs_kernel = pytest.mark.skipif(not fused.available(torch.zeros(1, dtype=torch.double)),
                                  reason="no C compiler for the kernel")

PHIS = [{}, {"heads": 2, "key_dim": 3}, {"heads": 2, "conv_size": 0},
        {"feature_map": "elu1", "qk_norm": "sum"},
        {"feature_map": "elu1", "qk_norm": "none", "conv_size": 2},
        {"feature_map": "elu1", "qk_norm": "l2", "heads": 2},
        {"feature_map": "identity", "qk_norm": "none", "heads": 4}]


@pytest.fixture(params=[True, False], ids=["blas", "loops"])
def blas(request, monkeypatch):
    """The kernel with torch's BLAS gemm, and with its own loops."""
    monkeypatch.setattr(fused.KERNEL, "blas", request.param)
    return request.param


@pytest.fixture(params=[0, 1, 4], ids=["chunk-default", "chunk-1", "chunk-4"])
def chunk(request, monkeypatch):
    """The kernel's chunks of its own length (one for these short sequences), of one step, and
    of 4 steps (sequences of 9 steps cross two chunk boundaries and end in a shorter chunk)."""
    if request.param:
        monkeypatch.setattr(fused, "chunk_len", lambda dk, dv: request.param)
    return request.param


def _model(**over):
    return _make("recurrent-delta", impl="fused", **over)


@needs_kernel
@pytest.mark.parametrize("steps", [1, 2, 9])
@pytest.mark.parametrize("over", PHIS)
def test_kernel_matches_reference_with_carried_state(over, steps, blas, chunk):
    m = _model(**over)
    with torch.no_grad():
        state = m.forward_reference(torch.randn(3, 6, D, dtype=torch.double))[1]
    state = _carried(state)
    x = torch.randn(3, steps, D, dtype=torch.double, requires_grad=True)
    assert m.choose_impl(x) == "fused"
    _assert_twins_agree(m, m, x, m.forward_reference(x, state), m(x, state), state)
    _assert_twins_agree(m, m, x, m.forward_torch(x, state), m.forward_fused(x, state), state)


@needs_kernel
@pytest.mark.parametrize("steps", [9, 40])
@pytest.mark.parametrize("over", PHIS[:2])
def test_kernel_matches_reference_from_zero_state(over, steps, blas, chunk):
    """From the zero state (never formed), with and without the final state."""
    m = _model(**over)
    x = torch.randn(3, steps, D, dtype=torch.double, requires_grad=True)
    _assert_twins_agree(m, m, x, m.forward_reference(x), m(x))
    y_ref = m.forward_reference(x)[0]
    y = m.outputs(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad((y * w).sum(), [x, *m.parameters()]),
                    torch.autograd.grad((y_ref * w).sum(), [x, *m.parameters()])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@needs_kernel
@pytest.mark.parametrize("carried", [False, True])
@pytest.mark.parametrize("steps", [9, 13])
def test_kernel_in_segments_matches_reference(steps, carried, chunk, monkeypatch):
    """A long sequence in segments of 4 steps (the last shorter), the state carried from one
    to the next: outputs, final state and gradients as the reference's, and the outputs alone
    without the final state."""
    m = _model(heads=2)
    monkeypatch.setattr(m, "segment_bytes", 4 * 3 * (m.proj.channels + 2) * 8)
    state = None
    if carried:
        with torch.no_grad():
            state = _carried(m.forward_reference(torch.randn(3, 6, D, dtype=torch.double))[1])
    x = torch.randn(3, steps, D, dtype=torch.double, requires_grad=True)
    _assert_twins_agree(m, m, x, m.forward_reference(x, state), m.forward_fused(x, state),
                        state or ())
    y, none = m.forward_fused(x, state, final_state=False)
    assert none is None
    torch.testing.assert_close(y, m.forward_reference(x, state)[0], rtol=1e-10, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize("steps", [1, 5, 9])
def test_only_the_final_state_reaches_the_loss(steps, chunk):
    """The outputs' gradient None, only the final state's given."""
    m = _model(heads=2)
    x = torch.randn(3, steps, D, dtype=torch.double, requires_grad=True)
    (_, (_, s_f, _)), (_, (_, s_r, _)) = m(x), m.forward_reference(x)
    w = torch.randn_like(s_r)
    g_f = torch.autograd.grad((s_f * w).sum(), [x, *m.parameters()], allow_unused=True)
    g_r = torch.autograd.grad((s_r * w).sum(), [x, *m.parameters()], allow_unused=True)
    for a, b in zip(g_f, g_r):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@needs_kernel
@pytest.mark.usefixtures("chunk")
def test_float32_kernel_matches_float64_reference():
    m = _model(hidden=20, heads=2)
    with torch.no_grad():
        state = m.forward_reference(torch.randn(4, 6, D, dtype=torch.double))[1]
    x = torch.randn(4, 11, D, dtype=torch.double, requires_grad=True)
    y64, (_, S64, _) = m.forward_reference(x, state)
    g64 = torch.autograd.grad(y64.sum() + S64.sum(), [x, *m.parameters()])
    m32 = m.float()
    x32 = x.detach().float().requires_grad_()
    assert m32.choose_impl(x32) == "fused"
    y32, (_, S32, _) = m32(x32, tuple(s.float() for s in state))
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(S32.double(), S64, rtol=1e-4, atol=1e-5)
    g32 = torch.autograd.grad(y32.sum() + S32.sum(), [x32, *m32.parameters()])
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@needs_kernel
def test_auto_picks_the_kernel_and_says_so():
    m = _make("recurrent-delta")
    assert m.implementation(11) == {"impl": "fused", "conv": "fused"}
    assert m.implementation(None)["impl"] == "step"  # step() stays on torch
    forced = _make("recurrent-delta", impl="torch")
    assert forced.choose_impl(torch.zeros(1, 3, D, dtype=torch.double)) == "torch"
    assert forced.implementation(11) == {"impl": "torch", "conv": "fused"}
    assert _make("recurrent-delta", conv_size=0).implementation(11) == {"impl": "fused"}


def test_dpfp_stays_on_torch_and_fused_is_refused():
    m = _make("recurrent-delta", feature_map="dpfp", qk_norm="sum")
    x = torch.randn(2, 3, D, dtype=torch.double)
    assert m.choose_impl(x) == "torch"
    assert m.implementation(3) == {"impl": "torch", "conv": "fused",
                                   "reason": "the kernel has no feature_map=dpfp"}
    forced = _make("recurrent-delta", feature_map="dpfp", qk_norm="sum", impl="fused")
    with pytest.raises(FwbenchError, match="impl=fused has no feature_map=dpfp"):
        forced(x)


def test_without_the_kernel_auto_falls_back_and_fused_is_refused(monkeypatch):
    monkeypatch.setenv("FWBENCH_NO_KERNEL", "1")
    fused.KERNEL.load.cache_clear()
    conv_fused.KERNEL.load.cache_clear()
    try:
        m = _make("recurrent-delta")
        x = torch.randn(2, 4, D, dtype=torch.double)
        assert m.choose_impl(x) == "torch"
        assert m.implementation(4) == {"impl": "torch", "reason": "FWBENCH_NO_KERNEL is set",
                                       "conv": "torch", "conv_reason": "FWBENCH_NO_KERNEL is set"}
        torch.testing.assert_close(m(x)[0], m.forward_reference(x)[0])  # runs, on torch
        forced = _make("recurrent-delta", impl="fused")
        with pytest.raises(FwbenchError, match="impl=fused needs float32/float64 CPU tensors "
                                               "and a working C compiler"):
            forced(x)
    finally:
        monkeypatch.delenv("FWBENCH_NO_KERNEL")
        fused.KERNEL.load.cache_clear()  # later tests load the real kernels again
        conv_fused.KERNEL.load.cache_clear()


def test_other_dtypes_fall_back_to_torch():
    m = _make("recurrent-delta").to(torch.bfloat16)
    assert m.choose_impl(torch.zeros(1, 2, D, dtype=torch.bfloat16)) == "torch"
    assert "is not float32/float64" in m.implementation(2)["reason"]


@needs_kernel
def test_inputs_that_do_not_fit_are_refused_before_the_kernel_runs():
    m = _model(heads=2)
    x = torch.randn(3, 4, D, dtype=torch.double)
    buf, S, y = m.initial_state(3)
    with pytest.raises(FwbenchError, match=r"y0 is torch.float64 \(3, 6\) .* expected "
                                           r"torch.float64 \(3, 8\)"):
        m.forward_fused(x, (buf, S, torch.zeros(3, 6, dtype=torch.double)))
    with pytest.raises(FwbenchError, match="S0 is torch.float32"):
        m.forward_fused(x, (buf, S.float(), y))


def test_bad_impl_is_a_clear_error():
    with pytest.raises(FwbenchError, match="impl"):
        resolve("retrieval", "recurrent-delta", {"impl": "cuda"})


# ---- the short convolution's kernel

needs_conv_kernel = pytest.mark.skipif(
    not conv_fused.available(torch.zeros(1, dtype=torch.double)), reason="no C compiler")


def _conv_grads(out, inputs, w):
    return torch.autograd.grad((out * w).sum(), inputs)


@needs_conv_kernel
@pytest.mark.parametrize("n_l2,group", [(0, 1), (4, 2), (6, 3), (6, 6)])
@pytest.mark.parametrize("size,steps", [(4, 9), (4, 1), (4, 2), (4, 3), (2, 5), (1, 3), (4, 40),
                                        (3, 16), (2, 17)])
def test_conv_kernel_matches_torch_and_autograd_forms(size, steps, n_l2, group):
    """Output and gradients of input, buffer and weight: the kernel, `_ConvSiLU` and the
    autograd form (an all-zero step's features stay zero; sequences shorter than the buffer,
    and longer than the kernel's blocks of 16 rows)."""
    torch.manual_seed(size * 10 + steps)
    conv = ShortConv(6, size).double()
    x = torch.randn(3, steps, 6, dtype=torch.double)
    x[1, 0] = 0  # SiLU(0) = 0: a group below the L2 norm's eps
    x.requires_grad_()
    buf = torch.randn(3, size - 1, 6, dtype=torch.double, requires_grad=True)
    if size > 1:
        with torch.no_grad():
            buf[1] = 0
    inputs = [x, buf, conv.weight]
    y_k = conv_fused.ConvSiLU.apply(x, buf, conv.weight, n_l2, group)
    y_t = _ConvSiLU.apply(x, buf, conv.weight, n_l2, group)
    y_r = conv.forward_reference(x, buf, n_l2, group)[0]
    assert conv(x, buf, n_l2, group)[0].grad_fn.name() == "ConvSiLUBackward"  # the kernel runs
    w = torch.randn_like(y_r)
    g_r = _conv_grads(y_r, inputs, w)
    for y, g in ((y_k, _conv_grads(y_k, inputs, w)), (y_t, _conv_grads(y_t, inputs, w))):
        torch.testing.assert_close(y, y_r, rtol=1e-12, atol=1e-14)
        for a, b in zip(g, g_r):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_conv_kernel
def test_conv_kernel_in_float32_matches_float64():
    torch.manual_seed(1)
    conv = ShortConv(40, 4).double()
    x = torch.randn(5, 11, 40, dtype=torch.double, requires_grad=True)
    buf = torch.randn(5, 3, 40, dtype=torch.double, requires_grad=True)
    y64 = conv.forward_reference(x, buf, 20, 10)[0]
    g64 = torch.autograd.grad(y64.sum(), [x, buf, conv.weight])
    conv32 = conv.float()
    x32, buf32 = (t.detach().float().requires_grad_() for t in (x, buf))
    y32 = conv32(x32, buf32, 20, 10)[0]
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-6)
    for a, b in zip(torch.autograd.grad(y32.sum(), [x32, buf32, conv32.weight]), g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


def test_conv_without_the_kernel_runs_torch_and_says_so(monkeypatch):
    monkeypatch.setenv("FWBENCH_NO_KERNEL", "1")
    conv_fused.KERNEL.load.cache_clear()
    try:
        conv = ShortConv(6, 4).double()
        x = torch.randn(2, 5, 6, dtype=torch.double, requires_grad=True)
        buf = torch.zeros(2, 3, 6, dtype=torch.double)
        y = conv(x, buf, 4, 2)[0]
        assert y.grad_fn.name() == "_ConvSiLUBackward"
        torch.testing.assert_close(y, conv.forward_reference(x, buf, 4, 2)[0])
        for name in ("linear", "delta", "gated-delta"):
            got = _make(name).implementation(5)
            assert (got["conv"], got["conv_reason"]) == ("torch", "FWBENCH_NO_KERNEL is set")
    finally:
        monkeypatch.delenv("FWBENCH_NO_KERNEL")
        conv_fused.KERNEL.load.cache_clear()


@needs_conv_kernel
def test_fwps_say_which_convolution_runs():
    for name in ("linear", "delta", "gated-delta"):
        assert _make(name).implementation(5)["conv"] == "fused"
        assert "conv" not in _make(name, conv_size=0).implementation(5)
        assert _make(name).implementation(None) == {"impl": "step"}
    assert _make("linear").implementation(5) == {"impl": "auto", "conv": "fused"}
    bf16 = _make("linear").to(torch.bfloat16)
    assert bf16.implementation(5)["conv"] == "torch"  # other dtypes: torch
    assert "is not float32/float64" in bf16.implementation(5)["conv_reason"]
    y = bf16(torch.randn(2, 3, D, dtype=torch.bfloat16))[0]
    assert y.dtype == torch.bfloat16


# ---- the delta and gated delta rules' kernel

needs_rule_kernel = pytest.mark.skipif(
    not delta_fused.available(torch.zeros(1, dtype=torch.double)), reason="no C compiler")

RULE_VARIANTS = [{}, {"heads": 2}, {"heads": 2, "key_dim": 3, "conv_size": 0},
                 {"feature_map": "dpfp", "dpfp_nu": 2, "qk_norm": "sum"},
                 {"feature_map": "elu1", "qk_norm": "none", "conv_size": 2},
                 {"feature_map": "elu1", "qk_norm": "l2", "heads": 4}]


def _rule_twins(name, **over):
    ref = _make(name, impl="reference", **over)
    fast = _make(name, impl="fused", **over)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@needs_rule_kernel
@pytest.mark.parametrize("steps", [1, 2, 9])
@pytest.mark.parametrize("over", RULE_VARIANTS)
@pytest.mark.parametrize("name", ["delta", "gated-delta"])
def test_rule_kernel_matches_reference(name, over, steps):
    """From the zero state and from a carried one: outputs, final state, gradients of input,
    parameters and carried state, and `outputs` without the final state."""
    ref, fast = _rule_twins(name, **over)
    x = torch.randn(3, steps, D, dtype=torch.double, requires_grad=True)
    assert fast.choose_impl(x) == "fused"
    _assert_twins_agree(ref, fast, x, ref(x), fast(x))
    with torch.no_grad():
        state = _carried(ref(torch.randn(3, 5, D, dtype=torch.double))[1])
    _assert_twins_agree(ref, fast, x, ref(x, state), fast(x, state), state)
    y_ref, y = ref.outputs(x), fast.outputs(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad((y * w).sum(), [x, *fast.parameters()]),
                    torch.autograd.grad((y_ref * w).sum(), [x, *ref.parameters()])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@needs_rule_kernel
@pytest.mark.parametrize("batch,heads", [(16, 1), (17, 1), (9, 2), (1, 1)])
@pytest.mark.parametrize("name", ["delta", "gated-delta"])
def test_rule_kernel_over_whole_and_padded_vector_blocks(name, batch, heads):
    """Examples x heads filling the kernel's blocks of 16 lanes exactly, and padded."""
    ref, fast = _rule_twins(name, heads=heads)
    x = torch.randn(batch, 7, D, dtype=torch.double, requires_grad=True)
    with torch.no_grad():
        state = _carried(ref(torch.randn(batch, 3, D, dtype=torch.double))[1])
    _assert_twins_agree(ref, fast, x, ref(x, state), fast(x, state), state)


@needs_rule_kernel
@pytest.mark.parametrize("name", ["delta", "gated-delta"])
def test_rule_kernel_in_float32_matches_float64(name):
    ref, fast = _rule_twins(name, hidden=20, heads=2)
    x = torch.randn(4, 11, D, dtype=torch.double, requires_grad=True)
    with torch.no_grad():
        state = ref(torch.randn(4, 5, D, dtype=torch.double))[1]
    y64, (_, S64) = ref(x, state)
    g64 = torch.autograd.grad(y64.sum() + S64.sum(), [x, *ref.parameters()])
    fast = fast.float()
    x32 = x.detach().float().requires_grad_()
    y32, (_, S32) = fast(x32, tuple(s.float() for s in state))
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(S32.double(), S64, rtol=1e-4, atol=1e-5)
    for a, b in zip(torch.autograd.grad(y32.sum() + S32.sum(), [x32, *fast.parameters()]), g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@needs_rule_kernel
def test_auto_picks_the_rule_kernel_for_small_fast_weights_and_says_so():
    for name in ("delta", "gated-delta"):
        x = torch.zeros(2, 11, D, dtype=torch.double)
        assert _make(name, hidden=20).choose_impl(x) == "fused"
        assert _make(name, hidden=20).implementation(11) == {"impl": "fused", "conv": "fused"}
        big = _make(name, hidden=50)
        assert big.choose_impl(x) == "chunked"
        assert big.implementation(11)["impl"] == "chunked"
        assert "beyond the kernel's sizes" in big.implementation(11)["reason"]
        with pytest.raises(FwbenchError, match="impl=fused cannot run: fast weights of 50 x 50"):
            _make(name, hidden=50, impl="fused")(x)
        assert _make(name, hidden=20, impl="chunked").choose_impl(x) == "chunked"
    assert _make("linear").choose_impl(x) == "chunked"
    with pytest.raises(FwbenchError, match="invalid value 'fused' for impl"):
        _make("linear", impl="fused")  # the sum rule has no kernel of its own


def test_rule_without_the_kernel_falls_back_to_chunked_and_fused_is_refused(monkeypatch):
    monkeypatch.setenv("FWBENCH_NO_KERNEL", "1")
    delta_fused.KERNEL.load.cache_clear()
    conv_fused.KERNEL.load.cache_clear()
    try:
        for name in ("delta", "gated-delta"):
            m = _make(name)
            x = torch.randn(2, 4, D, dtype=torch.double)
            assert m.choose_impl(x) == "chunked"
            assert m.implementation(4) == {"impl": "chunked", "reason": "FWBENCH_NO_KERNEL is set",
                                           "conv": "torch",
                                           "conv_reason": "FWBENCH_NO_KERNEL is set"}
            torch.testing.assert_close(m(x)[0], _make(name, impl="reference")(x)[0])
            with pytest.raises(FwbenchError, match="impl=fused cannot run: FWBENCH_NO_KERNEL"):
                _make(name, impl="fused")(x)
    finally:
        monkeypatch.delenv("FWBENCH_NO_KERNEL")
        delta_fused.KERNEL.load.cache_clear()
        conv_fused.KERNEL.load.cache_clear()


def test_delta_run_ids_are_unchanged_by_the_fused_choice():
    """`fused` is a new value of the existing `impl`: default runs keep their recorded ids."""
    assert resolve("retrieval", "delta").run_id == "retrieval-delta-h100-97865ddd80"
    assert resolve("mnist", "gated-delta").run_id == "mnist-gated-delta-h100-d43e5c158d"
    assert resolve("retrieval", "delta", {"impl": "fused"}).run_id != \
        resolve("retrieval", "delta").run_id
