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
    protocol: Annotated[bool, typer.Option(
        "--protocol", help="run the preset's tuning protocol: stage 1 searches on validation, "
                           "stage 2 trains each cell's choice on fresh seeds")] = False,
    stage: Annotated[Optional[int], typer.Option(
        help="with --protocol: only stage 1 or 2 (default both)")] = None,
) -> None:
    """Run a grid of experiments (settings x seeds); finished runs are skipped."""
    from fwbench.records import ensure_writable
    from fwbench.sweep import (SweepDisplay, build_runs, check_executor_options, make_executor,
                               parse_grid, plan, run_sweep)
    from fwbench.sweep.grid import run_state, varying_keys
    from fwbench.tracking import check_log

    check_executor_options(jobs, scheduler)
    check_log(log)
    if protocol or stage is not None:
        given = [name for name, v in (("--grid", grid), ("--set", set_ or ctx.args),
                                      ("--task", task), ("--model", model), ("--seeds", seeds),
                                      ("--sweep", sweep_name)) if v]
        _check_protocol_options(protocol, stage, preset, given)

        def executor():
            return make_executor(results, jobs=jobs, scheduler=scheduler, threads=threads,
                                 device=device, log=log)
        return _protocol(preset, stage, results, executor, dry_run, quiet)
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
    with SweepDisplay(len(runs), quiet=quiet) as display:
        outcome = run_sweep(runs, executor, results, display)
    _print_outcome(out, outcome)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _check_protocol_options(protocol: bool, stage: int | None, preset: str | None,
                            given: list[str]) -> None:
    from fwbench.errors import FwbenchError

    if not protocol:
        raise FwbenchError("--stage names a stage of the tuning protocol: give --protocol too")
    if preset is None:
        raise FwbenchError("--protocol runs a preset's [protocol]: give --preset too")
    if stage not in (None, 1, 2):
        raise FwbenchError(f"invalid --stage {stage}: expected 1 or 2")
    if given:
        raise FwbenchError(f"--protocol runs the preset's protocol as written; drop "
                           f"{', '.join(given)} (budgets and seeds are the protocol's)")


def _protocol(preset_name: str, stage: int | None, results: Path, executor, dry_run: bool,
              quiet: bool) -> None:
    """Stage 1, then stage 2 of each cell whose stage 1 is complete (see docs/protocol.md)."""
    from fwbench.presets import load
    from fwbench.records import ensure_writable
    from fwbench.sweep import SweepDisplay, run_sweep
    from fwbench.sweep.grid import run_state, varying_keys
    from fwbench.sweep.protocol import protocol_cells, stage_one, stage_two

    preset = load(preset_name)
    cells = protocol_cells(preset)  # every run of both stages validated before any starts
    out, codes = Console(), []
    for n, pick in ((1, lambda: (stage_one(cells), [])),
                    (2, lambda: stage_two(preset, cells, results))):
        if stage not in (None, n):
            continue
        runs, waiting = pick()
        states = {r.run_id: run_state(results, r.run_id) for r in runs}
        counts = {s: sum(v == s for v in states.values()) for s in ("done", "partial", "new")}
        out.print(f"stage {n}: {len(runs)} runs: {counts['done']} done, {counts['partial']} "
                  f"partial, {counts['new']} new", highlight=False)
        if waiting:
            out.print(f"stage {n}: {len(waiting)} cell(s) wait for stage 1: "
                      + ", ".join(c.name for c in waiting), highlight=False)
            codes.append(1)
        if dry_run:
            _print_plan(out, runs, states, varying_keys(runs))
            continue
        if not runs:  # every cell waits: no executor (nor cluster client) for nothing
            continue
        ensure_writable(results)
        with SweepDisplay(len(runs), quiet=quiet) as display:
            outcome = run_sweep(runs, executor(), results, display)
        _print_outcome(out, outcome)
        codes.append(outcome.exit_code)
    if not dry_run and any(codes):
        raise typer.Exit(1 if 1 in codes else max(codes))


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


def _print_outcome(out: Console, outcome) -> None:
    c = outcome.count
    reused = sum(r.reused for r in outcome.results)
    out.print(f"sweep finished: {c('completed')} completed, {c('diverged')} diverged, "
              f"{len(outcome.failed)} failed ({reused} finished earlier)", highlight=False)
    for r in outcome.failed:
        out.print(f"[red]failed[/red] {r.run_id}: {escape(str(r.error))}", highlight=False, soft_wrap=True)
    for r in outcome.results:
        if r.status == "diverged":
            out.print(f"[yellow]diverged[/yellow] {r.run_id} at step "
                      f"{r.summary.get('diverged_step')}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                epilog=EPILOG)(sweep)
