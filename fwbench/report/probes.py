"""The memory probe's accuracy per model and step, where runs have a probe.json
(`fwbench probe`): the mean over each cell's chosen runs, beside chance. Read without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd

PROBE_FILE = "probe.json"  # as fwbench.probe writes it


def probe_rows(cells: pd.DataFrame, run_path: Callable[[str], Path]) -> pd.DataFrame | None:
    """One row per cell, probe (target, features, weights) and step: mean accuracy and chance
    over the cell's runs that have it, and their count; None where no run has a probe."""
    rows = []
    for _, cell in cells.iterrows():
        for rid in cell["runs"]:
            path = run_path(rid) / PROBE_FILE
            if not path.is_file():
                continue
            for entry in json.loads(path.read_text())["probes"]:
                for s in entry["steps"]:
                    rows.append({"group": cell["group"], "row": cell["row"],
                                 "column": cell["column"], "target": entry["target"],
                                 "features": entry["features"], "weights": entry["weights"],
                                 "step": s["step"], "accuracy": s["accuracy"],
                                 "chance": s["chance"], "run_id": rid})
    if not rows:
        return None
    keys = ["group", "row", "column", "target", "features", "weights", "step"]
    df = pd.DataFrame(rows)
    return (df.groupby(keys, sort=False)
            .agg(accuracy=("accuracy", "mean"), chance=("chance", "mean"), n=("run_id", "size"))
            .reset_index())


def probe_tables(probes: pd.DataFrame, rows: str, columns: str) -> list[tuple[str, list, list]]:
    """(caption, header, body) per probe and group: a row per cell, a column per step."""
    out = []
    keys = ["group", "target", "features", "weights"]
    for (group, target, features, weights), df in probes.groupby(keys, sort=False):
        steps = sorted(df["step"].unique())
        header = [rows, columns, "n"] + [str(s) for s in steps] + ["chance (mean)"]
        body = []
        for (r, c), cell in df.groupby(["row", "column"], sort=False):
            acc = dict(zip(cell["step"], cell["accuracy"]))
            body.append([str(r), str(c), str(int(cell["n"].max()))]
                        + [f"{acc[s]:.2f}" if s in acc else "—" for s in steps]
                        + [f"{cell['chance'].mean():.2f}"])
        where = f" ({group})" if group else ""
        out.append((f"Memory probe{where}: {target} decoded from the {features} ({weights} "
                    "weights), held-out accuracy per step", header, body))
    return out
