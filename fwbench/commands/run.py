"""`fwbench run`: train one model on one task and write its run record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from fwbench.commands._args import parse_extra
from fwbench.errors import EXIT_DIVERGED, FwbenchError

EPILOG = ("Every setting listed by `fwbench list` can be given as --NAME VALUE (or "
          "--set NAME=VALUE), e.g. --hidden 20 --lam 0.9 --S 2 --seed 1.")


def run(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="task name (see `fwbench list`)")] = "retrieval",
    model: Annotated[str, typer.Option(help="model name (see `fwbench list`)")] = "fastweights",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="NAME=VALUE setting")] = None,
    results: Annotated[Path, typer.Option(help="results root directory")] = Path("results"),
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N")] = "auto",
    threads: Annotated[int, typer.Option(
        help="CPU threads for torch (0: torch's default). One by default: these models are "
             "small, and extra threads oversubscribe a shared machine")] = 1,
    force: Annotated[bool, typer.Option("--force", help="start over even if a record exists")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no live progress display")] = False,
    log: Annotated[str, typer.Option(
        help="tracker mirroring metrics.csv: tensorboard (event files in runs/<id>/tb/) "
             "or none")] = "tensorboard",
) -> None:
    """Train MODEL on TASK; a finished run is reported, an interrupted one resumed."""
    settings = parse_extra(ctx.args, set_)
    out = Console()
    # options that only the usual path checks (a CUDA device, threads) take it
    quick = not force and device in ("auto", "cpu") and threads >= 0
    outcome = _finished_before(task, model, settings, results, log) if quick else None
    if outcome is None:
        outcome = _execute(task, model, settings, results, device, threads, force, quiet, log)
    s = outcome.summary
    if outcome.reused:
        out.print(f"[bold]already finished[/bold] ({outcome.status}): {escape(str(outcome.path))}")
    else:
        out.print(f"run record: {escape(str(outcome.path))}")
    if outcome.status == "diverged":
        out.print(f"[red]diverged[/red] at step {s.get('diverged_step')} (loss {s.get('loss')})")
        raise typer.Exit(EXIT_DIVERGED)
    out.print(_describe(s), soft_wrap=True)  # one line, whatever the width


def _finished_before(task: str, model: str, settings: dict, results: Path, log: str):
    """The result of this request's run if an identical request was resolved before under this
    code and its run has finished (no torch imported); None otherwise."""
    from fwbench.records import RunRecord
    from fwbench.runids import lookup
    from fwbench.tracking import TRACKERS

    known = lookup(task, model, settings) if log in TRACKERS else None
    if known is None or not (results / "runs" / known[0]).is_dir():
        return None
    try:
        return RunRecord.at(results, known[0]).finished(known[1])
    except FwbenchError:  # damaged files, or a cache entry that is wrong: the usual path decides
        return None


def _execute(task: str, model: str, settings: dict, results: Path, device: str, threads: int,
             force: bool, quiet: bool, log: str):
    """Resolve the request (remembering its run id) and train, resume or report its run."""
    from fwbench.config import resolve
    from fwbench.runids import remember
    from fwbench.runner import Execution, run_experiment

    cfg = resolve(task, model, settings)
    remember(task, model, settings, cfg.run_id, cfg.to_dict())
    exe = Execution(results=results, device=device, threads=threads, force=force,
                    progress=not quiet, log=log)
    return run_experiment(cfg, exe)


def _describe(s: dict) -> str:
    parts = []
    if "test_error" in s:
        parts.append(f"test error {100 * s['test_error']:.2f}%")
    if "best_valid_error" in s:
        parts.append(f"best valid error {100 * s['best_valid_error']:.2f}% at step {s['best_step']}")
    for key in ("steps", "train_wall_s", "params", "state_size"):
        if key in s:
            parts.append(f"{key} {s[key]}")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                epilog=EPILOG)(run)
