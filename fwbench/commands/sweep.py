"""`fwbench sweep`: a grid of runs over settings and seeds, here or on a Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fwbench.commands._args import parse_extra

EPILOG = ("Grid values are comma-separated: --grid lam=0.9,0.95 --grid eta=0.25,0.5,1 "
          "--grid S=1,2,3. `model`, `task` and `hidden` may be grid keys. Settings shared by "
          "every run: --set NAME=VALUE or --NAME VALUE. Finished runs are skipped, interrupted "
          "ones resumed. Exit code: 0 all completed, 1 some run failed, 3 some run diverged.")


def sweep(
    ctx: typer.Context,
    grid: Annotated[Optional[list[str]], typer.Option(
        "--grid", help="NAME=V1,V2,... axis of the grid (repeatable)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="NAME=VALUE shared by every run")] = None,
    task: Annotated[Optional[str], typer.Option(
        help="task (default: the preset's, or retrieval)")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="model, when not swept (default fastweights)")] = None,
    seeds: Annotated[Optional[int], typer.Option(
        help="seeds 0..N-1 per grid point (default: the preset's, or 1)")] = None,
    preset: Annotated[Optional[str], typer.Option(
        help="preset in tasks/ (e.g. table1) or a TOML path")] = None,
    sweep_name: Annotated[Optional[str], typer.Option(
        "--sweep", help="a named sweep of the preset")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        help="runs at once on this machine (default 1)")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Dask scheduler tcp://HOST:PORT to run on")] = None,
    threads: Annotated[int, typer.Option(
        help="threads per run (0: cores // jobs here, 1 on a cluster)")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    results: Annotated[Path, typer.Option(help="results root directory")] = Path("results"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="list the runs and their state, run nothing")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="no live display or per-run lines")] = False,
    log: Annotated[str, typer.Option(
        help="tracker mirroring metrics.csv: tensorboard (event files in runs/<id>/tb/) "
             "or none")] = "tensorboard",
) -> None:
    """Run a grid of experiments (settings x seeds); finished runs are skipped."""
    from fwbench.records import ensure_writable
    from fwbench.sweep import (SweepDisplay, build_runs, check_executor_options, make_executor,
                               parse_grid, plan, run_sweep)
    from fwbench.sweep.grid import run_state, varying_keys
    from fwbench.tracking import check_log

    check_executor_options(jobs, scheduler)
    check_log(log)
    spec = plan(task=task, model=model, sets=parse_extra(ctx.args, set_), grid=parse_grid(grid),
                seeds=seeds, preset=preset, sweep=sweep_name)
    runs = build_runs(spec)
    states = {r.run_id: run_state(results, r.run_id) for r in runs}
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "partial", "new")}
    out = Console()
    if dry_run:
        keys = [k for k in varying_keys(runs) if k in spec.grid or k == "seed"]
        _print_plan(out, runs, states, keys)
        out.print(f"{len(runs)} runs: {counts['done']} done, {counts['partial']} partial "
                  f"(to resume), {counts['new']} new")
        return
    executor = make_executor(results, jobs=jobs, scheduler=scheduler, threads=threads,
                             device=device, log=log)
    ensure_writable(results)
    out.print(f"{len(runs)} runs: {counts['done']} already done, {counts['partial']} to resume, "
              f"{counts['new']} new; on {executor.describe()}", highlight=False)
    with SweepDisplay(len(runs), quiet=quiet, runs=runs) as display:
        outcome = run_sweep(runs, executor, results, display)
    _print_outcome(out, outcome, display, quiet)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _print_plan(out: Console, runs, states: dict[str, str], keys: list[str]) -> None:
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("run id", no_wrap=True)
    for col in (*keys, "state"):
        table.add_column(col)
    style = {"done": "green", "partial": "yellow", "new": "default"}
    for r in runs:
        flat = r.cfg.flat()
        state = states[r.run_id]
        table.add_row(r.run_id, *(str(flat.get(k, "-")) for k in keys),
                      f"[{style[state]}]{state}[/]")
    out.print(table)


def _print_outcome(out: Console, outcome, display, quiet: bool) -> None:
    from fwbench.sweep.display import outcome_table

    if not quiet:
        out.print(outcome_table(outcome.results, display), highlight=False, soft_wrap=True)
    c = outcome.count
    reused = sum(r.reused for r in outcome.results)
    out.print(f"sweep finished: {c('completed')} completed, {c('diverged')} diverged, "
              f"{len(outcome.failed)} failed ({reused} finished earlier)", highlight=False)
    for r in outcome.failed:
        out.print(f"[red]failed[/red] {escape(_named(display, r.run_id))}: {escape(str(r.error))}",
                  highlight=False, soft_wrap=True)
    for r in outcome.results:
        if r.status == "diverged":
            out.print(f"[yellow]diverged[/yellow] {escape(_named(display, r.run_id))} at step "
                      f"{r.summary.get('diverged_step')}", highlight=False)


def _named(display, run_id: str) -> str:
    """'lr=0.002 (retrieval-irnn-h8-3fe6634525)': the settings, and the directory to look in."""
    name = display.name(run_id)
    return name if name == run_id else f"{name} ({run_id})"


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                epilog=EPILOG)(sweep)
