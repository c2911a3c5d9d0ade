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

# torch.optim.Adam's param-group entries (torch 2.x), so a saved state loads into it unchanged
_TORCH_GROUP = {"weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None,
                "capturable": False, "differentiable": False, "fused": None,
                "decoupled_weight_decay": False}


class Adam:
    """Adam (Kingma & Ba 2015) as torch.optim.Adam(params, lr, betas, eps) computes it."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps: dict[int, int] = {}  # parameter index -> its updates so far
        self.exp_avg: dict[int, torch.Tensor] = {}
        self.exp_avg_sq: dict[int, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (set_to_none only: that is what the learners ask for)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            if i not in self.steps:  # torch creates a parameter's state on its first gradient
                p = self.params[i]
                self.steps[i] = 0
                self.exp_avg[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.exp_avg_sq[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.steps[i] += 1
        beta1, beta2 = self.betas
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        m = [self.exp_avg[i] for i in live]
        v = [self.exp_avg_sq[i] for i in live]
        # torch.optim.adam._single_tensor_adam, one operation at a time over all tensors
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [(1 - beta2 ** self.steps[i]) ** 0.5 for i in live])
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, m, denom,
                                [-(self.lr / (1 - beta1 ** self.steps[i])) for i in live])

    def state_dict(self) -> dict[str, Any]:
        """The state in torch.optim.Adam's format."""
        state = {i: {"step": torch.tensor(float(self.steps[i])), "exp_avg": self.exp_avg[i],
                     "exp_avg_sq": self.exp_avg_sq[i]} for i in sorted(self.steps)}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, **_TORCH_GROUP,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a state saved by this class or by torch.optim.Adam."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state for {sum(len(g['params']) for g in groups)} "
                             f"parameters loaded into {len(self.params)}")
        group = groups[0]
        self.lr, self.betas, self.eps = group["lr"], tuple(group["betas"]), group["eps"]
        self.steps, self.exp_avg, self.exp_avg_sq = {}, {}, {}
        for i, s in state_dict["state"].items():
            p = self.params[int(i)]
            self.steps[int(i)] = int(s["step"])
            self.exp_avg[int(i)] = s["exp_avg"].to(p.device, p.dtype)
            self.exp_avg_sq[int(i)] = s["exp_avg_sq"].to(p.device, p.dtype)


_TORCH_RMS_GROUP = {"momentum": 0, "centered": False, "weight_decay": 0, "capturable": False,
                    "foreach": None, "maximize": False, "differentiable": False}


class RMSprop:
    """RMSProp as torch.optim.RMSprop(params, lr, alpha, eps) computes it: v = αv + (1-α)g²,
    θ -= lr g / (sqrt(v) + ε). (Mnih et al. 2016 add ε inside the square root; torch's form is
    kept so the parity test can hold to the bit.)"""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.steps: dict[int, int] = {}  # parameter index -> its updates so far
        self.square_avg: dict[int, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (set_to_none only: that is what the learners ask for)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            if i not in self.steps:  # torch creates a parameter's state on its first gradient
                self.steps[i] = 0
                self.square_avg[i] = torch.zeros_like(self.params[i],
                                                      memory_format=torch.preserve_format)
            self.steps[i] += 1
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        v = [self.square_avg[i] for i in live]
        # torch.optim.rmsprop._single_tensor_rmsprop, one operation at a time over all tensors
        torch._foreach_mul_(v, self.alpha)
        torch._foreach_addcmul_(v, grads, grads, 1 - self.alpha)
        avg = torch._foreach_sqrt(v)
        torch._foreach_add_(avg, self.eps)
        torch._foreach_addcdiv_(params, grads, avg, -self.lr)

    def state_dict(self) -> dict[str, Any]:
        """The state in torch.optim.RMSprop's format."""
        state = {i: {"step": torch.tensor(float(self.steps[i])),
                     "square_avg": self.square_avg[i]} for i in sorted(self.steps)}
        group = {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, **_TORCH_RMS_GROUP,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a state saved by this class or by torch.optim.RMSprop."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state for {sum(len(g['params']) for g in groups)} "
                             f"parameters loaded into {len(self.params)}")
        group = groups[0]
        self.lr, self.alpha, self.eps = group["lr"], group["alpha"], group["eps"]
        self.steps, self.square_avg = {}, {}
        for i, s in state_dict["state"].items():
            p = self.params[int(i)]
            self.steps[int(i)] = int(s["step"])
            self.square_avg[int(i)] = s["square_avg"].to(p.device, p.dtype)


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
