"""The glimpse-MNIST task: the fixed split, its inputs, and every model training on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fwbench.config import resolve
from fwbench.data import mnist
from fwbench.data.idx import write_idx
from fwbench.errors import FwbenchError
from fwbench.models import MODELS as REGISTERED
from fwbench.network import build_task
from fwbench.runner import Execution, run_experiment

N_TRAIN, N_TEST = 5_000 + 240, 16
MODELS = REGISTERED.names()  # every model, recurrent ones on glimpses, convnet on images


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """The four IDX files of a small MNIST look-alike: 5,240 training and 16 test images."""
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    labels = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    x = rng.integers(0, 30, (N_TRAIN, 28, 28), dtype=np.uint8)
    x[np.arange(N_TRAIN), 2 * labels + 2, 5:20] = 255  # a learnable stroke per class
    arrays = {"x_train": x, "y_train": labels,
              "x_test": x[:N_TEST].copy(), "y_test": labels[:N_TEST].copy()}
    for key, (name, _) in mnist.IDX_FILES.items():
        write_idx(d / name, arrays[key])
    return d, arrays


def _tiny(idx_dir, **over):
    return {"data_dir": str(idx_dir[0]), "n_train": 32, "n_valid": 8, "n_test": 8, "hidden": 8,
            "readout": 8, "max_steps": 2, "eval_every": 2, "log_every": 1, "batch_size": 8,
            **over}


def test_fixed_split(idx_dir):
    d, arrays = idx_dir
    task = build_task(resolve("mnist", "fastweights", _tiny(idx_dir)))
    s = task.splits(data_seed=3)
    assert {k: tuple(v.x.shape) for k, v in s.items()} == {
        "train": (32, 1, 28, 28), "valid": (8, 1, 28, 28), "test": (8, 1, 28, 28)}
    # train: the first images; valid: the first of the last 5,000; test: the test file
    torch.testing.assert_close(s["train"].x[5, 0], torch.tensor(arrays["x_train"][5]) / 255.0)
    torch.testing.assert_close(s["valid"].x[0, 0], torch.tensor(arrays["x_train"][240]) / 255.0)
    assert s["valid"].y.tolist() == arrays["y_train"][240:248].tolist()
    assert s["test"].y.tolist() == arrays["y_test"][:8].tolist()
    assert s["train"].x.dtype == torch.float32
    assert 0 <= s["train"].x.min() < s["train"].x.max() <= 1
    other = task.splits(data_seed=0)  # the split does not depend on data_seed
    assert torch.equal(other["valid"].x, s["valid"].x)


def test_asking_for_more_images_than_the_data_holds(idx_dir):
    task = build_task(resolve("mnist", "irnn", _tiny(idx_dir, n_train=241)))
    with pytest.raises(FwbenchError, match="n_train = 241 but .* provides 240 train images"):
        task.splits(0)


def test_encoders(idx_dir):
    task = build_task(resolve("mnist", "fastweights", _tiny(idx_dir)))
    x = task.splits(0)["test"].x[:3]
    seq, size = task.encoder("sequence")
    assert size == 67 and seq(x).shape == (3, 24, 67)
    img, channels = task.encoder("image")
    assert channels == 1 and torch.equal(img(x), x)
    pyramid = build_task(resolve("mnist", "lstm", _tiny(idx_dir, glimpses="pyramid")))
    assert pyramid.encoder("sequence")[0](x).shape == (3, 21, 68)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_on_mnist(idx_dir, tmp_path, model):
    over = {"channels": "4,4"} if model == "convnet" else {}
    cfg = resolve("mnist", model, _tiny(idx_dir, **over))
    out = run_experiment(cfg, Execution(results=tmp_path, threads=1, progress=False))
    s = out.summary
    assert s["status"] == "completed" and s["steps"] == 2
    assert 0 <= s["test_error"] <= 1 and np.isfinite(s["test_loss"])
    assert (s["state_size"] == 0) == (model == "convnet") and s["params"] > 0


def test_convnet_learns_the_look_alike(idx_dir, tmp_path):
    """A few dozen updates on the stroke-per-class images beat chance by far."""
    cfg = resolve("mnist", "convnet", _tiny(idx_dir, n_train=200, n_valid=50, n_test=16,
                                            max_steps=50, eval_every=50, batch_size=32,
                                            hidden=16, readout=16, lr=3e-3, channels="4,8"))
    out = run_experiment(cfg, Execution(results=tmp_path, threads=1, progress=False))
    assert out.summary["best_valid_error"] < 0.5  # chance: 0.9


def test_models_that_cannot_serve_a_task_are_refused():
    with pytest.raises(FwbenchError, match="'convnet' consumes image inputs, which task "
                                           "'retrieval' does not provide"):
        resolve("retrieval", "convnet")
    with pytest.raises(FwbenchError, match="invalid value 'spiral' for glimpses"):
        resolve("mnist", "lstm", {"glimpses": "spiral"})
