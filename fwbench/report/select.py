"""Which runs a report takes: the options that name them (preset, sweep, task, --where) and
the preset all of a task's runs belong to, when no preset is given."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from fwbench.errors import FwbenchError
from fwbench.report.load import Loaded
from fwbench.report.spec import from_preset, in_preset, same_value
from fwbench.settings import normalise_key, parse_pair


@dataclasses.dataclass
class Options:
    results: Path = Path("results")
    out: Path | None = None
    preset: str | None = None
    sweep: str | None = None
    task: str | None = None
    where: tuple[str, ...] = ()
    sets: dict[str, Any] = dataclasses.field(default_factory=dict)  # the sweep's --set values
    protocol: bool = False  # the preset's tuning protocol (fwbench.report.selection)
    scorecard: bool = False  # every report's verdicts on one page (fwbench.report.scorecard)

    def __post_init__(self):
        self.sets = {normalise_key(k): v for k, v in self.sets.items()}
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # ReportSpec fields



def parse_where(items: tuple[str, ...]) -> list[tuple[str, str]]:
    """`--where NAME=VALUE` filters, in order (a name may repeat: every filter must hold)."""
    return [parse_pair(item, "--where") for item in items]


def pinned(preset, opts: Options) -> dict[str, Any]:
    """The settings the preset's report pins ([report] pinned, a sweep's on top), less those
    the sweep was run with by --set."""
    if preset is None:
        return {}
    pins = from_preset(preset, opts.sweep).pinned  # checked there with the other report keys

    def unset(table: dict[str, Any]) -> dict[str, Any]:
        return {normalise_key(k): v for k, v in table.items()
                if normalise_key(k) not in opts.sets}

    return {**unset({k: v for k, v in pins.items() if not isinstance(v, dict)}),
            **{model: unset(v) for model, v in pins.items() if isinstance(v, dict)}}


def _holds(flat: dict[str, Any], pins: dict[str, Any]) -> bool:
    """Whether a run holds the pinned settings its model has: the plain ones, and those
    pinned for its model by name."""
    plain = {k: v for k, v in pins.items() if not isinstance(v, dict)}
    own = pins.get(flat.get("model"))
    mine = {**plain, **(own if isinstance(own, dict) else {})}
    return all(k not in flat or same_value(flat[k], v) for k, v in mine.items())


def _wanted(flat: dict[str, Any], opts: Options, preset, where: list[tuple[str, str]],
            pins: dict[str, Any] | None = None) -> bool:
    """Whether a run with these flat settings passes the preset, --task and --where filters and
    holds the preset's pinned settings where its model has them."""
    flat = {k: v for k, v in flat.items() if not isnan(v)}
    if preset is not None and not in_preset(flat, preset, opts.sweep, opts.sets):
        return False
    if not _holds(flat, pins or {}):
        return False
    if opts.task is not None and flat.get("task") != opts.task:
        return False
    return all(key in flat and same_value(flat[key], value) for key, value in where)


def select_runs(loaded: Loaded, opts: Options, preset) -> pd.DataFrame:
    """The runs the options ask for; FwbenchError if a filter names no setting or none remain.

    Skipped directories whose settings are readable and fall outside the filters are dropped
    from `loaded.skipped`, so that warnings name only runs the report would have included.
    """
    runs = loaded.runs
    if runs.empty:
        named = ", ".join(f"{n} ({why})" for n, why in loaded.skipped[:5])
        raise FwbenchError(f"no finished runs in {loaded.root / 'runs'}: all "
                           f"{len(loaded.skipped)} run directories skipped: {named}")
    where = parse_where(opts.where)
    for key, _ in where:
        if key not in loaded.runs.columns:
            raise FwbenchError(f"--where {key}: no such setting or metric in the runs; known: "
                               + ", ".join(loaded.config_keys))
    flat_keys = ["task", *loaded.config_keys]
    where_flat = [(k, v) for k, v in where if k in flat_keys]
    records = runs.to_dict("records")
    pins = pinned(preset, opts)
    keep = [_wanted({k: r[k] for k in flat_keys if k in r}, opts, preset, where_flat, pins)
            for r in records]
    runs = runs[keep]
    for key, value in where:
        if key not in flat_keys:  # a summary metric
            runs = runs[[same_value(v, value) for v in runs[key]]]
    loaded.skipped = [(n, why) for n, why in loaded.skipped
                      if n not in loaded.skipped_flat
                      or _wanted(loaded.skipped_flat[n], opts, preset, where_flat, pins)]
    if runs.empty and preset is not None and opts.task is None and not opts.where:
        fixed = ", ".join(f"{k}={v}" for k, v in {**preset.settings, **opts.sets}.items())
        raise FwbenchError(f"none of the {len(loaded.runs)} finished runs in {loaded.root} belong "
                           f"to preset {preset.name!r} (its settings: {fixed}); if the sweep "
                           "changed some with --set, give the same --set here")
    if runs.empty:
        raise FwbenchError(f"none of the {len(loaded.runs)} finished runs in {loaded.root} match "
                           "the filters; check --task/--where/--preset")
    return runs


def isnan(v: Any) -> bool:
    """Whether a table cell is a missing value (NaN)."""
    return isinstance(v, float) and v != v


def matching_preset(runs: pd.DataFrame, config_keys: list[str], task: str):
    """A preset that every run of `task` belongs to (its paper table then applies), or None."""
    from fwbench.presets import available, load

    for name in available():
        try:
            p = load(name)
        except FwbenchError:
            continue
        if p.task != task or not (p.paper or p.report):
            continue
        keys = [k for k in dict.fromkeys(["task", *config_keys]) if k in runs]
        records = runs[keys].to_dict("records")
        if all(in_preset({k: v for k, v in r.items() if not isnan(v)}, p) for r in records):
            return p
    return None
