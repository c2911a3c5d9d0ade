"""Timing and memory of one subject: a training step (forward, backward, Adam), inference,
one-input-at-a-time stepping, and the memory a training step keeps for its backward pass.

Clocks: `wall` is elapsed time (after torch.cuda.synchronize on CUDA); `cpu` is the CPU time
of this process, which with one thread is its compute time even when other processes share
the cores (the machine this was built on has 2 cores shared with other work).
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from fwbench.bench.subjects import Subject


def clock_fn(clock: str, device: torch.device) -> Callable[[], float]:
    """A timer reading seconds; synchronises CUDA first so queued kernels are counted."""
    read = time.process_time if clock == "cpu" else time.perf_counter
    if device.type != "cuda":
        return read

    def synced() -> float:
        torch.cuda.synchronize(device)
        return read()

    return synced


def train_step(sub: Subject, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """One parameter update on a fixed random linear loss of all outputs."""
    opt = torch.optim.Adam(sub.module.parameters(), lr=1e-4)

    def run() -> None:
        loss = (sub.outputs(x) * target).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def inference(sub: Subject, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            sub.outputs(x)

    return run


def stepping(sub: Subject, x: torch.Tensor) -> Callable[[], None]:
    """The whole sequence one input at a time through `step`, from the initial state."""
    def run() -> None:
        with torch.no_grad():
            state = sub.initial_state(x.shape[0])
            for t in range(x.shape[1]):
                _, state = sub.step(x[:, t], state)

    return run


def saved_bytes(sub: Subject, x: torch.Tensor, target: torch.Tensor) -> int:
    """Bytes of the distinct tensors (not parameters) one training forward saves for backward."""
    params = {p.untyped_storage().data_ptr() for p in sub.module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = (sub.outputs(x) * target).sum()
    loss.backward()
    return sum(seen.values())


def cuda_peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak CUDA memory allocated during `step`, above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def interleaved(runs: dict[str, Callable[[], None]], repeats: int, warmup: int,
                timer: Callable[[], float], budget: float | None) -> dict[str, list[float]]:
    """Times of each run, taken in turns (r1 of every run, then r2, ...) after warm-up, so a
    change in the machine's load affects all runs alike. `budget` caps the seconds spent per
    run (at least 3 timings each)."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    limit: dict[str, int] = {}
    for key, run in runs.items():
        for _ in range(warmup):
            run()
        t0 = timer()
        run()
        first = timer() - t0
        limit[key] = repeats if budget is None else max(3, min(repeats, int(budget / max(first, 1e-9))))
    for r in range(max(limit.values(), default=0)):
        for key, run in runs.items():
            if r < limit[key]:
                t0 = timer()
                run()
                times[key].append(timer() - t0)
    return times
