"""`fwbench bench`: a tiny run end to end, the ratios it reports, bad input, the table round
trip, the figures, and the measurements it relies on (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from fwbench.bench import measure
from fwbench.bench.run import BenchSpec, subject_grid
from fwbench.bench.subjects import make
from fwbench.bench.table import METRICS, read_csv, to_csv
from fwbench.cli import app

COMMON = ["--hidden", "4,6", "--batch", "2", "--input-size", "3", "--repeats", "2",
          "--warmup", "0", "--device", "cpu", "--quiet"]
TINY = COMMON + ["--seq-len", "3"]


def _invoke(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args)])


def test_tiny_bench_writes_tidy_rows_with_consistent_ratios(tmp_path):
    out = _invoke("--models", "fastweights,irnn", "--S", "1,2", *TINY, "--out", tmp_path)
    assert out.exit_code == 0, out.output
    rows = read_csv(tmp_path / "bench.csv")
    assert (tmp_path / "bench.md").read_text().count("| 3 | 4 |") == 5  # 2 refs, fw S=1,2, irnn
    assert {r.model for r in rows} == {"torch-lstm", "torch-rnn", "fastweights", "irnn"}
    assert {r.S for r in rows if r.model == "fastweights"} == {1, 2}
    assert {r.metric for r in rows} == set(METRICS) - {"peak_MB"}  # peak_MB is CUDA only
    for r in rows:
        ref = {m.model: m.value for m in rows if (m.metric, m.hidden) == (r.metric, r.hidden)}
        speed = METRICS[r.metric][1]
        expect = ref["torch-lstm"] / r.value if speed < 0 else r.value / ref["torch-lstm"]
        assert r.vs_lstm == pytest.approx(expect, rel=1e-4)
        assert r.value > 0
    fw = {r.metric: r.value for r in rows if (r.model, r.S, r.hidden) == ("fastweights", 1, 4)}
    assert fw["state_floats"] == 4 + 16 and fw["params"] == 3 * 4 + 4 + 16 + 2 * 4
    from fwbench.models.fastweights_fused import available

    expected_impl = "fused" if available(torch.zeros(1)) else "memory"
    assert {r.impl for r in rows if r.model == "fastweights"} == {expected_impl}


def test_model_settings_and_labels(tmp_path):
    out = _invoke("--models", "fastweights:impl=memory,fastweights", "--metrics", "train",
                  "--set", "lam=0.9", *TINY, "--out", tmp_path)
    assert out.exit_code == 0, out.output
    impls = {(r.model, r.impl) for r in read_csv(tmp_path / "bench.csv")}
    assert ("fastweights:impl=memory", "memory") in impls


def test_levels_run_every_model_through_its_level_path(tmp_path):
    out = _invoke("--models", "fastweights,fastweights:impl=memory,irnn", "--metrics",
                  "train,memory", "--levels", *COMMON, "--seq-len", "12", "--out", tmp_path)
    assert out.exit_code == 0, out.output
    rows = read_csv(tmp_path / "bench.csv")
    impls = {r.model: r.impl for r in rows}
    from fwbench.models.fastweights_fused import available

    fused = available(torch.zeros(1))
    assert impls["fastweights"] == ("fused FastWeights.forward_levels" if fused
                                    else "memory FastWeights.forward_levels_memory")
    assert impls["fastweights:impl=memory"] == "memory FastWeights.forward_levels_memory"
    assert impls["irnn"] == "RecurrentCore.forward_levels" and impls["torch-lstm"] == ""
    assert all(r.value > 0 for r in rows if r.metric == "train_seq_per_s")


def test_level_marks_repeat_the_quadrant_run():
    from fwbench.bench.run import level_marks
    from fwbench.tasks.glimpses import level_marks as task_marks, scheme

    assert level_marks(24) == task_marks(scheme("quadrants", 28))


def test_a_models_own_hidden_size_wins_over_the_grid(tmp_path):
    # matched state: an LSTM of 6 units (12 floats) beside a GRU of 12 units, grid hidden 4
    out = _invoke("--models", "lstm:hidden=6,gru:hidden=12,gru", "--metrics", "train,memory",
                  *TINY, "--out", tmp_path)
    assert out.exit_code == 0, out.output
    rows = read_csv(tmp_path / "bench.csv")
    state = {(r.hidden, r.model): r.value for r in rows if r.metric == "state_floats"}
    assert state[(4, "lstm:hidden=6")] == state[(6, "lstm:hidden=6")] == 12
    assert state[(4, "gru:hidden=12")] == 12 and state[(4, "gru")] == 4
    assert state[(6, "gru")] == 6
    trained = {(r.hidden, r.model) for r in rows if r.metric == "train_seq_per_s" and r.value > 0}
    assert (4, "gru:hidden=12") in trained and (6, "lstm:hidden=6") in trained


@pytest.mark.parametrize("args, message", [
    (["--models", "nope"], "unknown model 'nope'"),
    (["--models", "convnet"], "consumes image inputs"),
    (["--models", "fastweights:bogus=1"], "unknown setting 'bogus'"),
    (["--models", "fastweights:impl"], "expected NAME[:SETTING=VALUE...]"),
    (["--models", "torch-lstm:S=2"], "takes no settings"),
    (["--hidden", "0"], "invalid --hidden"),
    (["--seq-len", "x"], "invalid --seq-len"),
    (["--metrics", "speed"], "invalid --metrics"),
    (["--clock", "sundial"], "invalid --clock"),
    (["--device", "tpu"], "invalid device 'tpu'"),
    (["--models", "fastweights:impl=magic"], "expected one of auto"),
    (["--models", "irnn", "--set", "lam=0.9"], "belongs to none of the models"),
    (["--set", "lam"], "expected NAME=VALUE"),
    (["--levels"], "--seq-len 3 is not a multiple of 6"),
    (["--levels", "--startup", "retrieval"], "--levels applies to the models' bench"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    out = _invoke(*TINY, *args, "--out", tmp_path / "out")
    assert out.exit_code == 2, out.output
    assert message in " ".join(out.output.split())
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_refused_before_measuring(tmp_path):
    (tmp_path / "file").write_text("precious")
    out = _invoke("--models", "irnn", *TINY, "--out", tmp_path / "file" / "sub")
    assert out.exit_code == 2 and "not writable" in out.output
    assert (tmp_path / "file").read_text() == "precious"


def test_subject_grid_expands_S_only_where_it_exists():
    grid = subject_grid(BenchSpec(("fastweights", "irnn", "fastweights:S=4"), S=(1, 3)))
    assert grid == [("torch-lstm", None), ("torch-rnn", None), ("fastweights", 1),
                    ("fastweights", 3), ("irnn", None), ("fastweights:S=4", None)]


def test_csv_round_trip(tmp_path):
    out = _invoke("--models", "irnn", "--metrics", "train,memory", *TINY, "--out", tmp_path)
    assert out.exit_code == 0, out.output
    rows = read_csv(tmp_path / "bench.csv")
    assert to_csv(rows) == (tmp_path / "bench.csv").read_text()


def test_saved_memory_of_the_fused_path_is_linear_in_T():
    """Chunked fast weights keep O(T H + (T / L) H^2) for backward; the memory view O(T^2 H)."""
    def saved(spec, T):
        x = torch.randn(2, T, 3)
        sub = make(spec, 8, 1, 3, {}, x)
        return measure.saved_bytes(sub, x, torch.randn(2, T, 8))

    fused = make("fastweights", 8, 1, 3, {}, torch.randn(2, 4, 3)).impl == "fused"
    for spec in (["fastweights"] if fused else []) + ["fastweights:impl=chunked"]:
        assert saved(spec, 256) / saved(spec, 128) == pytest.approx(2.0, rel=0.1)
    assert saved("fastweights:impl=memory", 256) / saved("fastweights:impl=memory", 128) > 3


def test_interleaved_takes_turns_and_respects_the_budget():
    calls, now = [], [0.0]
    runs = {"slow": lambda: (calls.append("slow"), now.__setitem__(0, now[0] + 1.0)),
            "fast": lambda: (calls.append("fast"), now.__setitem__(0, now[0] + 0.1))}
    times = measure.interleaved(runs, repeats=10, warmup=1, timer=lambda: now[0], budget=3.5)
    assert len(times["slow"]) == 3 and len(times["fast"]) == 10
    assert times["slow"] == pytest.approx([1.0] * 3) and times["fast"] == pytest.approx([0.1] * 10)
    timed = calls[4:]  # after warm-up and the first timing of each
    assert timed[:6] == ["slow", "fast"] * 3


def test_plots_from_the_csv_alone(tmp_path):
    out = _invoke("--models", "fastweights", "--seq-len", "3,5", "--metrics", "train,memory",
                  *COMMON, "--out", tmp_path)
    assert out.exit_code == 0, out.output
    code = ("import sys; from fwbench.report.benchplot import plot_bench; "
            f"paths = plot_bench({str(tmp_path / 'bench.csv')!r}, {str(tmp_path / 'fig')!r}); "
            "assert 'torch' not in sys.modules; print(len(paths))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert [p.name for p in (tmp_path / "fig").iterdir()] == ["bench_scaling.png"]
    one = _invoke("--models", "irnn", "--metrics", "train", *TINY, "--out", tmp_path / "one")
    assert one.exit_code == 0, one.output
    from fwbench.report.benchplot import plot_bench

    (path,) = plot_bench(tmp_path / "one" / "bench.csv", tmp_path / "fig1")
    assert path.name == "bench_speedup_T3.png" and path.stat().st_size > 1000
