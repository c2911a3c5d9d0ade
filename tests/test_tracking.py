"""TensorBoard event files mirror metrics.csv, read back with TensorBoard's own reader; a resumed
run shows no scalar twice; `--log none` writes none; sweeps pass the option on."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.config import resolve
from fwbench.learners import supervised
from fwbench.records import RunRecord
from fwbench.runner import Execution, run_experiment

runner = CliRunner()


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (orphaned scalars purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _csv(run_dir) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for r in RunRecord(run_dir).read_metrics():
        out.setdefault(f"{r['split']}/{r['metric']}", []).append((int(r["step"]),
                                                                  float(r["value"])))
    return out


def _assert_mirrors(run_dir) -> None:
    tb, csv = _scalars(run_dir), _csv(run_dir)
    assert sorted(tb) == sorted(csv) and "valid/error" in tb and "test/error" in tb
    for tag, rows in csv.items():
        assert [s for s, _ in tb[tag]] == [s for s, _ in rows], tag
        assert [v for _, v in tb[tag]] == pytest.approx([v for _, v in rows], rel=1e-6)  # float32


def _run(cfg, results, **kw):
    return run_experiment(cfg, Execution(results=results, device="cpu", progress=False, **kw))


def test_every_metric_row_is_a_scalar(tiny, tmp_path):
    out = _run(resolve("retrieval", "irnn", tiny), tmp_path)
    _assert_mirrors(out.path)


class _InterruptAt(supervised.TrainProgress):
    def update(self, step, **fields):
        if step == 6:  # after the checkpoint at step 4: rows of steps 5-6 are dropped on resume
            raise KeyboardInterrupt


def test_a_resumed_run_shows_no_scalar_twice(tiny, tmp_path, monkeypatch):
    cfg = resolve("retrieval", "irnn", {**tiny, "log_every": 1})
    monkeypatch.setattr(supervised, "TrainProgress", _InterruptAt)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path)
    monkeypatch.undo()
    # TensorBoard reads a run's event files in name order, and a name starts with the second it
    # was opened in: a resume is a later process, so a later second (within one second and one
    # process the order would fall to a counter compared as text)
    time.sleep(1.1)
    out = _run(cfg, tmp_path)
    assert len(list((out.path / "tb").iterdir())) == 2  # one event file per session
    _assert_mirrors(out.path)


def test_log_none_writes_no_event_files(tiny, tmp_path):
    out = _run(resolve("retrieval", "irnn", tiny), tmp_path, log="none")
    assert out.status == "completed" and not (out.path / "tb").exists()


def test_an_unknown_tracker_is_one_line_and_touches_nothing(tmp_path):
    for cmd in ("run", "sweep"):
        res = runner.invoke(app, [cmd, "--log", "wandb", "--results", str(tmp_path / "r")])
        assert res.exit_code == 2 and "invalid --log 'wandb'" in res.output
        assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_sweep_passes_the_tracker_to_each_run(tiny, tmp_path):
    sets = [f"--set={k}={v}" for k, v in tiny.items() if k != "hidden"]
    args = ["sweep", "--model", "irnn", "--grid", "hidden=4,8", "--results", str(tmp_path),
            "--device", "cpu", "--quiet", *sets]
    res = runner.invoke(app, [*args, "--log", "none"])
    assert res.exit_code == 0, res.output
    assert all(not (d / "tb").exists() for d in (tmp_path / "runs").iterdir())
    res = runner.invoke(app, [*args, "--grid", "seed=1"])  # new runs, the default tracker
    assert res.exit_code == 0, res.output
    made = [d for d in (tmp_path / "runs").iterdir() if (d / "tb").is_dir()]
    assert len(made) == 2
    for d in made:
        _assert_mirrors(d)
