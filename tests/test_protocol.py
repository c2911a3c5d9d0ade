"""The tuning protocol: its schema and equal budgets, the choice on validation, a tiny two-stage
protocol run end to end (resumed after stage 1, then idempotent), its report, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.errors import FwbenchError
from fwbench.presets import available, load
from fwbench.protocol import choose
from fwbench.sweep.protocol import protocol_cells

TOY = """task = "retrieval"
title = "toy protocol"
seeds = 2
[settings]
n_train = 256
n_valid = 64
n_test = 64
embed = 8
readout = 8
batch_size = 32
eval_batch = 64
max_steps = 12
eval_every = 4
log_every = 4
[grid]
model = ["irnn", "fastweights"]
hidden = [8]
[report]
metric = "test_error"
[protocol]
columns = "hidden"
trials = 2
select_seeds = [100]
final_seeds = [0, 1, 2, 3, 4]
select_budget = { max_steps = 8 }
[protocol.search.irnn]
lr = [1e-3, 3e-3]
[protocol.search.fastweights]
lr = [1e-3, 3e-3]
eta = [0.25, 0.5]
[[claims]]
text = "fast weights below the IRNN"
better = "fastweights"
worse = "irnn"
"""


def _preset(tmp_path: Path, text: str = TOY) -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(text)
    return path


def _cli(*args: str):
    return CliRunner().invoke(app, [*map(str, args)])


def _run_dirs(results: Path) -> dict[str, float]:
    runs = results / "runs"
    return {p.name: (p / "summary.json").stat().st_mtime for p in runs.iterdir()} \
        if runs.is_dir() else {}


def _budget(learner_cfg):
    """A run's training budget: updates (supervised) or environment steps (episodic)."""
    return getattr(learner_cfg, "max_steps", None) or learner_cfg.env_steps


def test_every_protocol_preset_gives_every_model_the_same_trials_and_updates():
    protocols = [load(name) for name in available() if load(name).protocol is not None]
    assert "table1" in [p.name for p in protocols]
    for preset in protocols:
        proto = preset.protocol
        cells = protocol_cells(preset)
        assert len(cells) == len(preset.grid["model"]) * len(preset.grid[proto.columns])
        budgets = set()
        for cell in cells:
            assert len(cell.select) == len(cell.final) == proto.trials, cell.name
            assert len({repr(p) for p in cell.points}) == proto.trials  # distinct trials
            for select, final in zip(cell.select, cell.final):
                assert [r.cfg.learner_cfg.seed for r in select] == list(proto.select_seeds)
                assert [r.cfg.learner_cfg.seed for r in final] == list(proto.final_seeds)
                budgets.add(("select", *(_budget(r.cfg.learner_cfg) for r in select)))
                budgets.add(("final", *(_budget(r.cfg.learner_cfg) for r in final)))
                assert "lr" in cell.points[0]
        assert len(budgets) == 2, budgets  # one selection budget, one final budget, for all


def test_table1_protocol_searches_what_matters_per_model():
    proto = load("table1").protocol
    assert set(proto.search["fastweights"]) >= {"lr", "lam", "eta"}
    assert set(proto.search["lstm"]) == {"lr", "forget_bias"}
    assert set(proto.search["irnn"]) == {"lr", "w_scale"}
    assert set(proto.search["alstm"]) == {"lr", "copies"}
    assert len(proto.final_seeds) >= 5 and not set(proto.select_seeds) & set(proto.final_seeds)


def test_a_large_grid_is_sampled_the_same_way_every_time(tmp_path):
    proto = load(str(_preset(tmp_path))).protocol
    draws = proto.points("fastweights")
    assert len(draws) == 2 and draws == proto.points("fastweights")
    assert draws[0] != draws[1]
    assert proto.points("irnn") == [{"lr": 1e-3}, {"lr": 3e-3}]


def test_choose_prefers_complete_then_best_then_earlier():
    assert choose([[0.3, 0.2], [0.2, 0.2], [0.1, None]], lower_better=True) == 1
    assert choose([[0.3], [0.5]], lower_better=False) == 1
    assert choose([[0.2], [0.2]], lower_better=True) == 0
    assert choose([[math.nan], [0.9]], lower_better=True) == 1
    with pytest.raises(ValueError):
        choose([], lower_better=True)


