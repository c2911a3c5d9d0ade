"""A report's own command line, as report.md records it, and back.

report.md says "Built by `fwbench report --preset table1 --results evidence` (fwbench X)":
the options as the command line spells them, in a fixed order, so the line is the same however
the report was started (from the shell or from Python); `fwbench.report.rebuild` reads it back.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Callable

from fwbench.errors import FwbenchError

EVIDENCE = Path("evidence")  # the committed results root (run records, reports, benches)
DEFAULT_RESULTS = Path("results")  # where user runs go
BUILT_BY = re.compile(r"^Built by `(fwbench report[^`]*)`", re.MULTILINE)

# Options fields in the order the command spells them, then the overrides (ReportSpec keys)
FIELDS = (("preset", "--preset"), ("sweep", "--sweep"), ("task", "--task"),
          ("results", "--results"), ("out", "--out"))
REPEATED = (("sets", "--set"), ("where", "--where"))
OVERRIDES: dict[str, Callable[[str], Any]] = {
    "metric": str, "select": str, "direction": str, "threshold": float, "tail": int,
    "capacity": float, "curves": lambda v: v.split(","), "rows": str, "columns": str,
    "scale": float, "tune": lambda v: [c for c in v.split(",") if c]}


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def command_line(opts) -> str:
    """The `fwbench report` command that builds what `opts` describe (defaults left out)."""
    words = ["fwbench", "report"] + (["--scorecard"] if getattr(opts, "scorecard", False)
                                     else [])
    for field, flag in FIELDS:
        value = getattr(opts, field)
        if value is not None and not (field == "results" and Path(value) == DEFAULT_RESULTS):
            words += [flag, str(value)]
        if field == "preset" and getattr(opts, "protocol", False):
            words.append("--protocol")
    words += [w for k, v in opts.sets.items() for w in ("--set", f"{k}={v}")]
    words += [w for item in opts.where for w in ("--where", item)]
    for key in OVERRIDES:
        value = opts.overrides.get(key)
        if value is not None:
            words += [f"--{key}", _text(value)]
    return shlex.join(words)


def options_from_command(command: str) -> dict[str, Any]:
    """The Options fields (keyword arguments) a command_line() text describes; FwbenchError
    for anything else."""
    from fwbench.settings import parse_pair

    words = shlex.split(command)
    if words[:2] != ["fwbench", "report"]:
        raise FwbenchError(f"not a report command this check can rebuild: {command!r}")
    fields = {flag: field for field, flag in FIELDS}
    values: dict[str, Any] = {"sets": {}, "where": [], "overrides": {}}
    words = words[2:]
    for flag in ("--protocol", "--scorecard"):  # the options without a value
        if flag in words:
            words.remove(flag)
            values[flag[2:]] = True
    if len(words) % 2:
        raise FwbenchError(f"not a report command this check can rebuild: {command!r}")
    for flag, value in zip(words[0::2], words[1::2]):
        key = flag[2:]
        if flag in fields:
            values[fields[flag]] = Path(value) if key in ("results", "out") else value
        elif flag == "--set":
            name, raw = parse_pair(value, "--set")
            values["sets"][name] = raw
        elif flag == "--where":
            values["where"].append(value)
        elif key in OVERRIDES:
            values["overrides"][key] = OVERRIDES[key](value)
        else:
            raise FwbenchError(f"unknown option {flag} in report command {command!r}")
    values["where"] = tuple(values["where"])
    return values


