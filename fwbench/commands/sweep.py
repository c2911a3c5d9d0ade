"""`fwbench sweep`: a grid of runs over settings and seeds, here, on a Dask cluster or on SLURM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fwbench.commands._args import parse_extra

SLURM = "SLURM (--slurm)"
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
        "--sweep", help="a named sweep of the preset (with --protocol: stage 2 runs each "
                        "cell's choice with the sweep's settings)")] = None,
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
    rerun_stale: Annotated[bool, typer.Option(
        "--rerun-stale", help="start over the finished runs made by other code (stale); "
                              "by default they are listed and kept")] = False,
    log: Annotated[str, typer.Option(
        help="tracker mirroring metrics.csv: tensorboard (event files in runs/<id>/tb/) "
             "or none")] = "tensorboard",
    slurm: Annotated[bool, typer.Option(
        "--slurm", help="submit the runs as one SLURM array job (shared filesystem)",
        rich_help_panel=SLURM)] = False,
    partition: Annotated[Optional[str], typer.Option(
        help="SLURM partition (default: the cluster's)", rich_help_panel=SLURM)] = None,
    time_limit: Annotated[Optional[int], typer.Option(
        help="minutes per array task (default 120); a run stopped at the limit is requeued "
             "and resumes",
        rich_help_panel=SLURM)] = None,
    mem_gb: Annotated[Optional[float], typer.Option(
        help="memory per array task in GB (default: the cluster's)",
        rich_help_panel=SLURM)] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option(
        help="CPUs per array task (default 1; the run's threads unless --threads)",
        rich_help_panel=SLURM)] = None,
    array_parallelism: Annotated[Optional[int], typer.Option(
        help="array tasks running at once (default 256)", rich_help_panel=SLURM)] = None,
    sbatch: Annotated[Optional[list[str]], typer.Option(
        help="NAME=VALUE extra sbatch option, e.g. account=proj (repeatable)",
        rich_help_panel=SLURM)] = None,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="submit, print the job id and exit", rich_help_panel=SLURM)] = False,
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
    from fwbench.sweep.grid import run_state, start_over, varying_keys
    from fwbench.sweep.slurm import slurm_options
    from fwbench.tracking import check_log

    slurm_opts = slurm_options(slurm, jobs, scheduler, no_wait, partition=partition,
                               time_limit=time_limit, mem_gb=mem_gb, cpus_per_task=cpus_per_task,
                               array_parallelism=array_parallelism, sbatch=sbatch)
    check_executor_options(jobs, scheduler)
    check_log(log)
    if protocol or stage is not None:
        given = [name for name, v in (("--grid", grid), ("--set", set_ or ctx.args),
                                      ("--task", task), ("--model", model), ("--seeds", seeds),
                                      ("--slurm", slurm)) if v]
        _check_protocol_options(protocol, stage, preset, given)

        def executor():
            return make_executor(results, jobs=jobs, scheduler=scheduler, threads=threads,
                                 device=device, log=log)
        return _protocol(preset, stage, results, executor, dry_run, quiet, sweep_name)
    spec = plan(task=task, model=model, sets=parse_extra(ctx.args, set_), grid=parse_grid(grid),
                seeds=seeds, preset=preset, sweep=sweep_name)
    runs = build_runs(spec)
    states = {r.run_id: run_state(results, r.run_id) for r in runs}
    counts = {s: sum(v == s for v in states.values())
              for s in ("done", "stale", "partial", "new")}
    out = Console()
    if dry_run:
        keys = [k for k in varying_keys(runs) if k in spec.grid or k == "seed"]
        _print_plan(out, runs, states, keys)
        out.print(f"{len(runs)} runs: {counts['done']} done, {_stale(counts, rerun_stale)}"
                  f"{counts['partial']} partial (to resume), {counts['new']} new")
        return
    if slurm_opts is not None:
        from fwbench.sweep.slurm import SlurmExecutor

        executor = SlurmExecutor(results, slurm_opts, threads=threads, device=device, log=log)
    else:
        executor = make_executor(results, jobs=jobs, scheduler=scheduler, threads=threads,
                                 device=device, log=log)
    ensure_writable(results)
    stale = [r.run_id for r in runs if states[r.run_id] == "stale"]
    if rerun_stale:
        start_over(results, stale)
    if slurm_opts is not None:  # the array is submitted first: the line below names its job
        keep = {"done"} if rerun_stale else {"done", "stale"}
        executor.submit_array([r for r in runs if states[r.run_id] not in keep])
    out.print(f"{len(runs)} runs: {counts['done']} already done, {_stale(counts, rerun_stale)}"
              f"{counts['partial']} to resume, {counts['new']} new; on {executor.describe()}",
              highlight=False)
    if stale and not quiet:
        verb = "rerun" if rerun_stale else "kept (--rerun-stale to rerun)"
        out.print(f"stale, {verb}: {', '.join(stale)}", highlight=False, soft_wrap=True)
    if no_wait:
        out.print("not waiting: run the same command again to see which runs are done",
                  highlight=False)
        return
    with SweepDisplay(len(runs), quiet=quiet, runs=runs) as display:
        outcome = run_sweep(runs, executor, results, display)
    _print_outcome(out, outcome, display, quiet)
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
              quiet: bool, sweep: str | None = None) -> None:
    """Stage 1, then stage 2 of each cell whose stage 1 is complete (see docs/protocol.md);
    with a named sweep, stage 2 runs each choice with the sweep's settings instead."""
    from fwbench.presets import load
    from fwbench.records import ensure_writable
    from fwbench.sweep import SweepDisplay, run_sweep
    from fwbench.sweep.grid import run_state, varying_keys
    from fwbench.sweep.protocol import protocol_cells, stage_one, stage_two

    preset = load(preset_name)
    cells = protocol_cells(preset, sweep)  # every run of both stages validated before any start
    out, codes = Console(), []
    for n, pick in ((1, lambda: (stage_one(cells), [])),
                    (2, lambda: stage_two(preset, cells, results))):
        if stage not in (None, n):
            continue
        runs, waiting = pick()
        states = {r.run_id: run_state(results, r.run_id) for r in runs}
        counts = {s: sum(v == s for v in states.values())
                  for s in ("done", "stale", "partial", "new")}
        out.print(f"stage {n}: {len(runs)} runs: {counts['done']} done, "
                  f"{_stale(counts, False)}{counts['partial']} partial, {counts['new']} new",
                  highlight=False)
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
        with SweepDisplay(len(runs), quiet=quiet, runs=runs) as display:
            outcome = run_sweep(runs, executor(), results, display)
        _print_outcome(out, outcome, display, quiet)
        codes.append(outcome.exit_code)
    if not dry_run and any(codes):
        raise typer.Exit(1 if 1 in codes else max(codes))


def _print_plan(out: Console, runs, states: dict[str, str], keys: list[str]) -> None:
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("run id", no_wrap=True)
    for col in (*keys, "state"):
        table.add_column(col)
    style = {"done": "green", "stale": "magenta", "partial": "yellow", "new": "default"}
    for r in runs:
        flat = r.cfg.flat()
        state = states[r.run_id]
        table.add_row(r.run_id, *(str(flat.get(k, "-")) for k in keys),
                      f"[{style[state]}]{state}[/]")
    out.print(table)


def _stale(counts: dict[str, int], rerun: bool) -> str:
    """The plan's words on stale runs (finished by other code), where there are any."""
    if not counts["stale"]:
        return ""
    return f"{counts['stale']} stale (made by other code; {'to rerun' if rerun else 'kept'}), "


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
