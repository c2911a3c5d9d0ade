"""Every implementation of the fast-weights RNN against `forward_reference`: values and
gradients in float64, over S, stop_grad, layer norms, carried-in state and chunk boundaries."""

from __future__ import annotations

import itertools

import pytest
import torch

from fwbench.errors import FwbenchError
from fwbench.models import fastweights_fused as fused
from fwbench.models import fastweights_native as native
from fwbench.models.base import DOWN, UP
from fwbench.models.fastweights import FastWeights, FastWeightsConfig

B, D, H = 3, 4, 6
KERNEL = native.load(torch.float64) is not None
PATHS = ["memory", "chunked"] + (["fused", "fused-loops"] if KERNEL else [])
CONFIGS = list(itertools.product((1, 3), (False, True), (True, False), (False, True)))


def _model(S, stop_grad, layernorm, ln_pre, seed=0):
    torch.manual_seed(seed)
    cfg = FastWeightsConfig(hidden=H, S=S, stop_grad=stop_grad, layernorm=layernorm,
                            ln_pre=ln_pre, lam=0.9, eta=0.5)
    m = FastWeights(D, cfg).double()
    with torch.no_grad():  # move away from the identity start so every term matters
        m.W.weight.add_(0.1 * torch.randn(H, H, dtype=torch.double))
        for ln in (m.ln, m.ln_pre):
            if isinstance(ln, torch.nn.LayerNorm):
                ln.weight.add_(0.2 * torch.randn(H, dtype=torch.double))
                ln.bias.add_(0.2 * torch.randn(H, dtype=torch.double))
    return m


def _inputs(T, layernorm, carried, seed=1):
    """Inputs and an optional carried-in state; smaller without layer norm, which would blow up."""
    gen = torch.Generator().manual_seed(seed)
    scale = 1.0 if layernorm else 0.1
    x = scale * torch.randn(B, T, D, generator=gen, dtype=torch.double)
    if not carried:
        return x, None
    h0 = torch.randn(B, H, generator=gen, dtype=torch.double).relu().requires_grad_()
    A0 = ((0.3 if layernorm else 0.05) * torch.randn(B, H, H, generator=gen, dtype=torch.double))
    return x, (h0, A0.requires_grad_())


def _run(m, path, x, state, monkeypatch):
    if path == "fused-loops":
        monkeypatch.setattr(fused.KERNEL, "blas", False)
        path = "fused"
    run = {"memory": m.forward_memory, "chunked": m.forward_chunked, "fused": m.forward_fused}
    return run[path](x, state)


def _loss_and_grads(out, m, state, seed=2):
    """A random linear function of the outputs and of the final state, and its gradients."""
    y, (h, A) = out
    gen = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (y, h, A))
    params = list(m.parameters()) + (list(state) if state is not None else [])
    return torch.autograd.grad(loss, params, allow_unused=True)


def _close(a, b, what):
    """Relative agreement to ~1e-9 of the largest entry (float64)."""
    assert (a is None) == (b is None), what
    if a is not None:
        err = (a - b).abs().max().item() / (a.abs().max().item() + 1e-3)
        assert err < 1e-9, f"{what}: relative error {err:.2e}"


def _check(m, path, T, layernorm, carried, monkeypatch):
    x, state = _inputs(T, layernorm, carried)
    ref = m.forward_reference(x, state)
    out = _run(m, path, x, state, monkeypatch)
    for name, a, b in (("y", ref[0], out[0]), ("h(T)", ref[1][0], out[1][0]),
                       ("A(T)", ref[1][1], out[1][1])):
        _close(a, b, f"{path} {name}")
    for i, (a, b) in enumerate(zip(_loss_and_grads(ref, m, state), _loss_and_grads(out, m, state))):
        _close(a, b, f"{path} gradient {i}")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("S,stop_grad,layernorm,ln_pre", CONFIGS)
@pytest.mark.parametrize("carried", (False, True))
def test_paths_match_reference(path, S, stop_grad, layernorm, ln_pre, carried, monkeypatch):
    """One chunk (T = 8 <= 2L): the pure memory view, and 3-step chunks crossing boundaries."""
    m = _model(S, stop_grad, layernorm, ln_pre)
    _check(m, path, 8, layernorm, carried, monkeypatch)
    monkeypatch.setattr(m, "chunk_length", lambda T: 3)
    _check(m, path, 8, layernorm, carried, monkeypatch)


@pytest.mark.parametrize("path", PATHS)
def test_long_sequence_crosses_the_default_chunks(path, monkeypatch):
    m = _model(2, False, True, False)
    T = 2 * m.chunk_length(1000) + 5  # three chunks of the default length, the last one short
    assert m.chunk_length(T) < T
    _check(m, path, T, True, True, monkeypatch)


# level marks: a quadrant's fine run, a run at the very start, and a nested run two levels down
QUADRANT = (0, DOWN, 0, 0, 0, UP)
LEVEL_MARKS = [QUADRANT * 2, (DOWN, 0, UP, 0) + QUADRANT,
               (0, DOWN, 0, DOWN, 0, 0, UP, 0, UP, 0, DOWN, UP)]


def test_level_sources_name_the_state_each_step_resumes():
    assert fused.level_sources(QUADRANT * 2).tolist() == [-1, -2, 1, 2, 3, 0, 5, -2, 7, 8, 9, 6]
    assert fused.level_sources((DOWN, 0, UP, 0)).tolist() == [-2, 0, -1, 2]
    assert fused.level_sources((0, DOWN, DOWN, 0, UP, UP)).tolist() == [-1, -2, -2, 2, 1, 0]