def test_protocol_runs_both_stages_resumes_after_stage_one_and_reports(tmp_path):
    preset, results = _preset(tmp_path), tmp_path / "results"
    res = _cli("sweep", "--preset", preset, "--protocol", "--stage", "1", "--results", results,
               "--quiet")
    assert res.exit_code == 0, res.output
    assert len(_run_dirs(results)) == 4  # 2 models x 1 column x 2 trials x 1 selection seed
    dry = _cli("sweep", "--preset", preset, "--protocol", "--dry-run", "--results", results)
    assert "stage 1: 4 runs: 4 done" in dry.output and "stage 2: 10 runs: 0 done" in dry.output
    res = _cli("sweep", "--preset", preset, "--protocol", "--results", results, "--quiet")
    assert res.exit_code == 0, res.output
    assert "4 finished earlier" in res.output
    first = _run_dirs(results)
    assert len(first) == 14
    again = _cli("sweep", "--preset", preset, "--protocol", "--results", results, "--quiet")
    assert again.exit_code == 0 and _run_dirs(results) == first  # nothing ran twice

    out = tmp_path / "report"
    rep = _cli("report", "--preset", preset, "--protocol", "--results", results, "--out", out)
    assert rep.exit_code == 0, rep.output
    selection = pd.read_csv(out / "tables" / "retrieval-selection.csv")
    assert len(selection) == 4 and selection.groupby("model")["chosen"].sum().tolist() == [1, 1]
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["seed"]) == sorted([0, 1, 2, 3, 4] * 2)  # stage 2 alone
    for model, runs in summary.groupby("model"):
        trials = selection[selection["model"] == model]
        best = trials.loc[trials["score"].idxmin()]
        assert best["chosen"] and runs["lr"].nunique() == 1
        assert f"lr={runs['lr'].iloc[0]:g}" in best["settings"]  # the sweep chose as the report
    text = (out / "report.md").read_text()
    assert "## Stage 1: the search" in text and "**chosen**" in text and "### Claims" in text
    assert (out / "tables" / "retrieval-claims.csv").exists()

    # another study's run that shares every setting a trial names (here S = 2 beside the
    # trials' default S = 1) is not taken for the trial's: the report refuses, naming S
    trial = selection[selection["model"] == "fastweights"].iloc[0]["settings"]
    lr, eta = (float(x.split("=")[1]) for x in trial.split(", "))
    extra = ["run", "--task", "retrieval", "--model", "fastweights", "--hidden", "8",
             "--seed", "100", "--lr", lr, "--eta", eta, "--S", "2", "--max_steps", "8",
             "--results", results, "--quiet", "--log", "none"] + [
        f"--{k}={v}" for k, v in (("n_train", 256), ("n_valid", 64), ("n_test", 64),
                                  ("embed", 8), ("readout", 8), ("batch_size", 32),
                                  ("eval_batch", 64), ("eval_every", 4), ("log_every", 4))]
    assert _cli(*extra).exit_code == 0
    rep = _cli("report", "--preset", preset, "--protocol", "--results", results, "--out", out)
    assert rep.exit_code == 2 and "matches several runs for one seed" in rep.output
    assert "differ in S;" in rep.output, rep.output


BAD = [
    (("[protocol.search.irnn]\nlr = [1e-3, 3e-3]", "[protocol.search.irnn]\nlr = [1e-3]"),
     "budgets would be unequal"),
    (("final_seeds = [0, 1, 2, 3, 4]", "final_seeds = [0, 1, 2, 3]"), "at least 5"),
    (("select_seeds = [100]", "select_seeds = [4]"), "both select_seeds and final_seeds"),
    (("lr = [1e-3, 3e-3]\n[protocol.search.f", "lr = [1e-3, 3e-3]\nmax_steps = [4, 8]\n"
      "[protocol.search.f"), "cannot be searched"),
    (("eta = [0.25, 0.5]", "etta = [0.25, 0.5]"), "unknown setting 'etta'"),
    (("eta = [0.25, 0.5]", "lam = [0.5, 1.5]"), "invalid value 1.5 for lam"),
    (("[protocol.search.irnn]\nlr", "[protocol.search.lstm]\nlr"), "one table per model"),
    (("trials = 2", "trials = 0"), "trials must be a whole number"),
]


@pytest.mark.parametrize("edit,message", BAD)
def test_a_malformed_protocol_is_one_line_exit_2_nothing_touched(tmp_path, edit, message):
    preset = _preset(tmp_path, TOY.replace(*edit))
    assert TOY.replace(*edit) != TOY
    results = tmp_path / "results"
    res = _cli("sweep", "--preset", preset, "--protocol", "--results", results)
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert "Traceback" not in res.output and not results.exists()


@pytest.mark.parametrize("args,message", [
    (["--stage", "3"], "invalid --stage 3"),
    (["--grid", "lr=1,2"], "drop --grid"),
    (["--seeds", "2"], "drop --seeds"),
    (["--hidden", "20"], "drop --set"),
])
def test_protocol_options_that_conflict(tmp_path, args, message):
    results = tmp_path / "results"
    res = _cli("sweep", "--preset", _preset(tmp_path), "--protocol", *args, "--results", results)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not results.exists()


