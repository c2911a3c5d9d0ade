"""The paper's claims judged on the runs: for each [[claims]] entry of a preset, the cells of
the two models it names (in each table group where both are), their difference of means with
its 95% interval (paired over shared seeds, else Welch) and a verdict.

supported: the interval lies wholly on the claimed side of 0; contradicted: wholly on the
other; inconclusive: it holds 0; not run: the runs lack a model's cell.

Each verdict is at 95% on its own. The family of a report's verdicts is also judged with
Holm's step-down correction (Holm 1979) of the same tests' two-sided p-values: a comparison
keeps its verdict when it is rejected at family-wise level 5% and becomes inconclusive
otherwise, so that the chance of any false verdict among them stays at or below 5%.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable

import pandas as pd

from fwbench.errors import FwbenchError
from fwbench.report.compare import Comparison, compare
from fwbench.report.spec import REPLICATES, ReportSpec, same_value

CurveReader = Callable[[str, str, str], pd.DataFrame]  # (run_id, split, metric) -> step, value

COLUMNS = ("claim", "group", "cell", "metric", "better", "worse", "better_mean", "worse_mean",
           "diff", "ci_low", "ci_high", "n", "test", "effect", "p_better", "verdict", "p",
           "holm", "decimals")
ALPHA = 0.05  # the family-wise level of the Holm verdicts


def verdict(c: Comparison, lower_better: bool) -> str:
    """Where the interval of mean(better) - mean(worse) lies against 0."""
    low, high = (-c.high, -c.low) if lower_better else (c.low, c.high)  # > 0: better wins
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _matches(cell: pd.Series, runs: pd.DataFrame, where: dict[str, Any], spec: ReportSpec) -> bool:
    """Whether every chosen run of the cell has the claim's settings."""
    for key, value in where.items():
        if key == spec.columns:
            if not same_value(cell["column"], value):
                return False
        elif key not in runs or not all(same_value(v, value) for v in runs.loc[cell["runs"], key]):
            return False
    return True


def _values(cell: pd.Series, runs: pd.DataFrame, metric: str, scale: float,
            read_curve: CurveReader) -> dict[Hashable, float]:
    """The cell's chosen runs' values keyed by replicate (seed, data_seed), for pairing."""
    chosen = runs.loc[cell["runs"]]
    if "/" in metric:  # the mean of a curve: its area per step, a measure of learning speed
        split, name = metric.split("/", 1)
        values = [read_curve(rid, split, name)["value"].mean() for rid in chosen.index]
    elif metric in chosen:
        values = chosen[metric].astype(float).tolist()
    else:
        raise FwbenchError(f"no run has summary key {metric!r}, which a claim compares")
    reps = [k for k in REPLICATES if k in chosen]
    keys = [tuple(None if _isnan(v) else v for v in row) for row in chosen[reps].itertuples(
        index=False)]
    if len(set(keys)) < len(keys):  # not one run per replicate: nothing to pair on
        keys = list(chosen.index)
    return {k: v * scale for k, v in zip(keys, values)}


def _one(claim, cells: pd.DataFrame, runs: pd.DataFrame, spec: ReportSpec,
         read_curve: CurveReader) -> list[dict[str, Any]]:
    """Verdict rows of one claim: one per table group holding both models' cells."""
    metric = claim.metric or spec.metric
    lower = (claim.direction or spec.direction) == "lower"
    scale = spec.scale if metric == spec.metric else 1.0
    out = []
    hits = cells[[_matches(c, runs, claim.where, spec) for _, c in cells.iterrows()]]
    for group, g in hits.groupby("group", sort=False):
        pair = [g[[same_value(r, model) for r in g["row"]]] for model in
                (claim.better, claim.worse)]
        if not all(len(p) for p in pair):
            continue
        if max(len(p) for p in pair) > 1:
            raise FwbenchError(f"claim {claim.text!r} matches {max(map(len, pair))} cells of one "
                               f"model; narrow its where, e.g. {{ {spec.columns} = "
                               f"{g['column'].iloc[0]!r} }}")
        values = [_values(p.iloc[0], runs, metric, scale, read_curve) for p in pair]
        counts = [sum(math.isfinite(v) for v in vs.values()) for vs in values]
        if min(counts) < 2:
            raise FwbenchError(f"claim {claim.text!r}: too few seeds for a verdict ({claim.better}"
                               f" {counts[0]}, {claim.worse} {counts[1]} with a {metric}; at "
                               "least 2 each)")
        c = compare(*values)
        p_better = c.p_a_higher if not lower else 1 - c.p_a_higher
        out.append({"claim": claim.text, "group": group,
                    "cell": f"{spec.columns}={pair[0].iloc[0]['column']}", "metric": metric,
                    "better": claim.better, "worse": claim.worse, "better_mean": c.mean_a,
                    "worse_mean": c.mean_b, "diff": c.diff, "ci_low": c.low, "ci_high": c.high,
                    "n": c.n, "test": c.method, "effect": c.effect, "p_better": p_better,
                    "verdict": verdict(c, lower), "p": c.p_value})
    if not out:
        out.append({"claim": claim.text, "metric": metric, "better": claim.better,
                    "worse": claim.worse, "verdict": "not run"})
    return out


