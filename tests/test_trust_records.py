"""Damage is detected, not believed: code in a checkpoint, flipped bytes, lost metric rows,
edited records, a full disk; and a run resumes with the thread count it started with."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from trust_harness import TINY, measurements

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.learners import supervised
from fwbench.records import RunRecord
from fwbench.report.load import load_runs
from fwbench.runner import Execution, run_experiment


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CutAt(supervised.TrainProgress):
    def update(self, step, **fields):
        if step == 30:
            raise KeyboardInterrupt


def _run(cfg, results, **kw):
    return run_experiment(cfg, Execution(results=results, device="cpu", progress=False, **kw))


@pytest.fixture
def cut(tmp_path, monkeypatch):
    """(config, an uninterrupted run's directory, the record of a run cut at step 30)."""
    cfg = resolve("retrieval", "irnn", TINY)
    whole = _run(cfg, tmp_path / "whole", threads=1).path
    monkeypatch.setattr(supervised, "TrainProgress", _CutAt)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "cut", threads=1)
    monkeypatch.undo()
    return cfg, whole, RunRecord.at(tmp_path / "cut", cfg.run_id)


def test_a_checkpoint_holding_code_is_refused_and_nothing_runs(cut, tmp_path):
    cfg, _, rec = cut
    marker = tmp_path / "payload-ran"
    buf = io.BytesIO()
    torch.save({"model": _Payload(marker)}, buf)
    rec.write_sealed(rec.checkpoint_path, buf.getvalue())  # its checksum forged as well
    files = lambda: {p.name: p.read_bytes() for p in rec.path.iterdir()  # noqa: E731
                     if p.is_file()}  # config.json too: a refused resume is not noted
    before = files()
    args = [sys.executable, "-m", "fwbench", "run", "--quiet", "--results",
            str(rec.path.parent.parent), "--model", "irnn"] + [f"--{k}={v}"
                                                               for k, v in TINY.items()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "checkpoint.pt holds objects other than tensors; refused" in proc.stderr
    assert str(rec.path) in proc.stderr
    assert files() == before


def _flip(path, at=-200):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda r: _flip(r.checkpoint_path), "checkpoint.pt does not match its recorded sha256"),
    (lambda r: _flip(r.best_path), "best.pt does not match its recorded sha256"),
    (lambda r: r.metrics_path.unlink(), "metrics.csv truncated: checkpoint.pt covers"),  # deleted
    (lambda r: r.metrics_path.write_text(r.metrics_path.read_text()[:-60]),
     "metrics.csv truncated"),
    (lambda r: r.metrics_path.write_text(r.metrics_path.read_text().replace(",train,", ",valid,")),
     "metrics.csv changed"),
])
def test_a_damaged_partial_run_is_refused_not_resumed(cut, damage, message):
    cfg, _, rec = cut
    damage(rec)
    config = rec.config_path.read_bytes()
    with pytest.raises(FwbenchError, match=message):
        _run(cfg, rec.path.parent.parent)
    assert rec.config_path.read_bytes() == config  # no resumption noted


def test_an_edited_summary_or_config_is_not_believed(cut):
    cfg, whole, _ = cut
    rec = RunRecord(whole)
    summary = json.loads(rec.summary_path.read_text())
    rec.summary_path.write_text(json.dumps({**summary, "test_error": 0.0}))
    with pytest.raises(FwbenchError, match="summary.json does not match"):
        _run(cfg, whole.parent.parent)
    root = whole.parent.parent
    assert "summary.json does not match" in dict(load_runs(root).skipped)[whole.name]
    rec.summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    saved = json.loads(rec.config_path.read_text())
    rec.config_path.write_text(json.dumps({**saved, "flat": {**saved["flat"], "hidden": 99}}))
    assert "flat settings differ from its config" in dict(load_runs(root).skipped)[whole.name]


@pytest.mark.parametrize("damage, why", [
    (lambda p: (p / "metrics.csv").unlink(), "metrics.csv missing"),
    (lambda p: (p / "metrics.csv").write_bytes(b"\x00\xff garbage"), "metrics.csv garbled"),
])
def test_report_skips_and_names_a_finished_run_without_its_metrics(cut, damage, why):
    _, whole, _ = cut
    (whole / "checksums.json").unlink()  # as a run recorded before checksums
    damage(whole)
    assert dict(load_runs(whole.parent.parent).skipped)[whole.name].startswith(f"damaged: {why}")


def test_a_run_resumes_with_the_threads_it_started_with(cut):
    cfg, whole, rec = cut
    (rec.path / ".metrics.csv.x1.tmp").write_text("left by a kill")
    out = _run(cfg, rec.path.parent.parent, threads=2)
    assert measurements(rec.path) == measurements(whole)
    assert json.loads(rec.config_path.read_text())["resumed"][0]["threads"] == 1
    assert not list(rec.path.glob(".*.tmp"))


def test_a_full_disk_leaves_a_record_that_resumes_identically(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cfg = resolve("retrieval", "irnn", {**TINY, "hidden": 64, "embed": 32})
        whole = _run(cfg, tmp_path / "whole", threads=1).path
        filler = mnt / "filler"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        filler.write_bytes(b"\0" * (free - 120_000))  # room for part of the run only
        with pytest.raises(OSError):
            _run(cfg, mnt / "results", threads=1)
        filler.unlink()
        run = mnt / "results" / "runs" / cfg.run_id
        assert not list(run.glob(".*.tmp"))
        _run(cfg, mnt / "results", threads=1)
        assert measurements(run) == measurements(whole)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
