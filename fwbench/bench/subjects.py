"""What `fwbench bench` measures: a recurrent core fed x[B, T, D] through its own input
weights, from any model in the registry, and torch's nn.LSTM and nn.RNN(relu) as references.

A model is named as in the registry, optionally with settings: `fastweights:impl=memory:S=3`.
Its own settings win over the grid's: `lstm:hidden=200` is an LSTM of 200 units whatever
`--hidden` says (for comparisons at matched state size), measured beside the references at the
grid's hidden size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from fwbench.bench.table import LSTM_REF, REFERENCES, RNN_REF
from fwbench.errors import FwbenchError
from fwbench.models import MODELS
from fwbench.models.base import check_marks
from fwbench.settings import build, check_known, fields_of, parse_spec


@dataclasses.dataclass
class Subject:
    """One benchmarked module with the calls the measurements make."""

    label: str
    model: str
    S: int | None
    module: nn.Module
    outputs: Callable[[torch.Tensor], torch.Tensor]  # x[B, T, D] -> y[B, T, H], training view
    step: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]  # one input at a time
    initial_state: Callable[[int], Any]
    state_floats: int  # state carried per sequence after T steps
    hidden: int  # width of the outputs
    impl: str = ""

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def parse_model(spec: str) -> tuple[str, dict[str, str]]:
    """'name:key=value:key=value' -> (name, {key: value}), the settings checked by name."""
    name, settings = parse_spec(spec, "model")
    if name not in REFERENCES:
        cls = MODELS.entry(name).load()  # FwbenchError for an unknown name
        if cls.consumes != "sequence":
            raise FwbenchError(f"model {name!r} consumes {cls.consumes} inputs; fwbench bench "
                               "measures recurrent (sequence) models")
        check_known([f.name for f in fields_of(cls.Config)], settings, f"model {name!r}")
    elif settings:
        raise FwbenchError(f"{name} takes no settings (it is torch's own module)")
    return name, settings


def has_setting(name: str, key: str) -> bool:
    if name in REFERENCES:
        return False
    return key in {f.name for f in fields_of(MODELS.get(name).Config)}


def make(spec: str, hidden: int, S: int | None, input_size: int, common: dict[str, str],
         x: torch.Tensor, marks: tuple[int, ...] | None = None) -> Subject:
    """Build the subject `spec` at this hidden size (and S) on x's device, seeded; with level
    marks the model reads x through `forward_levels` (torch's references read it flat)."""
    name, own = parse_model(spec)
    if name == LSTM_REF:
        return _reference(spec, nn.LSTM(input_size, hidden, batch_first=True), hidden, 2, x)
    if name == RNN_REF:
        return _reference(spec, nn.RNN(input_size, hidden, nonlinearity="relu",
                                       batch_first=True), hidden, 1, x)
    entry = MODELS.entry(name)
    cls = entry.load()
    fields = {f.name for f in fields_of(cls.Config)}
    overrides = {k: v for k, v in common.items() if k in fields}
    overrides.update(hidden=hidden)
    overrides.update(own)  # the model's own settings win, its hidden size included
    if S is not None and "S" in fields and "S" not in own:
        overrides["S"] = S
    cfg = build(cls.Config, overrides, entry.defaults)
    model = cls(input_size, cfg).to(device=x.device, dtype=x.dtype)
    impl = model.choose_impl(x) if hasattr(model, "choose_impl") else ""
    outputs = model.outputs
    if marks is not None:
        check_marks(model, x, marks)
        impl = (impl + " " if impl else "") + model.levels_implementation(x.shape[1])
        outputs = lambda inp: model.forward_levels(inp, marks)  # noqa: E731
    return Subject(spec, name, getattr(cfg, "S", None), model, outputs, model.step,
                   lambda B: model.initial_state(B, x.device), model.state_size(x.shape[1]),
                   cfg.hidden, impl)


def _reference(label, module, hidden, tensors_in_state, x) -> Subject:
    """torch's nn.LSTM / nn.RNN: outputs; one step = a length-1 sequence with carried state."""
    module = module.to(device=x.device, dtype=x.dtype)
    lstm = isinstance(module, nn.LSTM)

    def zeros(B):
        z = x.new_zeros(1, B, hidden)  # torch wants [layers, B, H]
        return (z, z.clone()) if lstm else z

    def step(xt, state):
        y, state = module(xt[:, None], state)
        return y[:, 0], state

    return Subject(label, label, None, module, lambda inp: module(inp)[0], step, zeros,
                   tensors_in_state * hidden, hidden)
