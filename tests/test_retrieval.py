"""The associative retrieval task: format, determinism, splits."""

from __future__ import annotations

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.tasks.retrieval import N_LETTERS, QMARK, VOCAB, Retrieval, decode, encode


def _task(**over):
    return Retrieval(resolve("retrieval", "lstm", over).task_cfg)


@pytest.mark.parametrize("K", [1, 4, 8, 26])
def test_format(K):
    x, y = _task(K=K).generate(500, seed=(1, 0))
    assert x.shape == (500, 2 * K + 3) and y.shape == (500,)
    assert VOCAB == 37 and int(x.max()) < VOCAB
    keys, values = x[:, 0:2 * K:2], x[:, 1:2 * K:2]
    assert (keys < N_LETTERS).all() and ((values >= N_LETTERS) & (values < QMARK)).all()
    assert all(len(set(row.tolist())) == K for row in keys)  # keys without replacement
    assert (x[:, 2 * K:2 * K + 2] == QMARK).all()
    for row, target in zip(x, y):
        s = decode(row)
        q = s[-1]
        assert s[s.index(q) + 1] == str(int(target))  # the query's value is the target
    assert len(set(y.tolist())) == 10  # values with replacement cover all digits


def test_encode_decode_round_trip():
    assert decode(encode("c9k8j3f1??c")) == "c9k8j3f1??c"
    assert encode("a0?").tolist() == [0, 26, 36]


def test_splits_deterministic_and_distinct():
    a, b = _task(n_train=50, n_valid=20, n_test=30), _task(n_train=50, n_valid=20, n_test=30)
    sa, sb = a.splits(data_seed=3), b.splits(data_seed=3)
    for name in ("train", "valid", "test"):
        assert torch.equal(sa[name].x, sb[name].x) and torch.equal(sa[name].y, sb[name].y)
    assert [len(sa[n]) for n in ("train", "valid", "test")] == [50, 20, 30]
    assert not torch.equal(sa["valid"].x, sa["test"].x[:20])
    other = a.splits(data_seed=4)
    assert not torch.equal(other["train"].x, sa["train"].x)


def test_a_split_does_not_change_when_another_split_size_does():
    a = _task(n_train=50, n_valid=20, n_test=30).splits(0)
    b = _task(n_train=80, n_valid=20, n_test=30).splits(0)
    assert torch.equal(a["test"].x, b["test"].x) and torch.equal(a["valid"].x, b["valid"].x)


def test_eval_at_other_K():
    extra = _task(n_test=40, eval_K=(2, 8)).extra_tests(0)
    assert set(extra) == {"test_K2", "test_K8"}
    assert extra["test_K2"].x.shape == (40, 7) and extra["test_K8"].x.shape == (40, 19)


@pytest.mark.parametrize("bad", [{"K": 0}, {"K": 27}, {"eval_K": "3,40"}, {"n_train": 0}])
def test_invalid_settings(bad):
    with pytest.raises(FwbenchError, match="expected"):
        _task(**bad)
