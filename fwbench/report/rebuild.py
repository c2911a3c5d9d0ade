"""A report's own command, written into its report.md, and the check that rebuilds committed
reports from it.

report.md says "Built by `fwbench report --preset table1 --results evidence` (fwbench X)":
the options as the command line spells them, in a fixed order, so the line is the same however
the report was started (from the shell or from Python). `check` reads that line back, rebuilds
the report into a temporary directory and compares every file byte for byte.
"""

from __future__ import annotations

import dataclasses
import filecmp
import re
import shlex
import tempfile
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
    words = ["fwbench", "report"]
    for field, flag in FIELDS:
        value = getattr(opts, field)
        if value is not None and not (field == "results" and Path(value) == DEFAULT_RESULTS):
            words += [flag, str(value)]
    words += [w for k, v in opts.sets.items() for w in ("--set", f"{k}={v}")]
    words += [w for item in opts.where for w in ("--where", item)]
    for key in OVERRIDES:
        value = opts.overrides.get(key)
        if value is not None:
            words += [f"--{key}", _text(value)]
    return shlex.join(words)


def options_from_command(command: str):
    """The Options a command_line() text describes; FwbenchError for anything else."""
    from fwbench.report.build import Options
    from fwbench.settings import parse_pair

    words = shlex.split(command)
    if words[:2] != ["fwbench", "report"] or len(words) % 2:
        raise FwbenchError(f"not a report command this check can rebuild: {command!r}")
    fields = {flag: field for field, flag in FIELDS}
    values: dict[str, Any] = {"sets": {}, "where": [], "overrides": {}}
    for flag, value in zip(words[2::2], words[3::2]):
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
    return Options(**values)


def built_by(report_md: Path) -> str:
    """The command a report.md records; FwbenchError where it records none."""
    try:
        found = BUILT_BY.search(report_md.read_text())
    except OSError as e:
        raise FwbenchError(f"cannot read {report_md}: {e.strerror or e}") from None
    if found is None:
        raise FwbenchError(f"{report_md} does not say what built it (no \"Built by\" line); "
                           "rebuild it with its `fwbench report` command first")
    return found.group(1)


def committed_reports(where: Path) -> list[Path]:
    """The report directories at or below `where` (each holds a report.md)."""
    where = Path(where)
    if (where / "report.md").is_file():
        return [where]
    found = sorted(p.parent for p in where.glob("*/report.md"))
    if not found:
        found = sorted(p.parent for p in where.glob("report/*/report.md"))
    if not found:
        raise FwbenchError(f"no report.md at or below {where}; give a report directory, e.g. "
                           f"{EVIDENCE / 'report' / 'table1'}")
    return found


def differences(expected: Path, actual: Path) -> list[str]:
    """Relative paths of the files that differ, are missing or are extra in `actual`."""
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    want, got = files(expected), files(actual)
    out = [f"{n} (missing)" for n in sorted(want - got)]
    out += [f"{n} (extra)" for n in sorted(got - want)]
    out += [n for n in sorted(want & got)
            if not filecmp.cmp(expected / n, actual / n, shallow=False)]
    return out


@dataclasses.dataclass
class Checked:
    """One report rebuilt: its directory, its command and the files that differ."""

    path: Path
    command: str
    differ: list[str]


def check(where: Path = EVIDENCE) -> list[Checked]:
    """Rebuild each report at or below `where` from its own command into a temporary
    directory and compare it, file by file, with the one there."""
    from fwbench.report.build import build_report

    checked = []
    for path in committed_reports(where):
        command = built_by(path / "report.md")
        opts = options_from_command(command)
        with tempfile.TemporaryDirectory(prefix="fwbench-check-") as tmp:
            build_report(opts, into=Path(tmp))
            checked.append(Checked(path, command, differences(path, Path(tmp))))
    return checked
