"""The report of a tuning protocol: tables and verdicts from stage 2 alone, and a selection
table from stage 1 (per cell, each trial's settings and validation score, the chosen one marked).

Runs are recognised by their flat settings, as `in_preset` does, with no torch: a cell's stage-1
trial is the runs with its model, column, trial settings, selection budget and a selection
seed; its stage-2 runs have the chosen trial's settings, the preset's budget and a final seed.
The choice is `fwbench.protocol.choose`, the rule the sweep used to start stage 2.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pandas as pd

from fwbench import markdown
from fwbench.errors import FwbenchError
from fwbench.protocol import choose, label, owned, variant
from fwbench.report.spec import ReportSpec, has_settings, same_value
from fwbench.settings import normalise_key, recorded

COLUMNS = ("model", "column", "trial", "settings", "score", "n", "missing", "delta", "chosen",
           "cpu_s")


def _matching(runs: pd.DataFrame, settings: dict[str, Any], seeds) -> pd.DataFrame:
    """The runs with every one of `settings` and a seed among `seeds`."""
    if "seed" not in runs.columns:
        return runs.iloc[0:0]
    seeded = runs["seed"].map(lambda v: any(same_value(v, s) for s in seeds))
    return runs[has_settings(runs, settings) & seeded]


def protocol_runs(preset, runs: pd.DataFrame, select: str | None, lower_better: bool,
                  settings: list[str], sweep: str | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stage-2 runs of every cell whose stage 1 is complete, the selection table); `settings`
    are the runs' setting columns (config.json's), as against their measurements. With a named
    sweep, the stage-2 runs are its runs at each cell's choice (`fwbench.sweep.protocol.variant`)
    and the table covers the sweep's models."""
    proto = preset.protocol
    own, models = variant(preset, sweep)
    for other in _other_variants(preset, sweep, own):
        runs = runs[~has_settings(runs, other)]
    base = {"task": preset.task, **preset.settings}
    finals, rows = [], []
    for model in models:
        points = proto.points(str(model))
        for column in preset.grid[proto.columns]:
            cell = {**base, "model": model, proto.columns: column}
            trials = [_one_per_seed(settings, _matching(runs, {**cell, **p, **proto.select_budget},
                                              proto.select_seeds), preset, model, column, p)
                      for p in points]
            scores = [[float(v) for v in t[select]] if select in t else [math.nan] * len(t)
                      for t in trials]
            complete = all(len(t) == len(proto.select_seeds) for t in trials)
            index = choose(scores, lower_better) if complete else None
            best = _mean(scores[index]) if index is not None else math.nan
            for i, (p, t) in enumerate(zip(points, trials)):
                mean = _mean(scores[i])
                rows.append({"model": model, "column": column, "trial": i + 1,
                             "settings": label(p), "score": mean, "n": len(t),
                             "missing": len(proto.select_seeds) - len(t),
                             "delta": mean - best, "chosen": i == index,
                             "cpu_s": t["cpu_s"].sum() if "cpu_s" in t else math.nan})
            if index is not None:
                finals.append(_one_per_seed(
                    settings, _matching(runs, {**cell, **own, **points[index],
                                               **proto.final_budget}, proto.final_seeds),
                    preset, model, column, points[index]))
    final = pd.concat(finals) if finals else runs.iloc[0:0]
    return final, pd.DataFrame(rows, columns=list(COLUMNS))


def _other_variants(preset, sweep: str | None, own: dict[str, Any]) -> list[dict[str, Any]]:
    """For each other named sweep, the settings that tell its runs apart from the stage-2 runs
    of `sweep` (None: the protocol's own, `own` the settings that sweep changes), where it has
    any: the report leaves runs with all of them out, so that a preset need not pin in
    [settings] every convention its sweeps change. A setting neither names counts at its
    default where it was added after runs were recorded."""
    decided = owned(preset.protocol)
    here = {**{normalise_key(k): v for k, v in preset.settings.items()}, **own}
    out = []
    for name, table in preset.sweeps.items():
        if name == sweep:
            continue
        theirs = {normalise_key(k): v for k, v in table.get("settings", {}).items()}
        apart = {k: v for k, v in theirs.items()
                 if k not in decided and not same_value(recorded(here, k), v)}
        if apart:
            out.append(apart)
    return out


