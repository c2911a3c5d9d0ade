"""The harder retrieval settings: more keys and values, several queries per string; the
paper's default data unchanged; the classifier and learner reading several positions."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
import torch

import fwbench.tasks.retrieval as retrieval
from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.learners.supervised import SupervisedLearner
from fwbench.network import build_classifier
from fwbench.runner import Execution, run_experiment
from fwbench.tasks.base import Split
from fwbench.tasks.retrieval import Retrieval, decode


def _task(**over):
    return Retrieval(resolve("retrieval", "lstm", over).task_cfg)


def _original_generate(n, seed, K):
    """The generator as first published (26 letters, 10 digits, one query), verbatim."""
    rng = np.random.default_rng(seed)
    keys = np.argsort(rng.random((n, 26)), axis=1)[:, :K]
    values = rng.integers(0, 10, size=(n, K))
    which = rng.integers(0, K, size=n)
    x = np.empty((n, 2 * K + 3), dtype=np.int64)
    x[:, 0:2 * K:2] = keys
    x[:, 1:2 * K:2] = 26 + values
    x[:, 2 * K:2 * K + 2] = 36
    x[:, -1] = keys[np.arange(n), which]
    y = values[np.arange(n), which]
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("seed,K", [((0, 0), 4), ((3, 1), 1), ((7, 2, 9), 26)])
def test_default_data_is_byte_identical(seed, K, monkeypatch):
    monkeypatch.setattr(retrieval, "KEY_BLOCK", 7)  # blocks of rows draw the same stream
    x, y = _task(K=K).generate(20, seed=seed)
    x0, y0 = _original_generate(20, seed, K)
    assert x.dtype == x0.dtype and y.dtype == y0.dtype and y.shape == (20,)
    assert x.numpy().tobytes() == x0.numpy().tobytes()
    assert y.numpy().tobytes() == y0.numpy().tobytes()


def test_docstring_example_still_holds():
    assert doctest.testmod(retrieval).failed == 0


@pytest.mark.parametrize("K,Q", [(40, 1), (40, 5), (300, 7)])
def test_large_vocabulary_and_several_queries_format(K, Q):
    task = _task(K=K, n_keys=512, n_values=16, queries=Q)
    x, y = task.generate(30, seed=(1, 0))
    assert x.shape == (30, 2 * K + 2 + Q)
    assert y.shape == ((30,) if Q == 1 else (30, Q)) and task.num_classes == 16
    keys, values = x[:, 0:2 * K:2], x[:, 1:2 * K:2]
    assert (keys < 512).all() and ((values >= 512) & (values < 528)).all()
    assert all(len(set(row.tolist())) == K for row in keys)  # keys without replacement
    assert (x[:, 2 * K:2 * K + 2] == 528).all() and int(x.max()) < task.vocab == 529
    asked = x[:, 2 * K + 2:]
    assert all(len(set(row.tolist())) == Q for row in asked)  # distinct queries
    for row, q, target in zip(x, asked, y.view(30, Q)):
        lookup = dict(zip(row[0:2 * K:2].tolist(), row[1:2 * K:2].tolist()))
        assert [lookup[k] - 512 for k in q.tolist()] == target.tolist()
    assert task.read_positions == (None if Q == 1 else tuple(range(-Q, 0)))


def test_extended_data_deterministic_and_seed_dependent():
    a = _task(K=30, n_keys=64, queries=3).generate(50, seed=(2, 0))
    b = _task(K=30, n_keys=64, queries=3).generate(50, seed=(2, 0))
    c = _task(K=30, n_keys=64, queries=3).generate(50, seed=(2, 1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_keys_cover_the_vocabulary():
    x, _ = _task(K=2, n_keys=100).generate(3000, seed=(0, 0))
    assert set(x[:, 0:4:2].flatten().tolist()) == set(range(100))


def test_decode_large_vocabulary():
    assert decode([0, 30, 30, 33, 0], n_keys=30, n_values=3) == "k0 v0 v0 ? k0"


@pytest.mark.parametrize("bad", [{"K": 30}, {"n_keys": 50, "K": 51}, {"queries": 5},
                                 {"queries": 2, "eval_K": "1,4"}, {"eval_K": "27"},
                                 {"n_values": 1}])
def test_invalid_settings(bad):
    with pytest.raises(FwbenchError, match="expected"):
        _task(**bad)


def test_classifier_reads_each_query_position():
    cfg = resolve("retrieval", "delta", {"hidden": 8, "embed": 6, "readout": 5, "K": 6,
                                         "queries": 3, "n_values": 7})
    task = Retrieval(cfg.task_cfg)
    net = build_classifier(cfg, task).double()
    x, y = task.generate(4, seed=(0, 0))
    logits = net(x)
    assert logits.shape == (4, 3, 7) and y.shape == (4, 3)
    outputs, _ = net.model(net.encoder(x))
    torch.testing.assert_close(logits[:, 1], net.head(outputs[:, -2]))  # the 2nd query's step


def test_learner_scores_each_query_as_one_target():
    """Error and loss are averaged over N x Q targets: a net that always answers 0."""
    cfg = resolve("retrieval", "linear", {"eval_batch": 3})
    learner = SupervisedLearner(cfg, record=None, device=torch.device("cpu"))
    y = torch.tensor([[0, 1], [0, 0], [2, 0], [1, 1], [0, 2]])  # 5 strings x 2 queries
    logits = torch.tensor([2.0, 0.0, 0.0])
    net = torch.nn.Module()
    net.forward = lambda x: logits.expand(len(x), 2, 3)
    loss, err = learner.evaluate(net, Split(torch.zeros(5, 1), y))
    assert err == pytest.approx(5 / 10)
    nll = torch.nn.functional.cross_entropy(logits.expand(2, 3), torch.tensor([0, 1]),
                                            reduction="none")
    assert loss == pytest.approx((5 * nll[0] + 5 * nll[1]).item() / 10)


def test_training_with_several_queries(tmp_path, tiny):
    over = {**tiny, "K": 5, "queries": 3, "n_keys": 40, "n_values": 12}
    cfg = resolve("retrieval", "linear", over)
    out = run_experiment(cfg, Execution(results=tmp_path, threads=1, progress=False))
    assert out.status == "completed" and 0 <= out.summary["test_error"] <= 1
    saved = json.loads((out.path / "config.json").read_text())
    assert saved["config"]["task_settings"]["queries"] == 3