def test_protocol_needs_a_preset_with_one(tmp_path):
    res = _cli("sweep", "--protocol", "--results", tmp_path / "r")
    assert res.exit_code == 2 and "give --preset too" in res.output
    res = _cli("sweep", "--preset", "lengthgen", "--protocol", "--results", tmp_path / "r")
    assert res.exit_code == 2 and "has no [protocol]" in res.output
    res = _cli("report", "--preset", "lengthgen", "--protocol", "--results", "results")
    assert res.exit_code == 2 and "has no [protocol]" in res.output


def test_the_eta0_control_with_identity_init_is_irnn_ln_at_s1():
    """η = 0 leaves A at 0, so with irnn-ln's W = I its one inner step is irnn-ln's step."""
    import torch

    from fwbench.config import resolve
    from fwbench.models import MODELS

    outs = []
    for name in ("fastweights-eta0-id", "irnn-ln"):
        cfg = resolve("retrieval", name, {"hidden": 6}).model_cfg
        torch.manual_seed(0)
        model = MODELS.get(name)(5, cfg).double()
        x = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(1),
                        dtype=torch.double)
        outs.append(model(x)[0])
    torch.testing.assert_close(outs[0], outs[1])
    assert resolve("retrieval", "fastweights-eta0-id").model_cfg.w_scale == 1.0
    assert "fastweights-eta0-id" in load("ablations").grid["model"]


def test_table1_dry_run_lists_stage_one_and_waits_with_stage_two(tmp_path):
    """The table1 protocol's dry run lists every stage-1 run and waits with stage 2."""
    res = _cli("sweep", "--preset", "table1", "--protocol", "--dry-run", "--results",
               tmp_path / "r")
    assert res.exit_code == 0, res.output
    proto = load("table1").protocol
    n = 12 * proto.trials * len(proto.select_seeds)
    assert f"stage 1: {n} runs: 0 done, 0 partial, {n} new" in res.output
    assert "stage 2: 0 runs" in res.output and "12 cell(s) wait for stage 1" in res.output
    assert not (tmp_path / "r").exists()


def test_a_cell_whose_every_trial_diverged_goes_on_with_its_first(tmp_path, monkeypatch):
    """fastweights-noln diverges at its first update whatever the learning rate: its cell has
    no validation score, so the first trial goes on (the choice's tie rule), not an error."""
    from fwbench.records import RunRecord, RunResult
    from fwbench.sweep import protocol as sweep_protocol

    preset = load(str(_preset(tmp_path)))
    cell = next(c for c in sweep_protocol.protocol_cells(preset) if c.model == "fastweights")
    diverged = {"status": "diverged", "diverged_step": 1, "loss": "nan"}
    monkeypatch.setattr(RunRecord, "finished",
                        lambda self, cfg: RunResult(self.run_id, "diverged", dict(diverged)))
    assert sweep_protocol.choice(preset, cell, tmp_path) == 0
    scored = iter([{"status": "completed", "best_valid_error": e} for e in (0.5, 0.2)])
    monkeypatch.setattr(RunRecord, "finished",
                        lambda self, cfg: RunResult(self.run_id, "completed", next(scored)))
    assert sweep_protocol.choice(preset, cell, tmp_path) == 1



def test_a_test_accuracy_is_chosen_on_the_validation_error_lowest_first(tmp_path, monkeypatch):
    """Supervised runs record best_valid_error, not a validation accuracy: a preset reporting
    test_accuracy (faces) chooses on that error, and the lower one wins."""
    from fwbench.records import RunRecord, RunResult
    from fwbench.report.spec import from_preset
    from fwbench.sweep import protocol as sweep_protocol

    text = TOY.replace('metric = "test_error"', 'metric = "test_accuracy"\ndirection = "higher"')
    preset = load(str(_preset(tmp_path, text)))
    spec = from_preset(preset)
    assert spec.select_key(["best_valid_error", "test_accuracy"]) == "best_valid_error"
    assert spec.select_key(["best_valid_accuracy", "best_valid_error"]) == "best_valid_accuracy"
    assert spec.select_key(["test_accuracy"]) is None  # never a test key
    assert spec.select_lower("best_valid_error") and not spec.select_lower("best_valid_accuracy")
    cell = next(c for c in sweep_protocol.protocol_cells(preset) if c.model == "irnn")
    scored = iter([{"status": "completed", "best_valid_error": e, "test_accuracy": a}
                   for e, a in ((0.2, 0.1), (0.5, 0.9))])
    monkeypatch.setattr(RunRecord, "finished",
                        lambda self, cfg: RunResult(self.run_id, "completed", next(scored)))
    assert sweep_protocol.choice(preset, cell, tmp_path) == 0  # the lower validation error


