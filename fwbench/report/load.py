"""Reading run records into tables, straight from the files (no torch, no config resolution).

One row per finished run: its run id, status, the flat settings from config.json, the numeric
fields of summary.json, the thread count it ran with and its CPU time. Directories that are
partial (no summary, or an interrupted one) or malformed are skipped and named, as are those
whose records are damaged: a config.json that does not hash to its run id, a summary.json or
metrics.csv that does not match its recorded sha256, a metrics.csv missing or garbled.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from fwbench.checksums import config_problem
from fwbench.errors import FwbenchError
from fwbench.records import (METRIC_COLUMNS, RunRecord, RunState, is_final, recorded_code,
                             run_path, runs_root)
from fwbench.runlock import describe

BASE_COLUMNS = ("run_id", "status")


@dataclasses.dataclass
class Loaded:
    runs: pd.DataFrame
    config_keys: list[str]  # columns from config.json's flat table
    metric_keys: list[str]  # numeric columns from summary.json
    skipped: list[tuple[str, str]]  # (directory name, why)
    root: Path
    skipped_flat: dict[str, dict] = dataclasses.field(default_factory=dict)  # when readable
    codes: dict[str, str | None] = dataclasses.field(default_factory=dict)  # run id -> code
    # run id -> (its row, its config keys, its metric keys), in its records' order
    rows: dict[str, tuple[dict, list[str], list[str]]] = dataclasses.field(default_factory=dict)

    def table_of(self, run_ids) -> pd.DataFrame:
        """These runs' table built from their rows alone: a report's files depend on its
        runs, not on the other runs under the same results directory (whose keys would
        reorder the columns, and whose gaps turn integers into floats)."""
        return _table([self.rows[rid] for rid in run_ids])[0]

    def run_path(self, run_id: str) -> Path:
        return run_path(self.root, run_id)


class Skip(Exception):
    """A run directory that cannot be reported; the message says why."""


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise Skip(f"unfinished (no {what})") from None
    except (OSError, ValueError) as e:
        raise Skip(f"malformed {what} ({type(e).__name__})") from None


def _cell(value: Any) -> Any:
    """A config value as a table cell: lists become 'a,b' strings (hashable, comparable)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def _flat_of(path: Path) -> dict[str, Any] | None:
    """The flat settings of a run directory that cannot be reported, if its config is readable."""
    try:
        flat = json.loads(RunRecord(path).config_path.read_text()).get("flat")
    except (OSError, ValueError, AttributeError):
        return None
    return {k: _cell(v) for k, v in flat.items()} if isinstance(flat, dict) else None