def judge(claims, cells: pd.DataFrame, runs: pd.DataFrame, spec: ReportSpec,
          read_curve: CurveReader) -> pd.DataFrame:
    """One verdict row per claim and table group (columns: COLUMNS); FwbenchError for a claim
    that matches several cells of a model, or a cell with fewer than 2 seeds."""
    if not len(cells):
        return pd.DataFrame(columns=list(COLUMNS))
    by_id = runs.drop_duplicates("run_id").set_index("run_id")
    rows = [r for claim in claims for r in _one(claim, cells, by_id, spec, read_curve)]
    out = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    judged = [v != "not run" for v in out["verdict"]]
    kept = iter(holm([float(p) for p, j in zip(out["p"], judged) if j]))
    out["holm"] = [(v if next(kept) else "inconclusive") if j else "not run"
                   for v, j in zip(out["verdict"], judged)]
    out["decimals"] = decimals(spec)
    return out


def decimals(spec: ReportSpec) -> int:
    """Decimals of a difference in the report's display units: 2 for percent, else 4."""
    return 2 if spec.scale >= 10 else 4


def holm(p: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down test of a family of hypotheses: which are rejected at family-wise
    level `alpha`. The k-th smallest p (from 1) is compared with alpha / (m - k + 1), and the
    first that fails stops the rejections; a NaN p is never rejected."""
    order = sorted(range(len(p)), key=lambda i: (math.isnan(p[i]), p[i]))
    out = [False] * len(p)
    for k, i in enumerate(order):
        if math.isnan(p[i]) or p[i] > alpha / (len(p) - k):
            break
        out[i] = True
    return out


def _num(x: Any, d: int) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def rows(verdicts: pd.DataFrame, spec: ReportSpec) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the verdict table (strings), numbers in the metric's display units."""
    d = decimals(spec)
    header = ["claim", "where", "better: mean", "worse: mean", "Δ = better − worse [95% CI]", "n", "test",
              "effect d", "P(better wins)", "verdict", "p", "Holm verdict"]
    body = []
    for _, v in verdicts.iterrows():
        metric = f"mean of {v['metric']}" if v["metric"] != spec.metric else ""
        where = ", ".join(x for x in (v["group"], v["cell"], metric) if isinstance(x, str) and x)
        if v["verdict"] == "not run":
            body.append([v["claim"], where, v["better"], v["worse"], "—", "0", "—", "—", "—",
                         "not run", "—", "not run"])
            continue
        body.append([v["claim"], where, f"{v['better']} {_num(v['better_mean'], d)}",
                     f"{v['worse']} {_num(v['worse_mean'], d)}",
                     f"{v['diff']:+.{d}f} [{_num(v['ci_low'], d)}, {_num(v['ci_high'], d)}]",
                     str(int(v["n"])), v["test"], _num(v["effect"], 2), _num(v["p_better"], 2),
                     f"**{v['verdict']}**", p_text(v["p"]), f"**{v['holm']}**"])
    return header, body


def p_text(p: Any) -> str:
    """A p-value: 3 decimals, or '< 0.001'; '—' for none."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