SWEEP = TOY + """[sweeps.s2]
settings = { S = 2 }
grid = { model = ["fastweights"] }
"""


def test_a_sweep_runs_at_the_protocols_choice_and_its_runs_stay_out_of_the_protocols(tmp_path):
    preset, results = _preset(tmp_path, SWEEP), tmp_path / "results"
    assert _cli("sweep", "--preset", preset, "--protocol", "--results", results,
                "--quiet").exit_code == 0
    main = tmp_path / "main"
    assert _cli("report", "--preset", preset, "--protocol", "--results", results, "--out",
                main).exit_code == 0
    before = (main / "summary.csv").read_text()
    res = _cli("sweep", "--preset", preset, "--protocol", "--sweep", "s2", "--results", results,
               "--quiet")
    assert res.exit_code == 0, res.output
    assert "stage 1: 2 runs: 2 done" in res.output and "stage 2: 5 runs: 0 done" in res.output
    assert len(_run_dirs(results)) == 14 + 5

    out = tmp_path / "s2"
    rep = _cli("report", "--preset", preset, "--protocol", "--sweep", "s2", "--results", results,
               "--out", out)
    assert rep.exit_code == 0, rep.output
    runs = pd.read_csv(out / "summary.csv")
    chosen = pd.read_csv(out / "tables" / "retrieval-selection.csv").query("chosen")
    assert set(chosen["model"]) == {"fastweights"}  # the sweep's models only
    assert sorted(runs["seed"]) == [0, 1, 2, 3, 4] and set(runs["S"]) == {2}
    assert set(runs["model"]) == {"fastweights"} and set(runs["max_steps"]) == {12}
    lr, eta = (float(x.split("=")[1]) for x in chosen["settings"].iloc[0].split(", "))
    assert set(runs["lr"]) == {lr} and set(runs["eta"]) == {eta}  # stage 1's choice
    text = (out / "report.md").read_text()
    assert "sweep s2 (S = 2) at stage 1's choices" in text
    assert "--protocol --sweep s2" in text  # the command that rebuilds it
    # the protocol's own report does not take the sweep's runs for its trials'
    assert _cli("report", "--preset", preset, "--protocol", "--results", results, "--out",
                main).exit_code == 0
    assert (main / "summary.csv").read_text() == before


@pytest.mark.parametrize("sweep,message", [
    ('settings = { lr = 1e-2 }', "sets what the protocol decides: lr (a searched setting)"),
    ('settings = { max_steps = 4 }', "sets what the protocol decides: max_steps (a budget)"),
    ('settings = { S = 2 }\ngrid = { eta = [1.0] }', "may list models only"),
    ('settings = { S = 2 }\ngrid = { model = ["lstm"] }', "has no cells for: lstm"),
])
def test_a_sweep_that_changes_what_the_protocol_decides_is_refused(tmp_path, sweep, message):
    preset = _preset(tmp_path, TOY + "[sweeps.bad]\n" + sweep + "\n")
    results = tmp_path / "results"
    for command in ("sweep", "report"):
        res = _cli(command, "--preset", preset, "--protocol", "--sweep", "bad", "--results",
                   results)
        assert res.exit_code == 2 and message in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and not results.exists()


def test_a_choice_at_the_edge_of_a_searched_range_is_named():
    from fwbench.protocol import parse
    from fwbench.report.selection import at_edges

    proto = parse({"columns": "hidden", "trials": 3, "select_seeds": [100],
                   "final_seeds": [0, 1, 2, 3, 4], "select_budget": {"max_steps": 8},
                   "search": {"irnn": {"lr": [1e-4, 1e-3, 1e-2]},
                              "lstm": {"lr": [1e-3, 1e-2], "forget_bias": [1.0, 3.0]}}},
                  {"model": ["irnn", "lstm"], "hidden": [8]}, "toy")
    points = {m: proto.points(m) for m in ("irnn", "lstm")}
    rows = [{"model": "irnn", "column": 8, "trial": i + 1, "chosen": p["lr"] == c}
            for c in (1e-2,) for i, p in enumerate(points["irnn"])]
    rows += [{"model": "lstm", "column": 8, "trial": 1, "chosen": True}]
    assert at_edges(pd.DataFrame(rows), proto) == ["irnn x 8: lr = 0.01, the largest of 3"]
    rows[0]["chosen"], rows[2]["chosen"] = True, False  # lr 1e-4: the smallest
    assert at_edges(pd.DataFrame(rows), proto) == ["irnn x 8: lr = 0.0001, the smallest of 3"]
    rows[0]["chosen"], rows[1]["chosen"] = False, True  # the middle: no edge; two values: none
    assert at_edges(pd.DataFrame(rows), proto) == []
