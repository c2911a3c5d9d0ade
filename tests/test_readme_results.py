"""The README's results quote the committed reports: every decimal number in a bullet of its
"Results in this repository" section stands, as printed, in the report that bullet links
(its report.md or one of its tables). Integers (seeds, K, budgets) are not checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.]*\d)")
LINK = re.compile(r"\]\((evidence/report/[^)]+)/report\.md\)")


def results_bullets() -> list[tuple[str, str]]:
    """(report directory, bullet text) for each bullet that links a committed report."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Results in this repository\n", 1)[1].split("\n## ", 1)[0]
    out = []
    for bullet in re.split(r"\n- ", section)[1:]:
        link = LINK.search(bullet)
        if link:
            out.append((link.group(1), bullet))
    return out


def report_text(directory: str) -> str:
    root = REPO / directory
    return "\n".join(p.read_text() for p in [root / "report.md",
                                             *sorted((root / "tables").glob("*.md"))])


def quoted(number: str, text: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(number)}(?![\w]|\.\d)", text) is not None


def test_the_results_section_links_every_committed_report():
    linked = {d for d, _ in results_bullets()}
    committed = {f"evidence/report/{p.parent.name}" for p in
                 (REPO / "evidence" / "report").glob("*/report.md")}
    assert committed <= linked, f"reports without a README bullet: {sorted(committed - linked)}"


@pytest.mark.parametrize("directory, bullet", results_bullets(), ids=lambda v: str(v)[:40])
def test_every_number_quoted_stands_in_its_report(directory, bullet):
    text = report_text(directory)
    numbers = DECIMAL.findall(bullet)
    assert numbers, f"no figure quoted from {directory}"
    missing = [n for n in numbers if not quoted(n, text)]
    assert not missing, f"{directory}: the README quotes {missing}, which its report does not print"


def test_a_number_not_in_the_report_is_caught():
    assert quoted("2.13", "| fastweights | 2.13 [0.00, 4.67] |")
    assert not quoted("2.1", "| fastweights | 2.13 [0.00, 4.67] |")
    assert not quoted("12.13", "| fastweights | 2.13 |") and not quoted("2.13", "| 12.13 |")