def read_run(path: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(flat settings, summary, code fingerprint or None) of one finished run directory;
    Skip if it is not one."""
    record = RunRecord(path)
    if record.state() is RunState.RUNNING and (holder := record.lock.holder()) is not None:
        raise Skip(f"running ({describe(holder)})")
    cfg = _read_json(record.config_path, "config.json")
    flat = cfg.get("flat") if isinstance(cfg, dict) else None
    if not isinstance(flat, dict) or "task" not in flat or "model" not in flat:
        raise Skip("malformed config.json (no flat settings)")
    if cfg.get("run_id") != path.name:
        raise Skip(f"config.json names run {cfg.get('run_id')!r}")
    summary = _read_json(record.summary_path, "summary.json")
    if not isinstance(summary, dict):
        raise Skip("malformed summary.json")
    if not is_final(summary.get("status")):
        raise Skip(f"unfinished ({summary.get('status', 'no status')})")
    if (problem := config_problem(cfg, path.name)) is not None:
        raise Skip(f"damaged: {problem}")
    _check_records(record)
    threads = (cfg.get("environment") or {}).get("threads") or 1
    return ({k: _cell(v) for k, v in flat.items()}, {**summary, "threads": threads},
            recorded_code(cfg))


def _check_records(record: RunRecord) -> None:
    """Skip a finished run whose summary or metrics are damaged, missing or garbled."""
    try:
        entry = record.checksums.check("summary.json", record.summary_path.read_bytes())
        record.checksums.check_metrics(entry, "summary.json")
    except (OSError, FwbenchError) as e:
        raise Skip("damaged: " + str(e).split(" is corrupted: ")[-1].split(";")[0]) from None
    try:
        with open(record.metrics_path, newline="") as f:
            reader = csv.reader(f)
            if tuple(next(reader, ())) != METRIC_COLUMNS:
                raise ValueError("no header")
            for row in reader:
                int(row[0]), float(row[3])
                if len(row) != len(METRIC_COLUMNS):
                    raise ValueError("a short row")
    except FileNotFoundError:
        raise Skip("damaged: metrics.csv missing") from None
    except (OSError, ValueError, IndexError, csv.Error) as e:
        raise Skip(f"damaged: metrics.csv garbled ({e})") from None


def _row(path: Path, flat: dict, summary: dict) -> tuple[dict, list[str]]:
    row: dict[str, Any] = {"run_id": path.name, "status": summary["status"], **flat}
    metrics = []
    for key, value in summary.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key if key not in row else f"summary_{key}"
        row[name] = value
        metrics.append(name)
    # CPU time: the process's, where the run recorded it (runs from before: training wall
    # time x threads, which a machine running more processes than cores inflates)
    cpu, wall = summary.get("train_cpu_s"), summary.get("train_wall_s", summary.get("wall_s"))
    if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
        row["cpu_s"] = cpu
        metrics.append("cpu_s")
    elif isinstance(wall, (int, float)):
        row["cpu_s"] = wall * summary["threads"]
        metrics.append("cpu_s")
    return row, metrics


def load_runs(results: Path) -> Loaded:
    """Every finished run under `results`/runs; FwbenchError if there is none at all."""
    root = Path(results)
    runs_dir = runs_root(root)
    if not root.is_dir():
        raise FwbenchError(f"results directory {root} does not exist; run `fwbench sweep` "
                           "first or give --results")
    dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    if not dirs:
        raise FwbenchError(f"no run records in {runs_dir}; run `fwbench sweep` first or give "
                           "--results")
    own, skipped, skipped_flat, codes = {}, [], {}, {}
    for path in dirs:
        try:
            flat, summary, codes[path.name] = read_run(path)
        except Skip as why:
            skipped.append((path.name, str(why)))
            if (known := _flat_of(path)) is not None:
                skipped_flat[path.name] = known
            continue
        row, metrics = _row(path, flat, summary)
        own[path.name] = (row, list(flat), metrics)
    runs, config_keys, metric_keys = _table(list(own.values()))
    return Loaded(runs, config_keys, metric_keys, skipped, root, skipped_flat, codes, own)


def _table(entries: list[tuple[dict, list[str], list[str]]]
           ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(table, config keys, metric keys) of runs given as (row, config keys, metric keys): the
    columns are run id and status, then the union of their config keys, then of their metric
    keys, each in the order the runs' records first give them."""
    config, metrics = {}, {}
    for _, c, m in entries:
        config.update(dict.fromkeys(c))
        metrics.update(dict.fromkeys(m))
    table = pd.DataFrame([row for row, _, _ in entries],
                         columns=[*BASE_COLUMNS, *config, *metrics])
    return table, list(config), list(metrics)


def read_curve(path: Path, split: str, metric: str) -> pd.DataFrame:
    """The (step, value) rows of one split/metric of a run's metrics.csv (empty if none)."""
    try:
        df = pd.read_csv(path / "metrics.csv")
        df = df[(df["split"] == split) & (df["metric"] == metric)]
        out = pd.DataFrame({"step": pd.to_numeric(df["step"], errors="coerce"),
                            "value": pd.to_numeric(df["value"], errors="coerce")}).dropna()
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return pd.DataFrame({"step": [], "value": []})
    # a resumed run may repeat a step; keep its last row
    return out.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def runs_tables(results: Path, metrics: bool = False
                ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """The summary table (one row per finished run: run_id, status, settings, final metrics)
    and, with `metrics`, the long table of every run's metrics.csv with its run_id first."""
    loaded = load_runs(results)
    if not metrics:
        return loaded.runs
    frames = []
    for run_id in loaded.runs["run_id"]:
        try:
            df = pd.read_csv(loaded.run_path(run_id) / "metrics.csv")
        except (OSError, ValueError, pd.errors.ParserError):
            continue  # a finished run without readable curves still has its summary row
        frames.append(df.assign(run_id=run_id)[["run_id", *df.columns]])
    columns = ["run_id", "step", "split", "metric", "value"]
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return loaded.runs, long
