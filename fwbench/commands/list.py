"""`fwbench list`: every task and model, with its settings and their defaults."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fwbench.settings import fields_of


def _settings_table(title: str, cls: type, defaults: dict) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col in ("setting", "default", "allowed", "source", "meaning"):
        table.add_column(col)
    for f in fields_of(cls):
        default = defaults.get(f.name, f.default)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        table.add_row(*(escape(str(v)) for v in (f.name, default, f.describe_allowed(), f.paper,
                                                 f.help)))
    return table


def list_(
    kind: Annotated[Optional[str], typer.Argument(help="tasks, models or learners (all if omitted)")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="names and descriptions only")] = False,
) -> None:
    """List tasks, models and learners with one-line descriptions and their settings."""
    from fwbench.errors import FwbenchError
    from fwbench.learners import LEARNERS
    from fwbench.models import MODELS
    from fwbench.tasks import TASKS

    registries = {"tasks": TASKS, "models": MODELS, "learners": LEARNERS}
    if kind is not None and kind not in registries:
        raise FwbenchError(f"unknown kind {kind!r}; choose one of: {', '.join(registries)}")
    console = Console()
    for name, reg in registries.items():
        if kind not in (None, name):
            continue
        console.rule(f"[bold]{name}")
        for entry in reg:
            cls = entry.load()
            desc = cls.summary
            if entry.defaults:
                desc += " [" + ", ".join(f"{k}={v}" for k, v in entry.defaults.items()) + "]"
            extra = ""
            if name == "tasks":
                extra = escape(f" (learner: {cls.learner}; inputs: {', '.join(cls.provides)})")
            if name == "models":
                extra = escape(f" (consumes: {cls.consumes})")
            # escaped: rich would take a variant's "[eta=0.0]" for markup and drop it
            console.print(f"[bold cyan]{escape(entry.name)}[/bold cyan]: {escape(desc)}"
                          f"[dim]{extra}[/dim]")
            if not brief:
                console.print(_settings_table("", cls.Config, entry.defaults))
                console.print()


def register(app: typer.Typer) -> None:
    app.command("list")(list_)