def _one_per_seed(settings: list[str], trial: pd.DataFrame, preset, model, column,
                  point: dict) -> pd.DataFrame:
    """`trial` (the runs one trial matched), refused where a seed has several: runs of other
    studies that share every setting the protocol names (say another inner-loop length S)
    would otherwise be taken for its runs. The refusal names the settings that differ."""
    if trial.empty or not trial["seed"].duplicated().any():
        return trial
    differ = [k for k in settings if k in trial.columns and k != "seed"
              and trial[k].astype(str).nunique() > 1]
    raise FwbenchError(
        f"preset {preset.name!r}: the protocol's trial ({label(point)}) of cell {model} x "
        f"{column} matches several runs for one seed, which differ in "
        f"{', '.join(sorted(differ)[:5]) or 'settings the report cannot tell'}; name that "
        "setting in the protocol's search (e.g. a single value) so that each trial is one run "
        "per seed")


def _mean(scores: list[float]) -> float:
    finite = [s for s in scores if math.isfinite(s)]
    return sum(finite) / len(finite) if finite else math.nan


def selection_rows(table: pd.DataFrame, spec: ReportSpec, columns: str,
                   select: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the selection table (strings)."""
    header = [spec.rows, columns, "trial", "settings", f"{select} (mean)", "seeds",
              "Δ to chosen", "chosen"]
    body = []
    for _, r in table.iterrows():
        seeds = f"{r['n']}" + (f" ({r['missing']} missing)" if r["missing"] else "")
        body.append([str(r["model"]), str(r["column"]), str(r["trial"]), r["settings"],
                     _num(r["score"]), seeds, "" if r["chosen"] else _num(r["delta"], sign=True),
                     "**chosen**" if r["chosen"] else ""])
    return header, body


def _num(x: float, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{x:+.4g}" if sign else f"{x:.4g}"


def selection_markdown(table: pd.DataFrame, spec: ReportSpec, preset, select: str,
                       link: str) -> str:
    """The report's stage-1 section: how the protocol chose, then the selection table."""
    proto = preset.protocol
    cpu = table["cpu_s"].sum() / 3600 if len(table) else math.nan
    budget = ", ".join(f"{k}={v}" for k, v in proto.select_budget.items())
    final = ", ".join(f"{k}={v}" for k, v in proto.final_budget.items()) or "the preset's budget"
    waiting = table.groupby(["model", "column"], sort=False)["chosen"].any()
    lines = ["## Stage 1: the search\n",
             f"Every model tries {proto.trials} settings per cell at {budget} on selection "
             f"seeds {', '.join(map(str, proto.select_seeds))}; each cell keeps the trial with "
             f"the best mean {select} (validation only; diverged or missing runs rank last), "
             f"and the tables above come from stage 2 alone: that trial at {final} on "
             f"seeds {', '.join(map(str, proto.final_seeds))}. Stage-1 CPU time: {cpu:.2f} h. "
             f"Selection table: [CSV]({link}).\n"]
    if not waiting.all():
        lines.append("Cells whose stage 1 is incomplete (no choice yet): "
                     + ", ".join(f"{m} x {c}" for (m, c), done in waiting.items() if not done)
                     + ".\n")
    edges = at_edges(table, proto)
    if edges:
        lines.append("Chosen at an edge of a searched range of three or more values, so the "
                     "search cannot say that a value beyond it, where the setting allows one, "
                     "would not do better: " + "; ".join(edges) + ".\n")
    lines.append(markdown.table(*selection_rows(table, spec, proto.columns, select)))
    return "\n".join(lines)


def at_edges(table: pd.DataFrame, proto) -> list[str]:
    """'irnn x 24: lr = 0.003, the largest of 4' for each chosen trial's numeric setting that is
    its search's smallest or largest value, where the search tried three or more."""
    out = []
    for _, row in table[table["chosen"]].iterrows():
        point = proto.points(str(row["model"]))[int(row["trial"]) - 1]
        for key, value in point.items():
            values = proto.search[str(row["model"])][key]
            if len(values) < 3 or not all(_numeric(v) for v in values):
                continue
            end = "largest" if value == max(values) else "smallest" if value == min(values) \
                else None
            if end:
                out.append(f"{row['model']} x {row['column']}: {key} = {value:g}, the {end} "
                           f"of {len(values)}")
    return out


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _title(preset, sweep: str | None) -> str:
    title = f"{preset.title or preset.name}: tuned (stage 2)"
    if sweep is None:
        return title
    changed = ", ".join(f"{k} = {v}" for k, v in preset.sweeps[sweep]["settings"].items())
    return f"{title}, sweep {sweep} ({changed}) at stage 1's choices"


def build_protocol_report(opts, into: Path | None = None
                          ) -> tuple[Path, list, Any, pd.DataFrame]:
    """The protocol report of `opts.preset` (fwbench.report.build.Options): written like
    `build_report`'s, into `into` if given, else RESULTS/report/PRESET-protocol by default."""
    from fwbench.presets import load
    from fwbench.records import atomic_write
    from fwbench.report import build, document
    from fwbench.report.command import command_line
    from fwbench.report.load import load_runs
    from fwbench.report.spec import from_preset

    if opts.preset is None or opts.sets or opts.where or opts.task:
        raise FwbenchError("--protocol reports a preset's protocol as written: give --preset "
                           "(and --sweep NAME for a sweep run at its choices), and no --set, "
                           "--where or --task")
    preset = load(opts.preset)
    if preset.protocol is None:
        raise FwbenchError(f"preset {preset.name!r} has no [protocol] to report")
    variant(preset, opts.sweep)  # a sweep the protocol cannot run is refused before any read
    loaded = load_runs(opts.results)
    spec = from_preset(preset, **opts.overrides)
    runs = loaded.runs[loaded.runs["task"] == preset.task]
    select = spec.select_key(list(runs.columns))
    if select is None:
        raise FwbenchError(f"preset {preset.name!r}: no validation key to choose on; set "
                           "[report] select")
    final, table = protocol_runs(preset, runs, select, spec.select_lower(select),
                                 loaded.config_keys, opts.sweep)
    sweep = f" --sweep {opts.sweep}" if opts.sweep else ""
    if final.empty:
        raise FwbenchError(f"no stage-2 run of preset {preset.name!r}'s protocol{sweep} in "
                           f"{loaded.root}; run `fwbench sweep --preset {preset.name} "
                           f"--protocol{sweep}` first")
    name = f"{preset.name}-protocol" + (f"-{build.slug(opts.sweep)}" if opts.sweep else "")
    out = Path(into or opts.out or Path(opts.results) / "report" / name)
    section = build.judged_section(preset.task, final, loaded, spec, preset.claims)
    section = build.write_section(section, out)
    path = out / "tables" / f"{build.slug(preset.task)}-selection.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, table.to_csv(index=False, float_format="%.6g"))
    section.tables["selection csv"] = path
    text = document.report_markdown([section], loaded, final, out,
                                    title=_title(preset, opts.sweep),
                                    command=command_line(dataclasses.replace(opts, protocol=True)))
    text += "\n" + selection_markdown(table, spec, preset, select, f"tables/{path.name}")
    atomic_write(out / "summary.csv", build.summary_csv(final, loaded))
    atomic_write(out / "report.md", text)
    written = [out / "summary.csv", out / "report.md", *section.tables.values()]
    written += [p for _, png in section.figures for p in (png, png.with_suffix(".svg"))]
    build._forget_stale(out, written)
    return out, [section], loaded, final
