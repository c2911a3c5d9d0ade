"""From a sweep description (shared settings, grid, seeds) to validated runs.

A sweep is the cartesian product of its grid's values, repeated over seeds, each point laid
over the shared settings. Every point is resolved (validated) before anything runs, so a typo
in the last grid value fails the sweep at once instead of hours later. Seeds are the outermost
loop [C]: a sweep cut short still has complete tables for its first seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path
from typing import Any

from fwbench.errors import FwbenchError
from fwbench.records import RunRecord, RunState
from fwbench.settings import parse_pair

DEFAULT_TASK = "retrieval"
DEFAULT_MODEL = "fastweights"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """Shared settings, grid axes (name -> values) and seeds of one sweep."""

    settings: dict[str, Any]
    grid: dict[str, list]
    seeds: tuple[int, ...] = (0,)

    def points(self) -> list[dict[str, Any]]:
        """Every run's settings: seeds outermost, then the grid axes in their given order."""
        axes = list(self.grid.items())
        if "seed" not in self.grid and "seed" not in self.settings:
            axes.insert(0, ("seed", list(self.seeds)))
        names = [name for name, _ in axes]
        return [{**self.settings, **dict(zip(names, combo))}
                for combo in itertools.product(*(values for _, values in axes))]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One validated run of a sweep and the grid point it came from."""

    cfg: Any  # fwbench.config.RunConfig
    point: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    def label(self, keys: list[str]) -> str:
        """The point's values for `keys` as 'k=v k=v' (resolved values)."""
        flat = self.cfg.flat()
        return " ".join(f"{k}={flat.get(k, self.point.get(k))}" for k in keys)


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """`--grid name=v1,v2` options -> {name: [v1, v2]} (values stay strings until resolved)."""
    grid: dict[str, list[str]] = {}
    form = "NAME=VALUE[,VALUE...], e.g. --grid hidden=20,50"
    for item in items or []:
        name, values = parse_pair(item, "--grid", form)
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise FwbenchError(f"invalid --grid {item!r}: expected {form}")
        if name in grid:
            raise FwbenchError(f"--grid {name} given twice; list all its values in one option")
        grid[name] = vals
    return grid


def make_spec(settings: dict[str, Any], grid: dict[str, list], seeds: int | None,
              default_seeds: int = 1) -> SweepSpec:
    """A SweepSpec; seeds 0..n-1 unless the seed is set or swept explicitly."""
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise FwbenchError(f"grid axis {name!r} has no values; give a non-empty list")
    if "seed" in grid or "seed" in settings:
        if seeds is not None:
            raise FwbenchError("--seeds conflicts with a seed given by --grid/--set; use one")
        return SweepSpec(dict(settings), dict(grid), ())
    n = default_seeds if seeds is None else seeds
    if n < 1:
        raise FwbenchError(f"invalid --seeds {n}: expected an integer >= 1")
    return SweepSpec(dict(settings), dict(grid), tuple(range(n)))


def build_runs(spec: SweepSpec) -> list[RunSpec]:
    """Resolve every point (validation before anything runs); duplicates kept once."""
    from fwbench.config import resolve

    runs: dict[str, RunSpec] = {}
    for point in spec.points():
        task = str(point.get("task", DEFAULT_TASK))
        model = str(point.get("model", DEFAULT_MODEL))
        try:
            cfg = resolve(task, model, {k: v for k, v in point.items()
                                        if k not in ("task", "model")})
        except FwbenchError as e:
            where = ", ".join(f"{k}={v}" for k, v in point.items() if k in spec.grid
                              or k in ("task", "model"))
            raise FwbenchError(f"sweep point ({where}): {e}") from None
        runs.setdefault(cfg.run_id, RunSpec(cfg, {**point, "task": task, "model": model}))
    return list(runs.values())


def run_state(results: Path, run_id: str) -> str:
    """'done' (completed or diverged), 'stale' (done by other code), 'partial' (started, not
    finished) or 'new'."""
    state = RunRecord.at(results, run_id).state()
    # the plan shows four states: a run another process is running is not finished either
    return RunState.PARTIAL.value if state is RunState.RUNNING else state.value


def start_over(results: Path, run_ids: list[str]) -> None:
    """Empty the directories of finished runs to be rerun (under each run's lock), so that
    any executor starts them afresh rather than reporting them or resuming a checkpoint."""
    for run_id in run_ids:
        with RunRecord.at(results, run_id).locked() as record:
            for p in record.path.iterdir():
                if p.name != record.lock_path.name:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()


def varying_keys(runs: list[RunSpec]) -> list[str]:
    """Settings whose resolved value differs between runs (the columns worth showing)."""
    if not runs:
        return []
    flats = [r.cfg.flat() for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
