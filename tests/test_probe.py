"""The memory probe: targets from the tasks, a read-out that can fail and succeed, end to end on
tiny Catch and retrieval runs, and bad input refused before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from fwbench import probe
from fwbench.cli import app
from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.runner import Execution, run_experiment
from fwbench.tasks.catch import Catch, CatchConfig
from fwbench.tasks.retrieval import Retrieval, RetrievalConfig, encode

CATCH = {"N": 24, "M": 2, "hidden": 16, "n_envs": 4, "env_steps": 92, "eval_every": 1000,
         "eval_episodes": 8}


def _run(task, model, over, results):
    cfg = resolve(task, model, over)
    return run_experiment(cfg, Execution(results=results, device="cpu", progress=False))


def test_catch_targets_the_ball_column_at_blind_steps_only():
    task = Catch(CatchConfig(N=5, M=2))
    env = task.batched([1, 2, 3])
    env.reset()
    seen = []
    for _ in range(task.episode_length):
        seen.append(task.probe_targets("ball_column", env))
        env.step(torch.ones(3, dtype=torch.long))
    assert all((s == -1).all() for s in seen[:2])
    assert all(torch.equal(s, seen[2]) for s in seen[2:]) and (seen[2] >= 0).all()


def test_retrieval_targets_the_queried_and_the_first_value():
    task = Retrieval(RetrievalConfig(n_train=1, n_valid=1, n_test=1))
    x, y = encode("c9k8j3f1??k")[None], torch.tensor([8])
    assert task.probe_targets("query_value", x, y).tolist() == [[-1] * 10 + [8]]
    assert task.probe_targets("first_value", x, y).tolist() == [[-1] + [9] * 10]


def test_read_out_fails_on_noise_and_succeeds_on_the_answer():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (400, 3), generator=g)
    labels[:, 0] = -1  # no target at step 0
    noise = torch.randn(400, 3, 20, generator=g)
    answer = torch.nn.functional.one_hot(labels.clamp(min=0), 6).float() \
        + 0.1 * torch.randn(400, 3, 6, generator=g)
    bad, good = probe.per_step(noise, labels), probe.per_step(answer, labels)
    assert [s["step"] for s in bad] == [1, 2]
    assert all(s["accuracy"] < 0.3 for s in bad)  # chance is 1/6
    assert all(s["accuracy"] > 0.98 for s in good)


def test_catch_end_to_end_untrained_forgets_and_the_answer_is_found(tmp_path, monkeypatch):
    out = _run("catch", "lstm", CATCH, tmp_path)
    entry = probe.probe_run(out.path, examples=300)
    steps = {s["step"]: s for s in entry["steps"]}
    assert sorted(steps) == list(range(2, 23))  # the blind steps of a 23-step episode
    assert steps[2]["accuracy"] > steps[2]["chance"] + 0.2  # the last frame is still there
    late = steps[22]
    assert late["accuracy"] < late["chance"] + 0.15  # an untrained core has forgotten
    real = probe.collect_episodic

    def given_the_answer(*args):  # a state that holds the ball's column one-hot
        feats, labels = real(*args)
        return torch.nn.functional.one_hot(labels.clamp(min=0), 24).float(), labels

    monkeypatch.setattr(probe, "collect_episodic", given_the_answer)
    again = probe.probe_run(out.path, features="state", examples=300)
    assert all(s["accuracy"] > 0.97 for s in again["steps"])
    saved = json.loads((out.path / "probe.json").read_text())["probes"]
    assert [(e["features"]) for e in saved] == ["output", "state"]  # both kept


def test_init_weights_are_the_seeds_untrained_network_recorded_beside_the_trained(tmp_path):
    from fwbench.config import from_dict
    from fwbench.records import RunRecord

    out = _run("catch", "fastweights", {**CATCH, "env_steps": 400}, tmp_path)
    record = RunRecord(out.path)
    cfg = from_dict(record.read_config()["config"])
    task = Catch(cfg.task_cfg)
    torch.manual_seed(12345)  # the global generator's state must not matter
    init = probe.load_weights(record, "init", "agent", cfg, task)
    again = probe.load_weights(record, "init", "agent", cfg, task)
    best = probe.load_weights(record, "best", "agent", cfg, task)
    assert init.keys() == best.keys()
    assert all(torch.equal(init[k], again[k]) for k in init)  # rebuilt from the run's seed
    assert any(not torch.equal(init[k], best[k]) for k in init)  # training moved the weights
    probe.probe_run(out.path, weights="init", examples=60)
    probe.probe_run(out.path, examples=60)
    saved = json.loads((out.path / "probe.json").read_text())["probes"]
    assert [e["weights"] for e in saved] == ["init", "best"]


def test_retrieval_end_to_end_with_the_state(tmp_path, tiny):
    out = _run("retrieval", "fastweights", tiny, tmp_path)
    entry = probe.probe_run(out.path, target="first_value", features="state", examples=60)
    assert [s["step"] for s in entry["steps"]] == list(range(1, 11))
    assert all(0.0 <= s["accuracy"] <= 1.0 and s["n_test"] == 18 for s in entry["steps"])
    query = probe.probe_run(out.path, target="query_value", examples=60)
    assert [s["step"] for s in query["steps"]] == [10]


def test_cli_probes_skips_what_is_done_and_refuses_bad_targets(tmp_path):
    out = _run("catch", "irnn", CATCH, tmp_path)
    rid, runner = out.path.name, CliRunner()
    before = sorted(p.name for p in out.path.iterdir())
    bad = runner.invoke(app, ["probe", "--results", str(tmp_path), "--run", rid,
                              "--target", "paddle"])
    assert bad.exit_code == 2 and "no probe target 'paddle'" in bad.output
    assert "Traceback" not in bad.output
    assert sorted(p.name for p in out.path.iterdir()) == before  # nothing touched
    for args, says in ((["--features", "gates"], "features"), ([], "exactly one")):
        res = runner.invoke(app, ["probe", "--results", str(tmp_path), *args])
        assert res.exit_code == 2 and says in res.output
    ok = runner.invoke(app, ["probe", "--results", str(tmp_path), "--run", rid,
                             "--examples", "40"])
    assert ok.exit_code == 0 and "ball_column accuracy by step" in ok.output
    again = runner.invoke(app, ["probe", "--results", str(tmp_path), "--run", rid])
    assert again.exit_code == 0 and "already probed" in again.output


def test_a_task_without_probe_targets_is_refused():
    with pytest.raises(FwbenchError, match="defines no probe targets"):
        probe.check_target("mnist", None)


def test_report_shows_probe_accuracy_per_model_and_step(tmp_path):
    for model in ("irnn", "lstm"):
        out = _run("catch", model, CATCH, tmp_path)
        probe.probe_run(out.path, examples=40)
    res = CliRunner().invoke(app, ["report", "--results", str(tmp_path), "--metric",
                                   "eval_catch_rate", "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "### Memory probe" in text and "ball_column decoded from the output" in text
    table = (tmp_path / "rep" / "tables" / "catch-probe.csv").read_text().splitlines()
    assert len(table) == 1 + 2 * 21  # two models, the 21 blind steps each


def test_a_protocol_presets_runs_are_probed_at_every_searched_value(tmp_path):
    """A protocol preset pins lr = 1e-3 in its settings and searches it: its runs at the other
    learning rates the protocol chose are the preset's runs too, and only those of its grid."""
    preset = tmp_path / "toy_catch.toml"
    preset.write_text("""name = "toy_catch"
task = "catch"
seeds = 1
[settings]
N = 24
M = 2
hidden = 16
n_envs = 4
env_steps = 92
eval_every = 1000
eval_episodes = 8
lr = 0.001
[grid]
model = ["irnn"]
N = [24]
[protocol]
columns = "N"
trials = 2
select_seeds = [100]
final_seeds = [0, 1, 2, 3, 4]
select_budget = { env_steps = 46 }
[protocol.search.irnn]
lr = [0.001, 0.003]
""")
    chosen = _run("catch", "irnn", {**CATCH, "hidden": 16, "lr": 0.003}, tmp_path)
    other = _run("catch", "irnn", {**CATCH, "hidden": 16, "M": 3}, tmp_path)  # not its grid
    todo, _ = probe.plan(tmp_path, None, str(preset), None, "output", "best", 100)
    assert [p.name for p, _ in todo] == [chosen.path.name] != [other.path.name]
