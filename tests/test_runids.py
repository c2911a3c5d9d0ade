"""`fwbench run` on a finished run: reported from the remembered request without torch, the
same text as the usual path; anything else (new code, another request, --force, a damaged or
foreign cache) takes the usual path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fwbench import listing, runids
from fwbench.cli import app
from torchless import invoke_without_torch

runner = CliRunner()
ARGS = ["run", "--task", "retrieval", "--model", "irnn", "--hidden", "8", "--max_steps", "4",
        "--eval_every", "2", "--n_train", "256", "--n_valid", "128", "--n_test", "128",
        "--log", "none", "--quiet"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A cache directory and a results root of this test's own."""
    monkeypatch.setenv("FWBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "results"


def _run(results, *extra):
    res = runner.invoke(app, [*ARGS, "--results", str(results), *extra], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_resolved_request_is_remembered_with_its_id_and_config(env):
    _run(env)
    settings = {"hidden": "8", "max_steps": "4", "eval_every": "2", "n_train": "256",
                "n_valid": "128", "n_test": "128"}
    run_id, config = runids.lookup("retrieval", "irnn", settings)
    saved = json.loads((env / "runs" / run_id / "config.json").read_text())
    assert saved["config"] == config
    assert runids.lookup("retrieval", "irnn", {**settings, "hidden": "9"}) is None


def test_a_finished_run_is_reported_without_torch(env):
    first = _run(env)
    again = _run(env)
    assert "already finished (completed)" in again
    assert again.splitlines()[-1] == first.splitlines()[-1]  # the same result line
    ((code, out),) = invoke_without_torch([*ARGS, "--results", str(env)], width=200)
    assert code == 0 and out.strip() == again.strip()


def test_new_code_or_a_damaged_cache_takes_the_usual_path(env, monkeypatch):
    _run(env)
    path = runids.cache_path()
    monkeypatch.setattr(listing, "source_key", lambda: "other code")
    assert runids.lookup("retrieval", "irnn", {"hidden": "8"}) is None
    monkeypatch.undo()
    monkeypatch.setenv("FWBENCH_CACHE", str(path.parent))
    for damaged in ("{not json", json.dumps({"code": listing.source_key(), "runs": [1]}),
                    json.dumps({"code": listing.source_key(), "runs": {
                        runids.request_key("retrieval", "irnn", {}): {"run_id": "../x",
                                                                      "config": {}}}})):
        path.write_text(damaged)
        assert runids.lookup("retrieval", "irnn", {}) is None
        assert "already finished" in _run(env)  # resolved the usual way, and remembered again
        assert json.loads(path.read_text())["code"] == listing.source_key()


def test_a_remembered_config_that_differs_from_the_run_takes_the_usual_path(env):
    """The cache only names a directory: a wrong entry never makes a sound run look corrupted,
    and a damaged run is still refused (by the usual path)."""
    first = _run(env)
    path = runids.cache_path()
    data = json.loads(path.read_text())
    (entry,) = data["runs"].values()
    entry["config"]["model_settings"]["hidden"] = 9
    path.write_text(json.dumps(data))
    assert _run(env).splitlines()[-1] == first.splitlines()[-1]
    summary = env / "runs" / entry["run_id"] / "summary.json"
    summary.write_text(summary.read_text().replace("completed", "complete"))
    res = runner.invoke(app, [*ARGS, "--results", str(env)], terminal_width=200)
    assert res.exit_code == 2 and "corrupted" in res.output


def test_force_and_a_cuda_device_take_the_usual_path(env, monkeypatch):
    _run(env)
    called = []
    monkeypatch.setattr(runids, "lookup", lambda *a: called.append(a))
    assert "run record" in _run(env, "--force")
    res = runner.invoke(app, [*ARGS, "--results", str(env), "--device", "cuda:7"])
    assert res.exit_code == 2 and "cuda" in res.output.lower()
    assert called == []
    _run(env)
    assert len(called) == 1


def test_the_cache_keeps_the_newest_requests(env, monkeypatch):
    monkeypatch.setattr(runids, "MAX_ENTRIES", 3)
    for h in range(5):
        runids.remember("retrieval", "irnn", {"hidden": str(h)}, f"id{h}", {})
    runs = json.loads(runids.cache_path().read_text())["runs"]
    assert [e["run_id"] for e in runs.values()] == ["id2", "id3", "id4"]
    runids.remember("retrieval", "irnn", {"hidden": "2"}, "id2", {})  # asked again: newest
    runs = json.loads(runids.cache_path().read_text())["runs"]
    assert [e["run_id"] for e in runs.values()] == ["id3", "id4", "id2"]
