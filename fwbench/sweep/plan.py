"""Combining a preset and command-line options into one sweep.

Layers, later wins: the preset's shared settings and grid (or one of its named sweeps), then
`--task`/`--model`/`--set` (fix a setting: it leaves the grid), then `--grid` (sweep a
setting: it leaves the shared settings). Seeds: `--seeds`, else the named sweep's, else the
preset's, else 1.
"""

from __future__ import annotations

from typing import Any

from fwbench.errors import FwbenchError
from fwbench.settings import normalise_key
from fwbench.sweep.grid import SweepSpec, make_spec


def plan(*, task: str | None = None, model: str | None = None,
         sets: dict[str, Any] | None = None, grid: dict[str, list] | None = None,
         seeds: int | None = None, preset: str | None = None,
         sweep: str | None = None) -> SweepSpec:
    """The SweepSpec these options describe; FwbenchError on conflicting options."""
    settings: dict[str, Any] = {}
    axes: dict[str, list] = {}
    default_seeds = 1
    if sweep is not None and preset is None:
        raise FwbenchError("--sweep names a sweep of a preset: give --preset too")
    if preset is not None:
        from fwbench.presets import load

        p = load(preset)
        if task is not None and task != p.task:
            raise FwbenchError(f"--task {task} conflicts with preset {p.name!r}, which is for "
                               f"task {p.task!r}; drop --task or choose another preset")
        base, base_grid = p.sweep(sweep)
        settings = {"task": p.task, **{normalise_key(k): v for k, v in base.items()}}
        axes = {normalise_key(k): list(v) for k, v in base_grid.items()}
        default_seeds = p.seeds_of(sweep)
    fixed = {normalise_key(k): v for k, v in (sets or {}).items()}
    for name, value in (("task", task), ("model", model)):
        if value is not None:
            if name in fixed and fixed[name] != value:
                raise FwbenchError(f"--{name} {value} conflicts with --set {name}={fixed[name]}")
            fixed[name] = value
    swept = {normalise_key(k): list(v) for k, v in (grid or {}).items()}
    both = sorted(set(fixed) & set(swept))
    if both:
        raise FwbenchError(f"{both[0]!r} is both fixed (--set/--{both[0]}) and swept (--grid); "
                           "choose one")
    for name, value in fixed.items():
        axes.pop(name, None)
        settings[name] = value
    for name, values in swept.items():
        settings.pop(name, None)
        axes[name] = values
    return make_spec(settings, axes, seeds, default_seeds)
