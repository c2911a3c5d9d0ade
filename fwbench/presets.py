"""Experiment presets: one TOML file per paper experiment, in the top-level `tasks/` folder.

A preset names its task, the settings every run shares, the grid of settings it sweeps, the
number of seeds, the paper's reference table, and further named sweep grids:

    name = "table1"
    task = "retrieval"
    seeds = 3
    [settings]            # shared by every run
    max_steps = 50000
    [grid]                # cartesian product
    model = ["irnn", "lstm", "alstm", "fastweights"]
    hidden = [20, 50, 100]
    [paper]               # the paper's table: metric, layout, and values[row][column]
    metric = "test_error"
    scale = 100           # the paper reports percent
    rows = "model"
    columns = "hidden"
    values = { fastweights = { 20 = 1.81, 50 = 0.0, 100 = 0.0 } }
    [sweeps.lam_eta_S]    # a named alternative grid (and its own shared settings)
    grid = { lam = [0.9, 0.95], eta = [0.25, 0.5, 1.0], S = [1, 2, 3] }
    settings = { model = "fastweights", hidden = 20 }
    [report]              # optional: how `fwbench report` reads the runs (defaults but threshold)
    metric = "test_error"         # summary.json key of the tables (default: paper.metric)
    select = "best_valid_error"   # summary key tuned settings are chosen on (never the test)
    direction = "lower"           # "lower" or "higher" is better, for metric, select, threshold
    curves = ["valid/error", "train/loss"]  # split/metric rows of metrics.csv to plot
    x_label = "updates"           # what metrics.csv's step counts (e.g. "environment steps")
    threshold = 0.05              # steps-to-threshold on the first curve (raw units; no default)
    tail = 10                     # mean of the first curve's last 10 points per run (no default)
    capacity = 0.1                # per row, the last column (numeric) before the metric goes
                                  # beyond 0.1, raw units (no default; fwbench.report.capacity)
    metrics = { 2 = "test_K2_error", 8 = "test_K8_error" }  # summary keys as columns named
                                  # by `columns` (a label, not a setting), values as `metric`
    rows = "model"                # table layout when there is no [paper] table
    columns = "hidden"
    scale = 1                     # display factor of metric values (paper.scale if given)
    tune = ["lr", "lam", "eta", "S"]  # chosen on `select` where a table cell's runs differ
    heatmap = ["lam", "eta"]      # the two tuned settings of the heatmap, one panel per `line`
    line = "S"                    # the tuned setting of the line plot
    [[claims]]            # optional, repeated: a finding of the paper the runs test (one each)
    text = "fast weights below the LSTM at R = 20 [S]"
    better = "fastweights"        # two values of the report's rows (a model)
    worse = "lstm"
    where = { hidden = 20 }       # the settings of the cells compared (default: every cell)
    metric = "test_error"         # summary key, or split/metric: the mean of that curve per run
                                  # (area under it: learning speed); default: the table's metric
    direction = "lower"           # default: the report's direction

A reinforcement-learning preset would say, for instance, `metric = "eval_catch_rate"`,
`select = "eval_catch_rate"`, `direction = "higher"`, `curves = ["eval/catch_rate"]`,
`x_label = "environment steps"`.

A `[protocol]` table makes the preset a two-stage tuning protocol (`fwbench sweep --protocol`):
its schema and rules are in `fwbench.protocol`.

Installed packages carry the folder as `fwbench/_presets`; a source checkout reads `tasks/`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import tomllib
from pathlib import Path
from typing import Any

from fwbench.errors import FwbenchError


@dataclasses.dataclass(frozen=True)
class Claim:
    """A finding the preset's runs test: `better` beats `worse` on `metric` in cells `where`."""

    text: str
    better: str
    worse: str
    where: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric: str | None = None  # None: the report's metric
    direction: str | None = None  # None: the report's direction


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    task: str
    title: str = ""
    description: str = ""
    seeds: int = 1
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, list] = dataclasses.field(default_factory=dict)
    paper: dict[str, Any] = dataclasses.field(default_factory=dict)
    sweeps: dict[str, dict] = dataclasses.field(default_factory=dict)
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    protocol: Any = None  # fwbench.protocol.Protocol, where the preset has a [protocol]
    path: Path | None = None

    def sweep(self, name: str | None) -> tuple[dict[str, Any], dict[str, list]]:
        """(shared settings, grid) of the main grid or of a named sweep."""
        if name is None:
            return dict(self.settings), dict(self.grid)
        if name not in self.sweeps:
            raise FwbenchError(f"preset {self.name!r} has no sweep {name!r}; choose one of: "
                               + ", ".join(self.sweeps or ["(none)"]))
        s = self.sweeps[name]
        return {**self.settings, **s.get("settings", {})}, dict(s.get("grid", {}))

    def sweep_names(self, pattern: str) -> list[str]:
        """The named sweeps `pattern` names: itself, or those a shell pattern (state400*)
        matches; FwbenchError where none does."""
        if pattern in self.sweeps:
            return [pattern]
        names = [n for n in self.sweeps if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise FwbenchError(f"preset {self.name!r} has no sweep {pattern!r}; choose one of: "
                               + ", ".join(self.sweeps or ["(none)"])
                               + " (or a pattern such as name*)")
        return names

    def grids(self) -> dict[str | None, tuple[dict[str, Any], dict[str, list]]]:
        """Every grid of the preset: the main one (key None) and each named sweep."""
        return {name: self.sweep(name) for name in [None, *self.sweeps]}


def presets_dir() -> Path:
    here = Path(__file__).resolve().parent
    shipped = here / "_presets"
    return shipped if shipped.is_dir() else here.parent / "tasks"


def available() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load(name_or_path: str) -> Preset:
    """A preset by name (from the presets folder) or by path to a TOML file."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.exists()):
        path = presets_dir() / f"{name_or_path}.toml"
    if not path.exists():
        raise FwbenchError(f"unknown preset {name_or_path!r}; choose one of: "
                           + ", ".join(available()))
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FwbenchError(f"preset {path} is not valid TOML: {e}") from None
    fields = {f.name for f in dataclasses.fields(Preset)} - {"path"}
    unknown = sorted(set(raw) - fields)
    if unknown or "task" not in raw:
        raise FwbenchError(f"preset {path}: unknown keys {unknown} or no 'task'; allowed keys: "
                           + ", ".join(sorted(fields)))
    raw.setdefault("name", path.stem)
    raw["claims"] = tuple(_claim(c, raw["name"]) for c in _claim_tables(raw, path))
    raw["protocol"] = _protocol(raw, path)
    preset = Preset(**raw, path=path)
    for claim in preset.claims:
        _check_claim(claim, preset)
    return preset


def _protocol(raw: dict, path: Path):
    """The preset's [protocol] as a Protocol (None without one); FwbenchError where malformed."""
    from fwbench.protocol import parse

    if "protocol" not in raw:
        return None
    return parse(raw["protocol"], raw.get("grid", {}), f"preset {path}")


def _claim_tables(raw: dict, path: Path) -> list:
    claims = raw.get("claims", [])
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise FwbenchError(f"preset {path}: claims must be [[claims]] tables")
    return claims


def _claim(table: dict, preset: str) -> Claim:
    """A [[claims]] table as a Claim; FwbenchError where it is malformed."""
    fields = {f.name for f in dataclasses.fields(Claim)}
    where = f"preset {preset!r}: claim {table.get('text', table)!r}"
    unknown = sorted(set(table) - fields)
    missing = [k for k in ("text", "better", "worse") if k not in table]
    if unknown or missing:
        raise FwbenchError(f"{where}: unknown keys {unknown} or missing {missing}; allowed: "
                           + ", ".join(sorted(fields)))
    for key in ("text", "better", "worse", "metric", "direction"):
        if key in table and not (isinstance(table[key], str) and table[key].strip()):
            raise FwbenchError(f"{where}: {key} must be a non-empty string")
    if table["better"] == table["worse"]:
        raise FwbenchError(f"{where}: better and worse are both {table['better']!r}")
    settings = table.get("where", {})
    if not isinstance(settings, dict) or any(isinstance(v, (dict, list)) for v in
                                             settings.values()):
        raise FwbenchError(f"{where}: where must be a table of settings, e.g. {{ hidden = 20 }}")
    if table.get("direction", "lower") not in ("lower", "higher"):
        raise FwbenchError(f"{where}: direction must be lower or higher")
    return Claim(**table)


def _check_claim(claim: Claim, preset: Preset) -> None:
    """FwbenchError for a claim the preset's runs can never judge: a model or a setting its
    grids lack, or fewer than 2 seeds per cell."""
    from fwbench.report.spec import same_value

    rows = preset.report.get("rows", preset.paper.get("rows", "model"))
    values: dict[str, list] = {}
    for settings, grid in preset.grids().values():
        for key, value in [*settings.items(), *((k, v) for k, vs in grid.items() for v in vs)]:
            values.setdefault(key, []).append(value)
    where = f"preset {preset.name!r}: claim {claim.text!r}"
    for model in (claim.better, claim.worse):
        if not any(same_value(model, v) for v in values.get(rows, [])):
            raise FwbenchError(f"{where}: unknown {rows} {model!r}; the preset's: "
                               + ", ".join(map(str, dict.fromkeys(values.get(rows, [])))))
    for key, value in claim.where.items():
        if not any(same_value(value, v) for v in values.get(key, [])):
            raise FwbenchError(f"{where}: no grid of the preset has {key} = {value!r}")
    replicates = preset.seeds * max(1, len(preset.grid.get("data_seed", [])))
    if replicates < 2:
        raise FwbenchError(f"{where}: too few seeds for a verdict ({replicates}); a claim "
                           "needs at least 2 seeds per cell")
