"""The learners' Adam and clipping against torch's (the slow references): same numbers, same
state format, and no torch._dynamo import on the way."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fwbench.learners.optim import Adam, clip_grad_norm


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    net.spare = torch.nn.Parameter(torch.randn(4))  # gets a gradient on odd steps only
    return net


def _loss(net: torch.nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, target = torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g)
    loss = ((net(x) - target) ** 2).mean() * 50  # large enough for clipping to act
    return loss + (net.spare.sum() ** 2 if step % 2 else 0.0)


def _train(net, opt, clip, steps: range) -> None:
    for step in steps:
        opt.zero_grad(set_to_none=True)
        _loss(net, step).backward()
        clip(list(net.parameters()), 1.0)
        opt.step()


def _torch_clip(params, max_norm):
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
def test_adam_and_clip_match_torch_bit_for_bit(lr):
    ref, fast = _net(), _net()
    _train(ref, torch.optim.Adam(ref.parameters(), lr=lr, foreach=False), _torch_clip,
           range(25))
    _train(fast, Adam(fast.parameters(), lr=lr), clip_grad_norm, range(25))
    for a, b in zip(ref.parameters(), fast.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipping and not clipping
def test_clip_grad_norm_matches_torch(max_norm):
    ref, fast = _net(), _net()
    for net in (ref, fast):
        _loss(net, 1).backward()
    total_ref = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    total = clip_grad_norm(fast.parameters(), max_norm)
    assert torch.equal(total, total_ref)
    for a, b in zip(ref.parameters(), fast.parameters()):
        assert torch.equal(a.grad, b.grad)


def test_state_dict_is_torchs_both_ways():
    """A checkpoint of either optimizer continues in the other with the very same numbers."""
    ref, fast = _net(), _net()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    fast_opt = Adam(fast.parameters(), lr=1e-2)
    _train(ref, ref_opt, _torch_clip, range(5))
    _train(fast, fast_opt, clip_grad_norm, range(5))
    ours, theirs = fast_opt.state_dict(), ref_opt.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    assert ours["state"].keys() == theirs["state"].keys()
    for i, s in theirs["state"].items():
        assert s.keys() == ours["state"][i].keys()
        assert all(torch.equal(s[k], ours["state"][i][k]) for k in s)

    swapped_ref, swapped_fast = torch.optim.Adam(fast.parameters()), Adam(ref.parameters())
    swapped_ref.load_state_dict(ours)
    swapped_fast.load_state_dict(theirs)
    _train(fast, swapped_ref, _torch_clip, range(5, 10))
    _train(ref, swapped_fast, clip_grad_norm, range(5, 10))
    for a, b in zip(ref.parameters(), fast.parameters()):
        assert torch.equal(a, b)


def test_load_state_dict_refuses_another_network():
    opt = Adam(_net().parameters())
    with pytest.raises(ValueError, match="parameters loaded into"):
        opt.load_state_dict(Adam(torch.nn.Linear(2, 2).parameters()).state_dict())


def test_a_run_does_not_import_dynamo(tmp_path):
    """torch._dynamo costs over a second of CPU per process; a run must not pull it in."""
    code = ("import sys, runpy; sys.argv = ['fwbench', 'run', '--task', 'retrieval', '--model', "
            "'fastweights', '--hidden', '8', '--set', 'max_steps=2', '--set', 'eval_every=1', "
            "'--set', 'n_train=64', '--set', 'n_valid=16', '--set', 'n_test=16', '--quiet', "
            f"'--results', {str(tmp_path)!r}]\n"
            "try:\n    runpy.run_module('fwbench', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
