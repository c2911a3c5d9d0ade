"""Shared fixtures: tiny settings that keep every training test to a fraction of a second."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

TINY_RETRIEVAL = {
    "n_train": 256, "n_valid": 64, "n_test": 64, "embed": 8, "readout": 8, "hidden": 8,
    "max_steps": 12, "eval_every": 4, "log_every": 2, "batch_size": 32, "eval_batch": 64,
}


@pytest.fixture
def tiny() -> dict:
    return dict(TINY_RETRIEVAL)


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"
