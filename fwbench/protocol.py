"""A preset's tuning protocol: what each model searches, at one budget for all, in two stages.

    [protocol]
    columns = "hidden"                 # a cell is model x this axis of the preset's [grid]
    trials = 6                         # settings tried per cell, the same for every model
    select_seeds = [100]               # stage 1: the search, chosen on validation only
    final_seeds = [0, 1, 2, 3, 4]      # stage 2: the chosen setting, fresh seeds (at least 5)
    select_budget = { max_steps = 10000 }  # stage 1's shorter budget, for every model
    final_budget = { max_steps = 30000 }   # optional: stage 2's budget (default: [settings])
    draw_seed = 0                      # seeds the draw where a model's grid exceeds `trials`
    [protocol.search.fastweights]      # one table per model of the grid; lr in each
    lr = [3e-4, 1e-3, 3e-3]
    lam = [0.9, 0.95]
    eta = [0.25, 0.5, 1.0]

A model whose search grid has exactly `trials` points tries them all; a larger grid is sampled
(`trials` distinct points, drawn with a generator seeded by `draw_seed` and the model's name,
so the draw never changes); a smaller one is an error: budgets would differ. Budget settings
(steps, batch, early stopping, seeds) are never searched, so every trial of every model gets the
same updates. Structure is checked here, without torch; whether each value is a setting of its
model and within its bounds is checked when the sweep resolves the runs (`fwbench.sweep.protocol`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import Any, Sequence

from fwbench.errors import FwbenchError
from fwbench.settings import normalise_key

MIN_FINAL_SEEDS = 5  # intervals fit for few seeds still need a few
# settings that set a run's budget or its replicate: searching them would make budgets unequal
BUDGET = ("max_steps", "env_steps", "batch_size", "n_envs", "rollout", "patience",
          "eval_every", "seed", "data_seed")
FIELDS = ("columns", "trials", "select_seeds", "final_seeds", "select_budget", "final_budget",
          "draw_seed", "search")
OPTIONAL = ("final_budget", "draw_seed")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Stage 1 (search on selection seeds at a shorter budget) and stage 2 (final seeds)."""

    columns: str
    trials: int
    select_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    select_budget: dict[str, Any]
    search: dict[str, dict[str, list]]  # model -> setting -> values
    draw_seed: int = 0
    final_budget: dict[str, Any] = dataclasses.field(default_factory=dict)

    def points(self, model: str) -> list[dict[str, Any]]:
        """The `trials` settings model `model` tries, in a fixed order."""
        space = self.search[model]
        grid = [dict(zip(space, combo)) for combo in itertools.product(*space.values())]
        if len(grid) == self.trials:
            return grid
        # string seeds hash with SHA-512: the same draw on every machine and Python version
        picked = random.Random(f"{self.draw_seed}:{model}").sample(range(len(grid)), self.trials)
        return [grid[i] for i in sorted(picked)]


def parse(table: Any, grid: dict[str, list], where: str) -> Protocol:
    """The [protocol] table of a preset whose [grid] is `grid`; FwbenchError naming the fault."""
    if not isinstance(table, dict):
        raise FwbenchError(f"{where}: [protocol] must be a table")
    unknown = sorted(set(table) - set(FIELDS))
    missing = [k for k in FIELDS if k not in table and k not in OPTIONAL]
    if unknown or missing:
        raise FwbenchError(f"{where}: [protocol] has unknown keys {unknown} or lacks {missing}; "
                           "allowed: " + ", ".join(FIELDS))
    columns = table["columns"]
    if not isinstance(columns, str) or sorted(grid) != sorted(["model", columns]):
        raise FwbenchError(f"{where}: a protocol's cells are model x columns: [grid] must have "
                           f"exactly model and {columns!r} (it has {', '.join(grid) or 'none'})")
    trials, draw_seed = table["trials"], table.get("draw_seed", 0)
    for name, value in (("trials", trials), ("draw_seed", draw_seed)):
        if not _whole(value) or value < (1 if name == "trials" else 0):
            raise FwbenchError(f"{where}: protocol {name} must be a whole number "
                               f"{'>= 1' if name == 'trials' else '>= 0'}, not {value!r}")
    select, final = (_seeds(table[k], k, where) for k in ("select_seeds", "final_seeds"))
    if len(final) < MIN_FINAL_SEEDS:
        raise FwbenchError(f"{where}: protocol final_seeds has {len(final)} seed(s); stage 2 "
                           f"needs at least {MIN_FINAL_SEEDS}")
    if set(select) & set(final):
        raise FwbenchError(f"{where}: protocol seeds {sorted(set(select) & set(final))} are in "
                           "both select_seeds and final_seeds; they must be disjoint")
    budget = _budget(table["select_budget"], "select_budget", where)
    final_budget = _budget(table.get("final_budget", {}), "final_budget", where, empty=True)
    search = _search(table["search"], grid["model"], columns, {**budget, **final_budget},
                     trials, where)
    return Protocol(columns, trials, select, final, budget, search, draw_seed, final_budget)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seeds(value: Any, name: str, where: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value or not all(_whole(s) and s >= 0 for s in value)
            or len(set(value)) < len(value)):
        raise FwbenchError(f"{where}: protocol {name} must be a list of distinct whole numbers "
                           f">= 0, e.g. [0, 1, 2, 3, 4], not {value!r}")
    return tuple(value)


