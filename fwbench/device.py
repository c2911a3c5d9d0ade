"""Choosing the compute device and thread count."""

from __future__ import annotations

import torch

from fwbench.errors import FwbenchError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; anything else must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FwbenchError(f"invalid device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FwbenchError(f"device {name!r} requested but CUDA is not available here; "
                               "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FwbenchError(f"device {name!r} does not exist: "
                               f"{torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type != "cpu":
        raise FwbenchError(f"invalid device {name!r}: expected auto, cpu, cuda or cuda:N")
    return dev


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0 keeps torch's default); return the number in use."""
    if threads < 0:
        raise FwbenchError(f"invalid value {threads} for threads: expected an integer >= 0")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
