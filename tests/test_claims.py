"""The paper's claims as preset data, judged in the report: schema, verdicts, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.errors import FwbenchError
from fwbench.presets import available, load
from fwbench.report import Options, build_report
from test_report import flat, write_run

PRESET = """
name = "claimed"
task = "retrieval"
seeds = {seeds}
[settings]
max_steps = 100
[grid]
model = ["irnn", "lstm", "fastweights"]
hidden = [20, 50, 100]
[report]
metric = "test_error"
scale = 100
"""

CLAIMS = """
[[claims]]
text = "fast weights below the IRNN at 20"
better = "fastweights"
worse = "irnn"
where = { hidden = 20 }
[[claims]]
text = "the IRNN below fast weights at 20"
better = "irnn"
worse = "fastweights"
where = { hidden = 20 }
[[claims]]
text = "fast weights below the LSTM at 50"
better = "fastweights"
worse = "lstm"
where = { hidden = 50 }
[[claims]]
text = "fast weights below the LSTM at 100"
better = "fastweights"
worse = "lstm"
where = { hidden = 100 }
[[claims]]
text = "fast weights validate lower at 20"
better = "fastweights"
worse = "irnn"
where = { hidden = 20 }
metric = "valid/error"
"""

TEST = {("fastweights", 20): [0.10, 0.20, 0.30], ("irnn", 20): [0.60, 0.70, 0.90],
        ("fastweights", 50): [0.10, 0.30, 0.20], ("lstm", 50): [0.20, 0.10, 0.25]}


def write_preset(tmp_path, claims: str = CLAIMS, seeds: int = 3):
    path = tmp_path / "claimed.toml"
    path.write_text(PRESET.format(seeds=seeds) + claims)
    return path


@pytest.fixture
def claimed(tmp_path):
    root = tmp_path / "results"
    for (model, hidden), errors in TEST.items():
        for seed, err in enumerate(errors):
            # validation curve at the test error and 0.1 above it: mean err + 0.05
            curve = [(10, "valid", "error", err + 0.1), (20, "valid", "error", err)]
            write_run(root, flat(model, hidden, seed), {"test_error": err}, curve)
    return root, write_preset(tmp_path)


def test_every_shipped_claim_is_valid():
    claims = {name: load(name).claims for name in available()}
    assert len(claims["table1"]) == 6 and {c.worse for c in claims["table1"]} == {
        "irnn", "lstm", "alstm"}
    for name, cs in claims.items():  # every claim names two distinct models of its grid
        preset = load(name)
        models = {str(m) for m in preset.grid.get("model", [])} | {
            str(m) for sweep in preset.sweeps.values()
            for m in sweep.get("grid", {}).get("model", [])}
        for c in cs:
            assert c.better != c.worse and {c.better, c.worse} <= models, (name, c.text)
    # the paper's claims are about fast weights; only the faces ranking puts another model first
    assert {c.better for cs in claims.values() for c in cs} == {"fastweights", "convnet"}


def test_verdicts_supported_contradicted_inconclusive_not_run(claimed, tmp_path):
    root, preset = claimed
    out, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                               out=tmp_path / "rep"))
    v = sections[0].claims.set_index("claim")
    assert v["verdict"].tolist() == ["supported", "contradicted", "inconclusive", "not run",
                                     "supported"]
    fw = v.loc["fast weights below the IRNN at 20"]
    # paired over seeds 0-2: differences -50, -50, -60 percent
    assert fw["diff"] == pytest.approx(-160 / 3) and fw["n"] == 3 and fw["test"] == "paired t"
    assert fw["better_mean"] == pytest.approx(20.0) and fw["p_better"] == 1.0
    assert fw["ci_high"] < 0 < v.loc["the IRNN below fast weights at 20", "ci_low"]
    assert v.loc["fast weights validate lower at 20", "diff"] == pytest.approx(-1.6 / 3)
    md = (out / "report.md").read_text()
    assert "### Claims" in md and "| fast weights below the LSTM at 100 |" in md
    assert "| hidden=20 | fastweights 20.00 | irnn 73.33 | -53.33 [" in md
    assert "hidden=20, mean of valid/error" in md
    csv = pd.read_csv(out / "tables" / "retrieval-claims.csv")
    assert list(csv["verdict"]) == list(v["verdict"])
    # the p-value is the paired t test's; all three clear differences survive Holm over the
    # four judged comparisons (their p 0.0039 against 0.05/4, 0.05/3, 0.05/2)
    assert fw["p"] == pytest.approx(stats.ttest_rel([10, 20, 30], [60, 70, 90]).pvalue)
    assert list(csv["holm"]) == list(v["verdict"]) and "| Holm verdict |" in md


def test_holm_steps_down_and_stops_at_the_first_failure():
    from fwbench.report.claims import holm

    # sorted: 0.01 <= 0.05/4, then 0.03 > 0.05/3 stops: 0.04 is not rejected either
    assert holm([0.01, 0.04, 0.03, 0.5]) == [True, False, False, False]
    assert holm([0.001, 0.02, 0.024]) == [True, True, True]  # 0.05/3, 0.05/2, 0.05/1
    assert holm([float("nan"), 0.001]) == [False, True] and holm([]) == []
    assert holm([0.04]) == [True] and holm([0.04, 0.04]) == [False, False]


def test_a_verdict_the_family_does_not_carry_is_inconclusive_under_holm(claimed, tmp_path):
    root, preset = claimed
    # a fourth comparison, fast weights against the LSTM at 100, near the per-claim line
    for seed, (fw, lstm) in enumerate([(0.10, 0.17), (0.12, 0.15), (0.10, 0.16)]):
        write_run(root, flat("fastweights", 100, seed), {"test_error": fw})
        write_run(root, flat("lstm", 100, seed), {"test_error": lstm})
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    row = sections[0].claims.set_index("claim").loc["fast weights below the LSTM at 100"]
    assert row["verdict"] == "supported" and 0.0125 < row["p"] < 0.05
    assert row["holm"] == "inconclusive"


def test_the_p_value_and_the_interval_agree():
    from fwbench.report.compare import compare

    rng = np.random.default_rng(0)
    for n, shared in ((3, True), (5, True), (4, False)):
        for _ in range(50):
            a, b = rng.normal(0, 1, n), rng.normal(0.8, 1, n)
            keys_b = range(n) if shared else range(n, 2 * n)
            c = compare(dict(enumerate(a)), dict(zip(keys_b, b)))
            assert (c.p_value < 0.05) == (c.high < 0 or c.low > 0)


def test_claims_are_judged_in_each_group_of_the_tables(claimed, tmp_path):
    root, preset = claimed
    for seed, (fw, irnn) in enumerate([(0.5, 0.1), (0.6, 0.2), (0.7, 0.1)]):
        budget = {"max_steps": 200}  # a second group, in which the IRNN wins
        for model, err in (("fastweights", fw), ("irnn", irnn)):
            write_run(root, flat(model, 20, seed, **budget), {"test_error": err},
                      [(10, "valid", "error", err)])
    preset.write_text(preset.read_text().replace("max_steps = 100", "")
                      + "[sweeps.budget]\ngrid = { max_steps = [100, 200] }\n")
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    v = sections[0].claims
    first = v[v["claim"] == "fast weights below the IRNN at 20"]
    assert list(first["group"]) == ["max_steps=100", "max_steps=200"]
    assert list(first["verdict"]) == ["supported", "contradicted"]


def test_unshared_seeds_are_compared_unpaired(claimed, tmp_path):
    root, preset = claimed
    for seed in (5, 6):
        write_run(root, flat("lstm", 100, seed), {"test_error": 0.5})
    for seed in (7, 8):
        write_run(root, flat("fastweights", 100, seed), {"test_error": 0.1 * seed - 0.6})
    _, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                             out=tmp_path / "rep"))
    row = sections[0].claims.set_index("claim").loc["fast weights below the LSTM at 100"]
    assert row["test"] == "Welch t" and row["diff"] == pytest.approx(-35.0)


@pytest.mark.parametrize("claim, message", [
    ('[[claims]]\ntext = "x"\nbetter = "fastweights"\n', "missing ['worse']"),
    ('[[claims]]\ntext = "x"\nbetter = "lstm"\nworse = "irnn"\nwhere = 20\n', "where must be"),
    ('[[claims]]\ntext = "x"\nbetter = "lstm"\nworse = "lstm"\n', "both 'lstm'"),
    ('[[claims]]\ntext = "x"\nbetter = "lstm"\nworse = "irnn"\nsign = 1\n', "unknown keys"),
    ('[[claims]]\ntext = "x"\nbetter = "lstm"\nworse = "irnn"\ndirection = "up"\n',
     "direction must be"),
    ('claims = 3\n', "must be [[claims]] tables"),
    ('[[claims]]\ntext = "x"\nbetter = "gru"\nworse = "irnn"\n', "unknown model 'gru'"),
    ('[[claims]]\ntext = "x"\nbetter = "lstm"\nworse = "irnn"\nwhere = { hidden = 30 }\n',
     "no grid of the preset has hidden = 30"),
])
def test_bad_claims_are_one_line_errors_and_nothing_is_written(claimed, tmp_path, claim,
                                                               message):
    root, _ = claimed
    preset = tmp_path / "bad.toml"
    top = claim.startswith("claims =")  # a top-level key, not a table
    preset.write_text(claim + PRESET.format(seeds=3) if top else PRESET.format(seeds=3) + claim)
    with pytest.raises(FwbenchError, match="claim"):
        load(str(preset))
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--preset", str(preset),
                                   "--out", str(tmp_path / "rep")])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "rep").exists()


def test_too_few_seeds_for_a_verdict(claimed, tmp_path):
    root, preset = claimed
    with pytest.raises(FwbenchError, match="too few seeds for a verdict"):
        load(str(write_preset(tmp_path, seeds=1)))  # the preset can never judge it
    write_preset(tmp_path)
    write_run(root, flat("lstm", 100, 0), {"test_error": 0.2})  # one seed in a claimed cell
    write_run(root, flat("fastweights", 100, 0), {"test_error": 0.1})
    res = CliRunner().invoke(app, ["report", "--results", str(root), "--preset", str(preset),
                                   "--out", str(tmp_path / "rep")])
    assert res.exit_code == 2 and "too few seeds for a verdict" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()


def test_a_claim_matching_several_cells_of_a_model_is_an_error(claimed, tmp_path):
    root, _ = claimed
    preset = write_preset(tmp_path, '[[claims]]\ntext = "x"\nbetter = "fastweights"\n'
                                    'worse = "lstm"\n')  # fast weights at 20 and at 50
    with pytest.raises(FwbenchError, match="matches 2 cells of one model; narrow its where"):
        build_report(Options(results=root, preset=str(preset), out=tmp_path / "rep"))
    assert not (tmp_path / "rep").exists()


def test_a_report_holding_none_of_the_claims_cells_has_no_claims_section(claimed, tmp_path):
    root, preset = claimed
    out, sections, _, _ = build_report(Options(results=root, preset=str(preset),
                                               where=("model=fastweights",),
                                               out=tmp_path / "rep"))
    assert sections[0].claims is None
    assert "### Claims" not in (out / "report.md").read_text()
    assert not (out / "tables" / "retrieval-claims.csv").exists()


def test_the_scorecard_gathers_every_reports_verdicts_and_rebuilds(claimed, tmp_path):
    root, preset = claimed
    build_report(Options(results=root, preset=str(preset)))  # into RESULTS/report/claimed
    res = CliRunner().invoke(app, ["report", "--scorecard", "--results", str(root)])
    assert res.exit_code == 0, res.output
    out = root / "report" / "scorecard"
    claims = pd.read_csv(root / "report" / "claimed" / "tables" / "retrieval-claims.csv")
    card = pd.read_csv(out / "scorecard.csv")
    assert list(card["claim"]) == list(claims["claim"]) and set(card["report"]) == {"claimed"}
    assert list(card["verdict"]) == list(claims["verdict"])
    assert list(card["holm"]) == list(claims["holm"])
    assert card["diff"].iloc[0] == pytest.approx(claims["diff"].iloc[0], rel=1e-5)
    text = (out / "report.md").read_text()
    assert f"Built by `fwbench report --scorecard --results {root}`" in text
    assert "[claimed](../claimed/report.md)" in text and "| -53.33 [" in text  # 2 decimals: %
    assert ("Comparisons: 5; verdicts 2 supported, 1 contradicted, 1 inconclusive, 1 not run"
            in text)
    # the scorecard rebuilds from its own command, and a changed verdict shows as a difference
    check = CliRunner().invoke(app, ["report", "--check", "--out", str(out)])
    assert check.exit_code == 0 and "1 of 1 report(s) rebuild unchanged" in check.output
    write_run(root, flat("lstm", 100, 0), {"test_error": 0.9})
    write_run(root, flat("lstm", 100, 1), {"test_error": 0.8})
    write_run(root, flat("fastweights", 100, 0), {"test_error": 0.1})
    write_run(root, flat("fastweights", 100, 1), {"test_error": 0.2})
    build_report(Options(results=root, preset=str(preset)))
    check = CliRunner().invoke(app, ["report", "--check", "--out", str(out)])
    assert check.exit_code == 1 and "scorecard.csv" in check.output


@pytest.mark.parametrize("args, message", [
    (["--preset", "table1"], "drop --preset"),
    (["--protocol"], "drop --protocol"),
    (["--metric", "test_error"], "drop --metric"),
])
def test_the_scorecard_takes_no_selection(claimed, args, message):
    root, _ = claimed
    res = CliRunner().invoke(app, ["report", "--scorecard", "--results", str(root), *args])
    assert res.exit_code == 2 and message in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (root / "report").exists()


def test_a_scorecard_with_no_reports_or_no_claims_is_refused(claimed):
    root, _ = claimed
    res = CliRunner().invoke(app, ["report", "--scorecard", "--results", str(root)])
    assert res.exit_code == 2 and "no reports in" in res.output
    build_report(Options(results=root))  # a report without claims
    res = CliRunner().invoke(app, ["report", "--scorecard", "--results", str(root)])
    assert res.exit_code == 2 and "judges claims" in res.output
    assert not (root / "report" / "scorecard").exists()