def _budget(value: Any, name: str, where: str, empty: bool = False) -> dict[str, Any]:
    if (not isinstance(value, dict) or not (value or empty)
            or not set(value) <= set(BUDGET) - {"seed"}):
        raise FwbenchError(f"{where}: protocol {name} must be a table of budget settings "
                           f"({', '.join(b for b in BUDGET if b != 'seed')}), e.g. "
                           "{ max_steps = 10000 }")
    return dict(value)


def _search(value: Any, models: list, columns: str, budget: dict, trials: int,
            where: str) -> dict[str, dict[str, list]]:
    """Every model's search space, checked for equal budgets."""
    if not isinstance(value, dict) or sorted(value) != sorted(map(str, models)):
        named = sorted(value) if isinstance(value, dict) else value
        raise FwbenchError(f"{where}: protocol search must have one table per model of the "
                           f"grid ({', '.join(map(str, models))}), not {named}")
    out = {}
    for model, space in value.items():
        at = f"{where}: protocol search of {model}"
        if not isinstance(space, dict) or "lr" not in space:
            raise FwbenchError(f"{at}: a table of setting = [values] that searches lr")
        for key, values in space.items():
            if key in BUDGET or key in (columns, "model", "task") or key in budget:
                raise FwbenchError(f"{at}: {key!r} cannot be searched: it is a budget, a seed or "
                                   "a cell's axis, which every model must share")
            if (not isinstance(values, list) or not values
                    or any(isinstance(v, (dict, list)) for v in values)
                    or len({repr(v) for v in values}) < len(values)):
                raise FwbenchError(f"{at}: {key} must be a list of distinct values")
        size = math.prod(len(v) for v in space.values())
        if size < trials:
            raise FwbenchError(f"{at}: {size} setting(s) for {trials} trials: budgets would be "
                               f"unequal; give every model at least {trials}")
        out[model] = {k: list(v) for k, v in space.items()}
    return out


def choose(scores: Sequence[Sequence[float | None]], lower_better: bool) -> int:
    """Index of the best trial: fewest missing or non-finite scores (diverged, unfinished
    runs) first, then the best mean; ties go to the earlier trial."""
    def rank(i: int) -> tuple[int, float, int]:
        finite = [float(s) for s in scores[i] if s is not None and math.isfinite(float(s))]
        missing = len(scores[i]) - len(finite)
        mean = sum(finite) / len(finite) if finite else math.inf
        return missing, (mean if lower_better else -mean) if finite else math.inf, i
    if not scores:
        raise ValueError("no trials to choose from")
    return min(range(len(scores)), key=rank)


def label(point: dict[str, Any]) -> str:
    """'lr=0.001, lam=0.9': a trial's settings, in their search order."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in point.items())


def variant(preset, sweep: str | None) -> tuple[dict[str, Any], list]:
    """(the settings a named sweep changes, the models it covers) for stage 2 of the protocol
    run with them: each cell's choice of stage 1, at the final budget and seeds, with one
    convention changed (a sensitivity run). ({}, every model) for the protocol itself.
    FwbenchError where the sweep changes what the protocol owns (its column, a searched setting,
    a budget) or grids anything but models."""
    proto = preset.protocol
    if proto is None:
        raise FwbenchError(f"preset {preset.name!r} has no [protocol]")
    models = list(preset.grid["model"])
    if sweep is None:
        return {}, models
    preset.sweep(sweep)  # an unknown name: the error names the sweeps there are
    table = preset.sweeps[sweep]
    own = {normalise_key(k): v for k, v in table.get("settings", {}).items()}
    grid = {normalise_key(k): v for k, v in table.get("grid", {}).items()}
    decided = owned(proto)
    clash = [f"{k} ({decided[k]})" for k in own if k in decided]
    if clash:
        raise FwbenchError(f"preset {preset.name!r}: sweep {sweep!r} sets what the protocol "
                           f"decides: {', '.join(clash)}; a sweep run at the protocol's choice "
                           "may change other settings only")
    if set(grid) - {"model"}:
        raise FwbenchError(f"preset {preset.name!r}: sweep {sweep!r} grids "
                           f"{', '.join(sorted(set(grid) - {'model'}))}; at the protocol's "
                           "choice a sweep may list models only")
    listed = grid.get("model", models)
    unknown = [m for m in listed if m not in models]
    if unknown:
        raise FwbenchError(f"preset {preset.name!r}: sweep {sweep!r} lists models the "
                           f"protocol has no cells for: {', '.join(map(str, unknown))}")
    if not own:
        raise FwbenchError(f"preset {preset.name!r}: sweep {sweep!r} changes no setting")
    return own, [m for m in models if m in listed]


def owned(proto: Protocol) -> dict[str, str]:
    """The settings the protocol decides, each with what it is to the protocol."""
    return {proto.columns: "its column", "seed": "its seeds", "model": "its cells",
            **{k: "a budget" for k in (*BUDGET, *proto.select_budget, *proto.final_budget)},
            **{k: "a searched setting" for s in proto.search.values() for k in s}}
