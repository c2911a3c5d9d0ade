"""`fwbench list`: every task and model, with its settings and their defaults."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def list_(
    kind: Annotated[Optional[str], typer.Argument(help="tasks, models or learners (all if omitted)")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="names and descriptions only")] = False,
) -> None:
    """List tasks, models and learners with one-line descriptions and their settings."""
    from rich.console import Console

    from fwbench.errors import FwbenchError
    from fwbench.listing import KINDS, listing, render

    if kind is not None and kind not in KINDS:
        raise FwbenchError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    # from the cache when it matches the installed code: no torch, well under a second
    render(Console(), listing(), kind, brief)


def register(app: typer.Typer) -> None:
    app.command("list")(list_)
