"""Markdown tables, written one way for reports and bench results alike (no torch)."""

from __future__ import annotations


def table(header: list[str], body: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; the first column left-aligned, the rest right."""
    esc = [[s.replace("|", "\\|") for s in row] for row in [header, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines) + "\n"
