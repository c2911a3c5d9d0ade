"""`fwbench probe`: a linear read-out of what a trained model remembers, per step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape


def probe(
    results: Annotated[Path, typer.Option(help="results root directory")] = Path("results"),
    run: Annotated[Optional[str], typer.Option(help="the run id to probe")] = None,
    preset: Annotated[Optional[str], typer.Option(
        help="probe every finished run of this preset instead")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="what to decode (the task's probe targets; default: its first)")] = None,
    features: Annotated[str, typer.Option(
        help="output (the core's output) or state (its whole recurrent state)")] = "output",
    weights: Annotated[str, typer.Option(
        help="best (best.pt), final (the last checkpoint's weights) or init (the "
             "untrained network its seed built: the control)")] = "best",
    examples: Annotated[int, typer.Option(
        help="episodes or test examples the states are collected on (70% fit, 30% score)")]
        = 1000,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default)")] = 1,
) -> None:
    """Fit a linear read-out per step on a trained run's frozen states; write probe.json."""
    from fwbench.probe import plan, probe_run

    todo, done = plan(results, run, preset, target, features, weights, examples)
    out = Console()
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    for path, name in done:
        out.print(f"already probed: {escape(path.name)}")
    for path, name in todo:
        entry = probe_run(path, name, features, weights, examples)
        accs = ", ".join(f"{s['step']}: {s['accuracy']:.2f}" for s in entry["steps"])
        out.print(f"{escape(path.name)} {name} accuracy by step: {accs}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(probe)
