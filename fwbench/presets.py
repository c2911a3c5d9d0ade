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
    seeds = 1             # optional: the sweep's own number of seeds
    report = { threshold = 0.03 }  # optional: [report] keys for `--sweep lam_eta_S` alone
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
    bounds = [0, 1]               # the range of metric and of the first curve (a fraction):
                                  # intervals are cut to it (no default: nothing is guessed)
    curve_ranges = { "train/catch_rate" = [0, 1] }  # the ranges of further curves
    pinned = { lam = 0.95 }       # settings held at one value for the models that have them
                                  # (which shared settings cannot name beside other models):
                                  # a run with another value is not the report's
    sweeps = ["budget"]           # the named sweeps whose runs join the main grid's in
                                  # `fwbench report --preset P` (default: every one)
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
import re
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

    def report_grids(self) -> dict[str | None, tuple[dict[str, Any], dict[str, list]]]:
        """The grids a report of the whole preset reads: the main one and the named sweeps
        [report] `sweeps` lists (every one where it lists none)."""
        names = self.report.get("sweeps", list(self.sweeps))
        return {name: self.sweep(name) for name in [None, *names]}

    def seeds_of(self, sweep: str | None) -> int:
        """The number of seeds of the main grid or of a named sweep (its own, else the
        preset's)."""
        return self.sweeps[sweep].get("seeds", self.seeds) if sweep in self.sweeps else self.seeds

    def report_table(self, sweep: str | None = None) -> dict[str, Any]:
        """[report], with the report table of the sweeps `sweep` names on top; FwbenchError
        where a pattern names sweeps whose report tables differ."""
        tables = [self.sweeps[n].get("report", {}) for n in self.sweep_names(sweep)] \
            if sweep is not None else [{}]
        if any(t != tables[0] for t in tables):
            raise FwbenchError(f"preset {self.name!r}: the sweeps {sweep!r} names report "
                               "differently; report them one at a time")
        return {**self.report, **tables[0]}


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
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise FwbenchError(f"preset {path} is not valid TOML: {e}") from None
    fields = {f.name for f in dataclasses.fields(Preset)} - {"path"}
    unknown = sorted(set(raw) - fields)
    if unknown or "task" not in raw:
        raise FwbenchError(f"preset {path}: unknown keys {unknown} or no 'task'; allowed keys: "
                           + ", ".join(sorted(fields)))
    raw.setdefault("name", path.stem)
    _check_types(raw, path)
    raw["claims"] = tuple(_claim(c, raw["name"]) for c in _claim_tables(raw, path))
    raw["protocol"] = _protocol(raw, path)
    preset = Preset(**raw, path=path)
    _check_report_keys(preset, path)
    for claim in preset.claims:
        _check_claim(claim, preset)
    return preset


def _check_report_keys(preset: Preset, path: Path) -> None:
    """FwbenchError for a malformed [report] sweeps list or sweep seeds/report entry."""
    listed = preset.report.get("sweeps", [])
    if not isinstance(listed, list) or any(n not in preset.sweeps for n in listed):
        raise FwbenchError(f"preset {path}: [report] sweeps must list named sweeps of the "
                           f"preset ({', '.join(preset.sweeps) or 'none'}), got {listed!r}")
    for name, table in preset.sweeps.items():
        seeds = table.get("seeds", 1)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise FwbenchError(f"preset {path}: sweep {name!r} seeds must be an integer >= 1, "
                               f"got {seeds!r}")
        if not isinstance(table.get("report", {}), dict):
            raise FwbenchError(f"preset {path}: sweep {name!r} report must be a table of "
                               "[report] keys, e.g. { threshold = 0.03 }")


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_TYPES = {"name": str, "task": str, "title": str, "description": str, "seeds": int,
          "settings": dict, "grid": dict, "paper": dict, "sweeps": dict, "report": dict}


def check_name(name: Any, what: str) -> None:
    """FwbenchError unless `name` is a plain identifier: it names files and folders under the
    results directory, so `..` or `/` would write outside it."""
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise FwbenchError(f"{what} {name!r} is not a plain name: expected letters, digits, "
                           "'_' and '-' only")


def _check_grid(grid: Any, where: str) -> None:
    if not isinstance(grid, dict):
        raise FwbenchError(f"{where}: grid must be a table of lists, e.g. {{ hidden = [20, 50] }}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise FwbenchError(f"{where}: grid {key} = {values!r} must be a non-empty list, "
                               f"e.g. {key} = [{values!r}]")


def _check_types(raw: dict, path: Path) -> None:
    """FwbenchError for a key of the wrong type, a scalar grid or an unsafe name."""
    where = f"preset {path}"
    for key, tp in _TYPES.items():
        if key in raw and (not isinstance(raw[key], tp) or isinstance(raw[key], bool)):
            raise FwbenchError(f"{where}: {key} = {raw[key]!r} must be a {tp.__name__}")
    check_name(raw["name"], f"{where}: name")
    if raw.get("seeds", 1) < 1:
        raise FwbenchError(f"{where}: seeds = {raw['seeds']} must be >= 1")
    _check_grid(raw.get("grid", {}), where)
    for name, sweep in raw.get("sweeps", {}).items():
        check_name(name, f"{where}: sweep")
        if not isinstance(sweep, dict) or not isinstance(sweep.get("settings", {}), dict):
            raise FwbenchError(f"{where}: sweeps.{name} must be a table with grid and settings "
                               "tables")
        _check_grid(sweep.get("grid", {}), f"{where}: sweeps.{name}")


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
