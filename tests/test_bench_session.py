"""`fwbench bench` and `fwbench show` from Python: the library functions the commands call."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fwbench.bench.run import BenchSpec
from fwbench.bench.session import Machine, bench_env, bench_models
from fwbench.bench.table import read_csv
from fwbench.errors import FwbenchError
from fwbench.show import show_glimpses


def test_bench_models_writes_rows_and_provenance(tmp_path):
    spec = BenchSpec(("irnn",), hidden=(4,), seq_len=(3,), batch=2, input_size=3, repeats=2,
                     warmup=-1, metrics=("train",), clock="auto", settings=(("lam", "0.9"),))
    with pytest.raises(FwbenchError, match="belongs to none of the models irnn"):
        bench_models(spec, Machine("cpu", 1, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    done = bench_models(BenchSpec(**{**spec.__dict__, "settings": ()}),
                        Machine("cpu", 1, tmp_path / "out"))
    assert [p.name for p in done.paths] == ["bench.csv", "bench.md", "meta.json"]
    assert {r.model for r in read_csv(done.out / "bench.csv")} == {"irnn", "torch-lstm",
                                                                    "torch-rnn"}
    meta = json.loads((done.out / "meta.json").read_text())
    assert meta["spec"]["clock"] == "cpu" and meta["spec"]["warmup"] == 0  # resolved, clamped
    assert meta["environment"]["device"] == "cpu" and "fused" in meta["kernel"]


def test_bench_env_from_python(tmp_path):
    done = bench_env("catch:N=4:M=2", ("irnn",), (3,), n_envs=2, repeats=2, warmup=0,
                     machine=Machine("cpu", 1, tmp_path))
    assert {r.subject for r in done.rows} == {"gymnasium", "batched", "a2c-replay:irnn",
                                              "a2c-steps:irnn"}
    assert json.loads((tmp_path / "meta.json").read_text())["spec"]["rules"]["N"] == 4
    with pytest.raises(FwbenchError, match="invalid value 2 for N"):
        bench_env("catch:N=2", ("irnn",), (3,), 2, machine=Machine("cpu", 1, tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_show_glimpses_from_python(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "faces" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(
                tmp_path / "faces" / name / f"{i}.png")
    settings = {"dataset": "folder", "faces-dir": str(tmp_path / "faces"), "size": "16"}
    path = show_glimpses("faces", settings, tmp_path / "g.png", index=0, split="train")
    with Image.open(path) as img:
        assert img.format == "PNG"
    with pytest.raises(FwbenchError, match="invalid --index 99"):
        show_glimpses("faces", settings, tmp_path / "h.png", index=99)
    assert not (tmp_path / "h.png").exists()