@pytest.mark.skipif(not KERNEL, reason="needs a C compiler")
@pytest.mark.parametrize("S,stop_grad,layernorm,ln_pre", CONFIGS)
@pytest.mark.parametrize("marks", LEVEL_MARKS)
@pytest.mark.parametrize("chunk", (None, 3))
@pytest.mark.parametrize("blas", (True, False))
def test_fused_levels_match_the_step_loop(S, stop_grad, layernorm, ln_pre, marks, chunk, blas,
                                          monkeypatch):
    """The kernel told where each step resumes against the step loop of the contract (and the
    memory view it replaces): values and gradients of inputs and parameters, one chunk and
    3-step chunks that cut through the fine runs."""
    monkeypatch.setattr(fused.KERNEL, "blas", blas)
    m = _model(S, stop_grad, layernorm, ln_pre)
    if chunk:
        monkeypatch.setattr(m, "chunk_length", lambda T: chunk)
    x, _ = _inputs(len(marks), layernorm, False)
    x.requires_grad_()
    assert m.choose_impl(x) == "fused"
    outs = {"fused": m.forward_levels(x, marks), "memory": m.forward_levels_memory(x, marks),
            "reference": m.forward_levels_reference(x, marks)}
    w = torch.randn(outs["fused"].shape, generator=torch.Generator().manual_seed(3),
                    dtype=torch.double)
    grads = {k: torch.autograd.grad((y * w).sum(), [x, *m.parameters()]) for k, y in outs.items()}
    for path in ("fused", "memory"):
        _close(outs["reference"], outs[path], f"{path} levels y")
        for i, (a, b) in enumerate(zip(grads["reference"], grads[path])):
            _close(a, b, f"{path} levels gradient {i}")


@pytest.mark.skipif(not KERNEL, reason="needs a C compiler")
def test_fused_levels_across_the_default_chunks_and_in_float32():
    m = _model(1, False, True, False)
    marks = QUADRANT * 7  # 42 steps: three chunks of the default 16
    assert m.chunk_length(len(marks)) < len(marks)
    x, _ = _inputs(len(marks), True, False)
    x.requires_grad_()
    y, y_ref = m.forward_levels(x, marks), m.forward_levels_reference(x, marks)
    _close(y_ref, y, "levels y")
    g = torch.autograd.grad(y[:, -1].sum(), [x, *m.parameters()])
    g_ref = torch.autograd.grad(y_ref[:, -1].sum(), [x, *m.parameters()])
    for i, (a, b) in enumerate(zip(g_ref, g)):
        _close(a, b, f"levels gradient {i}")
    y32 = m.float().forward_levels(x.detach().float(), marks)
    torch.testing.assert_close(y32.double(), y_ref.detach(), rtol=1e-4, atol=1e-5)


def test_levels_fall_back_to_the_memory_view_without_the_kernel(monkeypatch):
    m = _model(1, False, True, False)
    monkeypatch.setattr(fused, "available", lambda x: False)
    x, _ = _inputs(12, True, False)
    assert m.levels_implementation(12) == "FastWeights.forward_levels_memory"
    torch.testing.assert_close(m.forward_levels(x, QUADRANT * 2),
                               m.forward_levels_reference(x, QUADRANT * 2), rtol=1e-9, atol=1e-10)
    monkeypatch.undo()
    assert m.levels_implementation(12) == ("FastWeights.forward_levels" if KERNEL else
                                           "FastWeights.forward_levels_memory")


@pytest.mark.skipif(not KERNEL, reason="needs a C compiler")
def test_fused_float32_matches_float64_reference():
    m = _model(1, False, True, False)
    x, _ = _inputs(11, True, False)
    y64 = m.forward_reference(x)[0]
    y32 = m.float().forward_fused(x.float())[0]
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not KERNEL, reason="needs a C compiler")
def test_outputs_skip_the_final_state_but_agree():
    m = _model(1, False, True, False)
    x, _ = _inputs(8, True, False)
    assert m.choose_impl(x) == "fused"
    y, state = m(x, final_state=False)
    assert state is None
    torch.testing.assert_close(m.outputs(x), m.forward_reference(x)[0], rtol=1e-9, atol=1e-10)


def test_auto_falls_back_to_torch_without_the_kernel(monkeypatch):
    m = _model(1, False, True, False)
    monkeypatch.setattr(fused, "available", lambda x: False)
    short, _ = _inputs(8, True, False)
    long, _ = _inputs(2 * m.chunk_length(1000) + 1, True, False)
    assert m.choose_impl(short) == "memory"
    assert m.choose_impl(long) == "chunked"
    forced = FastWeights(D, FastWeightsConfig(hidden=H, impl="fused")).double()
    with pytest.raises(FwbenchError, match="impl=fused needs"):
        forced(short)


def test_chunk_length_rule():
    m = FastWeights(D, FastWeightsConfig(hidden=100))
    assert m.chunk_length(11) == 11 and m.chunk_length(100) == 100  # one chunk up to 2L
    assert m.chunk_length(101) == 50 and m.chunk_length(4096) == 50
    assert FastWeights(D, FastWeightsConfig(hidden=20)).chunk_length(4096) == 16


def test_compile_reports_failure_without_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "/bin/false")
    assert native._compile("double", tmp_path / "k.so") is False
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
