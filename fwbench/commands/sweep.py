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
    with SweepDisplay(len(runs), quiet=quiet) as display:
        outcome = run_sweep(runs, executor, results, display)
    _print_outcome(out, outcome)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


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
