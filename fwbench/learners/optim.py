"""Adam, RMSProp and gradient-norm clipping with torch's arithmetic, in a few batched kernel
calls.

torch.optim.Adam on CPU updates its parameters one at a time in Python (its `foreach` path is
chosen for GPUs only), and constructing or stepping it imports torch._dynamo, over a second of
CPU per process (Optimizer.add_param_group and step are wrapped for torch.compile). `Adam`
here does the same operations in the same order through torch._foreach_* calls, so its
numbers are bit for bit those of torch.optim.Adam (tests/test_optim.py checks values and
state); its state_dict is torch.optim.Adam's, so checkpoints load into either. torch's fused
CPU kernel is faster still but rounds differently, which after a few hundred updates shows in
the metrics, so it is not used. `RMSprop` is torch.optim.RMSprop (no momentum, not
centred) in the same way.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

class _Foreach:
    """What Adam and RMSprop share: per-parameter state created on a parameter's first
    gradient (as torch does), zero_grad, and torch.optim's state_dict format. A subclass names
    its hyper-parameters (`HYPER`), its state tensors (`BUFFERS`) and the other entries of
    torch's param group (`TORCH_GROUP`), and does its arithmetic in `step`."""

    HYPER: tuple[str, ...] = ()
    BUFFERS: tuple[str, ...] = ()
    TORCH_GROUP: dict[str, Any] = {}

    def __init__(self, params: Iterable[torch.nn.Parameter], **hyper: Any):
        self.params = list(params)
        for name in self.HYPER:
            setattr(self, name, hyper[name])
        self.steps: dict[int, int] = {}  # parameter index -> its updates so far
        self.state: dict[str, dict[int, torch.Tensor]] = {b: {} for b in self.BUFFERS}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (set_to_none only: that is what the learners ask for)."""
        for p in self.params:
            p.grad = None

    def _live(self) -> list[int]:
        """The parameters with a gradient, their state created if new and their step counted."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in live:
            if i not in self.steps:  # torch creates a parameter's state on its first gradient
                self.steps[i] = 0
                for b in self.BUFFERS:
                    self.state[b][i] = torch.zeros_like(self.params[i],
                                                        memory_format=torch.preserve_format)
            self.steps[i] += 1
        return live

    def state_dict(self) -> dict[str, Any]:
        """The state in torch.optim's format."""
        state = {i: {"step": torch.tensor(float(self.steps[i])),
                     **{b: self.state[b][i] for b in self.BUFFERS}} for i in sorted(self.steps)}
        group = {**{h: getattr(self, h) for h in self.HYPER}, **self.TORCH_GROUP,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a state saved by this class or by its torch.optim twin."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state for {sum(len(g['params']) for g in groups)} "
                             f"parameters loaded into {len(self.params)}")
        for h in self.HYPER:
            value = groups[0][h]
            setattr(self, h, tuple(value) if isinstance(value, list) else value)
        self.steps, self.state = {}, {b: {} for b in self.BUFFERS}
        for i, s in state_dict["state"].items():
            p = self.params[int(i)]
            self.steps[int(i)] = int(s["step"])
            for b in self.BUFFERS:
                self.state[b][int(i)] = s[b].to(p.device, p.dtype)


class Adam(_Foreach):
    """Adam (Kingma & Ba 2015) as torch.optim.Adam(params, lr, betas, eps) computes it."""

    HYPER, BUFFERS = ("lr", "betas", "eps"), ("exp_avg", "exp_avg_sq")
    # torch.optim.Adam's param-group entries (torch 2.x), so a saved state loads into it
    TORCH_GROUP = {"weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None,
                   "capturable": False, "differentiable": False, "fused": None,
                   "decoupled_weight_decay": False}

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps)

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        live = self._live()
        if not live:
            return
        beta1, beta2 = self.betas
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        m = [self.state["exp_avg"][i] for i in live]
        v = [self.state["exp_avg_sq"][i] for i in live]
        # torch.optim.adam._single_tensor_adam, one operation at a time over all tensors
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [(1 - beta2 ** self.steps[i]) ** 0.5 for i in live])
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, m, denom,
                                [-(self.lr / (1 - beta1 ** self.steps[i])) for i in live])


class RMSprop(_Foreach):
    """RMSProp as torch.optim.RMSprop(params, lr, alpha, eps) computes it: v = αv + (1-α)g²,
    θ -= lr g / (sqrt(v) + ε). (Mnih et al. 2016 add ε inside the square root; torch's form is
    kept so the parity test can hold to the bit.)"""

    HYPER, BUFFERS = ("lr", "alpha", "eps"), ("square_avg",)
    TORCH_GROUP = {"momentum": 0, "centered": False, "weight_decay": 0, "capturable": False,
                   "foreach": None, "maximize": False, "differentiable": False}

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps)

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        live = self._live()
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        v = [self.state["square_avg"][i] for i in live]
        # torch.optim.rmsprop._single_tensor_rmsprop, one operation at a time over all tensors
        torch._foreach_mul_(v, self.alpha)
        torch._foreach_addcmul_(v, grads, grads, 1 - self.alpha)
        avg = torch._foreach_sqrt(v)
        torch._foreach_add_(avg, self.eps)
        torch._foreach_addcdiv_(params, grads, avg, -self.lr)


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_(params, max_norm) in four kernel calls; the total norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # the same norms, sum and clamped scale as torch's, without its per-device grouping
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total
