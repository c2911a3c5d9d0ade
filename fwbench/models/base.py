"""The model contract: recurrent cores stepped one input at a time, and whole-image models.

A *recurrent core* maps a sequence of vectors x[B, T, D] to outputs y[B, T, output_size]. It can
run a whole sequence (`forward`, which fast implementations override) or one step at a time
with carried state (`step`, which reinforcement learning uses). State is a tensor or a tuple of
tensors, each with the batch in dimension 0, and is all zeros at the start of a sequence, so
that `mask_state` resets finished episodes.

Level marks (docs/paper.md §3.2, our convention [C]): a glimpse sequence may come with one mark
per step, `DOWN` where a finer level starts and `UP` where the coarser level resumes. Before a
`DOWN` step the model's *working* state is set aside and zeroed while its *memory* is kept;
before an `UP` step the working state set aside is restored, so what the finer level found
reaches the coarser level only through the memory (the paper's "recursion": the same slow
weights called on a finer scale, the caller's state kept aside). Each model says which leaves of
its state are memory (`RecurrentCore.memory`); `forward_levels` runs the model's own `forward`
between marks and `forward_levels_reference`, the step loop, is its reference.

An *image model* maps a whole image [B, C, H, W] to features [B, output_size].

The task decides which input a model gets (glimpse sequence or image) from `consumes`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Union

import torch
from torch import nn

from fwbench.errors import FwbenchError
from fwbench.settings import setting

State = Union[torch.Tensor, tuple]
DOWN, UP = 1, 2  # level marks: a finer level starts here / the coarser level resumes here


@dataclasses.dataclass(frozen=True)
class CoreConfig:
    """Settings every model has."""

    hidden: int = setting(100, "recurrent units R (or features, for image models)", low=1)


class Model(nn.Module):
    """Common to all models: settings class, description, parameter count."""

    Config: ClassVar[type] = CoreConfig
    summary: ClassVar[str] = ""
    consumes: ClassVar[str] = "sequence"  # or "image"

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__()
        self.input_size = input_size
        self.cfg = cfg

    @property
    def output_size(self) -> int:
        return self.cfg.hidden

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def state_size(self, seq_len: int) -> int:
        """Floats of memory carried per sequence after `seq_len` steps (0 for image models)."""
        return 0

    def implementation(self, seq_len: int | None = None) -> dict[str, str]:
        """Which implementation runs on sequences of `seq_len` (None: stepped one input at a
        time), for the run record; models with several override this to resolve `auto`."""
        if seq_len is None and isinstance(self, RecurrentCore):
            return {"impl": "step"}
        impl = getattr(self.cfg, "impl", None)
        return {} if impl is None else {"impl": impl}


class RecurrentCore(Model):
    """A recurrent model: implement `initial_state` and `step`; override `forward` to go fast."""

    # indices of the state's leaves that are memory, kept across a level change (the others are
    # working state, set aside); None: the model does not say, and refuses level marks
    memory: ClassVar[tuple[int, ...] | None] = None

    # Bytes per tensor kept along the sequence above which a compiled path runs a long sequence
    # in segments, the state carried from one to the next. glibc serves blocks above its mmap
    # threshold (at most 32 MiB) from fresh pages and unmaps them when freed, so each operation
    # on such a tensor pays page faults on all of it: at B = 32, hidden 50, T = 4096 the training
    # step was 5-6x slower than at T = 1024, not 4x.
    segment_bytes: ClassVar[int] = 16 << 20

    # Whether an A2C update (`update_path = "auto"`) recomputes a played rollout through `forward`
    # rather than keep the graph of `step`: worth a second forward where the sequence form does
    # much less work than stepping (compiled kernels, chunked forms, where `step` is the
    # reference). The classic cells step as cheaply as their sequence forms and set it False.
    replay_update: ClassVar[bool] = True

    def segments(self, x: torch.Tensor, step_bytes: int) -> tuple[torch.Tensor, ...]:
        """x[B, T, D] cut along time into runs whose kept tensors, `step_bytes` per step, stay
        under `segment_bytes` (x alone when it fits); split once, so x gets one gradient."""
        seg = max(1, self.segment_bytes // step_bytes)
        return x.split(seg, dim=1) if seg < x.shape[1] else (x,)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        raise NotImplementedError

    def zeros(self, *shape: int, device=None) -> torch.Tensor:
        """Zeros in the dtype of the parameters (for initial states)."""
        dtype = next(self.parameters()).dtype
        return torch.zeros(*shape, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x[B, D] -> (y[B, output_size], new state)."""
        raise NotImplementedError

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """x[B, T, D] -> y[B, T, output_size] from the zero state, final state not wanted."""
        return self(x)[0]  # models whose final state is costly to form override this

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x[B, T, D] -> (y[B, T, output_size], final state). Reference: a loop over `step`."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        ys = []
        # unbind once: indexing x[:, t] per step would make each step's backward fill a
        # gradient the size of all of x, O(T^2) in all
        for xt in x.unbind(1):
            y, state = self.step(xt, state)
            ys.append(y)
        return torch.stack(ys, dim=1), state

    def change_level(self, mark: int, state: State, aside: list) -> State:
        """The state before a step marked `mark` (DOWN or UP); `aside` is the stack of working
        states set aside by the DOWN marks not yet closed."""
        leaves = list(state) if isinstance(state, tuple) else [state]
        working = [i for i in range(len(leaves)) if i not in self.memory]
        if mark == DOWN:
            aside.append([leaves[i] for i in working])
            for i in working:
                leaves[i] = torch.zeros_like(leaves[i])  # the zero state a sequence starts in
        elif mark == UP:
            for i, kept in zip(working, aside.pop()):
                leaves[i] = kept
        return tuple(leaves) if isinstance(state, tuple) else leaves[0]

    def forward_levels(self, x: torch.Tensor, marks: tuple[int, ...]) -> torch.Tensor:
        """x[B, T, D] -> y[B, T, output_size] honouring level marks[T]: the model's own
        `forward` on each run of steps between marks, the state carried across."""
        check_marks(self, x, marks)
        starts = [t for t, m in enumerate(marks) if m and t] + [len(marks)]
        sizes = [b - a for a, b in zip([0] + starts, starts)]
        state, aside, ys, t = self.initial_state(x.shape[0], x.device), [], [], 0
        for part in x.split(sizes, dim=1):  # split once: per-run slicing repeats x's gradient
            state = self.change_level(marks[t], state, aside) if marks[t] else state
            y, state = self(part, state)
            ys.append(y)
            t += part.shape[1]
        return torch.cat(ys, dim=1)

    def levels_implementation(self, seq_len: int) -> str:
        """What `forward_levels` runs for `seq_len` steps (for run records)."""
        return type(self).forward_levels.__qualname__

    def forward_levels_reference(self, x: torch.Tensor, marks: tuple[int, ...]) -> torch.Tensor:
        """The step loop of `forward_levels` (its parity reference)."""
        check_marks(self, x, marks)
        state, aside, ys = self.initial_state(x.shape[0], x.device), [], []
        for xt, mark in zip(x.unbind(1), marks):
            state = self.change_level(mark, state, aside) if mark else state
            y, state = self.step(xt, state)
            ys.append(y)
        return torch.stack(ys, dim=1)

    def state_size(self, seq_len: int) -> int:
        state = self.initial_state(1, "cpu")
        leaves = state if isinstance(state, tuple) else (state,)
        return sum(t.numel() for t in leaves)


def check_marks(model: RecurrentCore, x: torch.Tensor, marks: tuple[int, ...]) -> None:
    """FwbenchError unless `model` can take level marks[T] on x[B, T, D]."""
    if model.memory is None:
        raise FwbenchError(f"model {type(model).__name__} does not say which of its state is "
                           "memory (RecurrentCore.memory), so it cannot take level marks")
    if len(marks) != x.shape[1]:
        raise FwbenchError(f"{len(marks)} level marks for a sequence of {x.shape[1]} steps")


def mask_state(state: State, keep: torch.Tensor) -> State:
    """Zero the state of the batch rows where keep[B] is False (episode or sequence boundary)."""
    if isinstance(state, tuple):
        return tuple(mask_state(s, keep) for s in state)
    shape = (-1,) + (1,) * (state.dim() - 1)
    return state * keep.to(state.dtype).view(shape)


class ImageModel(Model):
    """A model that sees the whole image at once: forward(img[B, C, H, W]) -> features[B, F]."""

    consumes: ClassVar[str] = "image"
