"""A preset's tuning protocol as runs: stage 1's trials per cell, then stage 2's final seeds.

Every run of both stages is resolved (validated) before anything runs: each trial at the
selection budget on the selection seeds, and each trial at the full budget on the final seeds,
since any of them may be chosen. A cell's stage 2 starts only once every stage-1 run of it has
finished (completed or diverged); its chosen trial is the one with the best mean validation
score (`fwbench.protocol.choose`, the rule the report applies to the same records). Run ids
are hashes of the settings, so a second invocation skips what is done, resumes what is partial,
and rebuilds the same choice from the same records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fwbench.errors import FwbenchError
from fwbench.protocol import Protocol, choose, label, variant
from fwbench.records import RunRecord
from fwbench.settings import normalise_key
from fwbench.sweep.grid import RunSpec, SweepSpec, build_runs


@dataclasses.dataclass(frozen=True)
class Cell:
    """One model x column cell: its trials' stage-1 runs and, per trial, its stage-2 runs."""

    model: str
    column: Any
    points: list[dict[str, Any]]
    select: list[list[RunSpec]]  # per trial: one run per selection seed
    final: list[list[RunSpec]]  # per trial: one run per final seed, should it be chosen

    @property
    def name(self) -> str:
        return f"{self.model} x {self.column}"


def protocol_of(preset) -> Protocol:
    """The preset's protocol; FwbenchError where it has none."""
    if preset.protocol is None:
        raise FwbenchError(f"preset {preset.name!r} has no [protocol]; --protocol needs one "
                           "(see docs/protocol.md)")
    return preset.protocol


def protocol_cells(preset, sweep: str | None = None) -> list[Cell]:
    """Every cell of the preset's protocol with all its runs resolved; with a named sweep,
    each trial's stage-2 runs carry the sweep's settings (see `variant`). FwbenchError naming
    the model and trial whose settings are unknown or out of bounds."""
    proto = protocol_of(preset)
    own, models = variant(preset, sweep)
    base = {"task": preset.task, **{normalise_key(k): v for k, v in preset.settings.items()}}
    cells = []
    for model in models:
        points = proto.points(str(model))
        for column in preset.grid[proto.columns]:
            cell = {**base, "model": model, proto.columns: column}
            select = [_runs({**cell, **p, **proto.select_budget}, proto.select_seeds, model, p)
                      for p in points]
            final = [_runs({**cell, **own, **p, **proto.final_budget}, proto.final_seeds, model,
                           p) for p in points]
            cells.append(Cell(str(model), column, points, select, final))
    return cells


def _runs(settings: dict[str, Any], seeds: tuple[int, ...], model: str,
          point: dict[str, Any]) -> list[RunSpec]:
    try:
        return build_runs(SweepSpec(settings, {}, tuple(seeds)))
    except FwbenchError as e:
        raise FwbenchError(f"protocol search of {model}, trial ({label(point)}): "
                           f"{str(e).split('): ', 1)[-1]}") from None


def select_rule(preset, summaries: list[dict]) -> tuple[str, bool]:
    """(summary key stage 1 chooses on, whether lower is better): the report's select key,
    never a test key; FwbenchError where the runs have none."""
    from fwbench.report.spec import from_preset

    spec = from_preset(preset)
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    key = spec.select_key(keys)
    if key is None or key.startswith("test"):
        raise FwbenchError(f"preset {preset.name!r}: no validation key to choose on in the "
                           f"stage-1 runs; set [report] select (the runs have: {', '.join(keys)})")
    return key, spec.select_lower(key)


def choice(preset, cell: Cell, results: Path) -> int | None:
    """Index of the cell's chosen trial, or None while some stage-1 run of it is unfinished."""
    summaries = []
    for runs in cell.select:
        for run in runs:
            res = RunRecord.at(results, run.run_id).finished(run.cfg.to_dict())
            if res is None:
                return None
            summaries.append(res.summary)
    if all(s.get("status") == "diverged" for s in summaries):
        return 0  # no score to choose on: every trial ranks last, and ties go to the earlier
    key, lower = select_rule(preset, summaries)
    per = len(cell.select[0])
    scores = [[s.get(key) for s in summaries[i * per:(i + 1) * per]]
              for i in range(len(cell.select))]
    scores = [[v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
               for v in trial] for trial in scores]
    return choose(scores, lower)


def stage_two(preset, cells: list[Cell], results: Path) -> tuple[list[RunSpec], list[Cell]]:
    """(stage-2 runs of every cell whose stage 1 is complete, the cells still waiting)."""
    runs, waiting = [], []
    for cell in cells:
        index = choice(preset, cell, results)
        if index is None:
            waiting.append(cell)
        else:
            runs += cell.final[index]
    return runs, waiting


def stage_one(cells: list[Cell]) -> list[RunSpec]:
    """Every stage-1 run, selection seeds outermost (a search cut short covers every cell)."""
    per_seed = max(len(t) for c in cells for t in c.select)
    return [trial[i] for i in range(per_seed) for c in cells for trial in c.select
            if i < len(trial)]
