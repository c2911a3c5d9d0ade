"""The check that committed reports rebuild unchanged: each report.md's recorded command
(`fwbench.report.command`) rerun into a temporary directory, every file compared byte for byte.
"""

from __future__ import annotations

import dataclasses
import filecmp
import tempfile
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.report.command import BUILT_BY, EVIDENCE, options_from_command


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
    from fwbench.report.build import Options, build_report
    from fwbench.report.scorecard import build_scorecard
    from fwbench.report.selection import build_protocol_report

    checked = []
    for path in committed_reports(where):
        command = built_by(path / "report.md")
        opts = Options(**options_from_command(command))
        build = build_scorecard if opts.scorecard else \
            build_protocol_report if opts.protocol else build_report
        with tempfile.TemporaryDirectory(prefix="fwbench-check-") as tmp:
            build(opts, into=Path(tmp))
            checked.append(Checked(path, command, differences(path, Path(tmp))))
    return checked
