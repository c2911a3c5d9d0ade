"""`fwbench show`: a PNG of one image beside the glimpse sequence a recurrent model reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fwbench.commands._args import parse_extra


def show(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="an image task (see `fwbench list tasks`)")] = "mnist",
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("glimpses.png"),
    index: Annotated[int, typer.Option(help="which image of the split", min=0)] = 0,
    split: Annotated[str, typer.Option(help="train, valid or test")] = "test",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="NAME=VALUE setting")] = None,
) -> None:
    """Write a PNG of one image of TASK beside its glimpse sequence (what a model reads)."""
    from fwbench.commands._args import check_out
    from fwbench.show import show_glimpses

    check_out(out, kind="file")
    path = show_glimpses(task, parse_extra(ctx.args, set_), out, index, split)
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(show)
