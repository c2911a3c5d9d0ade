"""`fwbench report`: tables, confidence intervals and plots from a results directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

EPILOG = ("Built from the run records alone (config.json, summary.json, metrics.csv); "
          "torch is not imported. Layout, metric and direction come from the preset's \\[paper] "
          "and \\[report] tables when --preset is given (or when every run of a task belongs to "
          "a preset); the options below override them.")


def report(
    results: Annotated[Path, typer.Option(help="results root directory")] = Path("results"),
    out: Annotated[Optional[Path], typer.Option(
        help="output directory (default RESULTS/report, or RESULTS/report/PRESET)")] = None,
    preset: Annotated[Optional[str], typer.Option(
        help="report the runs of this preset, laid out like its paper table")] = None,
    sweep_name: Annotated[Optional[str], typer.Option(
        "--sweep", help="only this named sweep of the preset, or the sweeps a pattern "
                        "matches (state400*)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="NAME=VALUE the preset's sweep was run with (repeatable)")] = None,
    task: Annotated[Optional[str], typer.Option(help="only runs of this task")] = None,
    where: Annotated[Optional[list[str]], typer.Option(
        help="only runs with NAME=VALUE (repeatable)")] = None,
    metric: Annotated[Optional[str], typer.Option(
        help="summary key tabulated (default test_error)")] = None,
    select: Annotated[Optional[str], typer.Option(
        help="summary key tuned settings are chosen on (default best_valid_*)")] = None,
    direction: Annotated[Optional[str], typer.Option(help="lower or higher is better")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        help="add a steps-to-threshold column: first step at which the first curve reaches "
             "this value (raw units, e.g. 0.05)")] = None,
    tail: Annotated[Optional[int], typer.Option(
        help="add a column: mean of the last TAIL points of the first curve per run, over "
             "seeds with a 95% CI (where a noisy curve ends)")] = None,
    capacity: Annotated[Optional[float], typer.Option(
        help="add a capacity table and plot: per row, the last (numeric) column before the "
             "metric goes beyond this value (raw units, e.g. 0.1 for error <= 10%)")] = None,
    curves: Annotated[Optional[str], typer.Option(
        help="curves to plot: SPLIT/METRIC,... (default valid/error,train/loss)")] = None,
    rows: Annotated[Optional[str], typer.Option(
        help="setting laid out as table rows (default model)")] = None,
    columns: Annotated[Optional[str], typer.Option(
        help="setting laid out as table columns (default hidden)")] = None,
    scale: Annotated[Optional[float], typer.Option(
        help="display factor of metric values, e.g. 100 for percent")] = None,
    tune: Annotated[Optional[str], typer.Option(
        help="settings chosen on validation where a cell's runs differ, comma-separated, e.g. "
             "lr,lam,eta,S (default: the preset's; none without one)")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="rebuild each committed report (under evidence/report, or the one in "
                        "--out) from the command its report.md records, into a temporary "
                        "directory, and compare file by file; exit 1 on a difference")] = False,
    protocol: Annotated[bool, typer.Option(
        "--protocol", help="report the preset's tuning protocol: tables from stage 2, what "
                           "stage 1 chose (into RESULTS/report/PRESET-protocol); with --sweep "
                           "NAME, the sweep run at those choices (PRESET-protocol-NAME)")] = False,
    bench: Annotated[bool, typer.Option(
        "--bench", help="report the `fwbench bench` results in RESULTS/bench instead")] = False,
    scorecard: Annotated[bool, typer.Option(
        "--scorecard", help="every claim judged in the reports under RESULTS/report on one "
                            "page (into RESULTS/report/scorecard)")] = False,
) -> None:
    """Summarise finished runs: summary CSV, tables with 95% CIs, plots, report.md."""
    from fwbench.commands._args import check_number, check_out
    from fwbench.report import Options, build_report
    from fwbench.settings import parse_pairs

    for name, value in (("threshold", threshold), ("capacity", capacity)):
        check_number(value, name)
    check_number(scale, "scale", low=0, open_low=True)
    check_out(out)
    if check:
        _check(out)
        return
    if bench:
        from fwbench.report.bench import build_bench_report

        path, figures = build_bench_report(results, out)
        Console().print(f"bench report ({figures} figure(s)): {escape(str(path))}",
                        highlight=False, soft_wrap=True)
        return

    overrides = {"metric": metric, "select": select, "direction": direction,
                 "threshold": threshold, "tail": tail, "capacity": capacity, "rows": rows,
                 "columns": columns, "scale": scale, "tune": _names(tune), "curves": _names(curves)}
    if scorecard:
        _scorecard(results, out, overrides, preset=preset, sweep=sweep_name, set=set_,
                   task=task, where=where, protocol=protocol)
        return
    sets = parse_pairs(set_, "--set")
    opts = Options(results=results, out=out, preset=preset, sweep=sweep_name, task=task,
                   where=tuple(where or ()), sets=sets, overrides=overrides, protocol=protocol)
    from fwbench.report.selection import build_protocol_report

    build = build_protocol_report if protocol else build_report
    out_dir, sections, loaded, runs = build(opts)
    err = Console(stderr=True)
    if loaded.skipped:
        names = ", ".join(f"{n} ({why})" for n, why in loaded.skipped[:10])
        more = f" and {len(loaded.skipped) - 10} more" if len(loaded.skipped) > 10 else ""
        err.print(f"[yellow]warning:[/yellow] skipped {len(loaded.skipped)} run "
                  f"director{'y' if len(loaded.skipped) == 1 else 'ies'}: {escape(names)}{more}",
                  highlight=False, soft_wrap=True)
    con = Console()
    figures = sum(len(s.figures) for s in sections)
    con.print(f"report of {len(runs)} runs ({len(sections)} task(s), {figures} figure(s)): "
              f"{escape(str(out_dir / 'report.md'))}", highlight=False, soft_wrap=True)


def _scorecard(results: Path, out: Path | None, overrides: dict, **others) -> None:
    """The scorecard; refused with any option that selects runs or lays out a table."""
    from fwbench.errors import FwbenchError
    from fwbench.report import Options
    from fwbench.report.scorecard import build_scorecard

    given = [f"--{k}" for k, v in {**others, **overrides}.items() if v]
    if given:
        raise FwbenchError(f"--scorecard reads the verdicts of the reports already built; drop "
                           f"{', '.join(given)} (only --results and --out apply)")
    path = build_scorecard(Options(results=results, out=out, scorecard=True))
    Console().print(f"scorecard: {escape(str(path / 'report.md'))}", highlight=False,
                    soft_wrap=True)


def _check(out: Path | None) -> None:
    """Rebuild and compare committed reports; exit 1 where one differs."""
    from fwbench.report.command import EVIDENCE
    from fwbench.report.rebuild import check

    con = Console(highlight=False, soft_wrap=True)
    checked = check(out or EVIDENCE)
    for c in checked:
        verdict = "[green]same[/green]" if not c.differ else \
            f"[red]differs[/red] in {len(c.differ)} file(s): {escape(', '.join(c.differ))}"
        con.print(f"{escape(str(c.path))}: {verdict} (`{escape(c.command)}`)")
    bad = sum(bool(c.differ) for c in checked)
    con.print(f"{len(checked) - bad} of {len(checked)} report(s) rebuild unchanged")
    if bad:
        raise typer.Exit(1)


def _names(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def register(app: typer.Typer) -> None:
    app.command(epilog=EPILOG)(report)
