"""Every `NAME=VALUE` input goes through one parser and one key normaliser, with one wording."""

from __future__ import annotations

import pytest

from fwbench.bench.catch import parse_env
from fwbench.bench.subjects import parse_model
from fwbench.commands._args import parse_extra
from fwbench.config import task_settings
from fwbench.errors import FwbenchError
from fwbench.settings import normalise_key, parse_pair, parse_pairs, parse_spec
from fwbench.sweep import parse_grid, plan


def test_normalise_key():
    assert normalise_key(" --data-seed ") == "data_seed"
    assert normalise_key("S") == "S"


def test_parse_pair_and_pairs():
    assert parse_pair(" --hidden-size = 20 ", "--set") == ("hidden_size", "20")
    assert parse_pair("motion=a=b", "--set") == ("motion", "a=b")  # the first '=' splits
    assert parse_pairs(["lr=1", "lr=2", "S=3"], "--set") == {"lr": "2", "S": "3"}
    for bad in ("lam", "=3", " = "):
        with pytest.raises(FwbenchError, match=r"invalid --set .*: expected NAME=VALUE$"):
            parse_pair(bad, "--set")


def test_parse_spec_quotes_the_whole_input():
    assert parse_spec("lstm:hidden=20:data-seed=1", "model") == (
        "lstm", {"hidden": "20", "data_seed": "1"})
    assert parse_spec("gru", "model") == ("gru", {})
    with pytest.raises(FwbenchError, match=r"invalid model 'lstm:hidden': expected NAME\["):
        parse_spec("lstm:hidden", "model")


def test_every_input_normalises_keys_alike():
    """--set, --NAME, --grid, a model spec and a sweep plan all read `data-seed` as data_seed."""
    assert parse_extra(["--data-seed", "1", "--hidden-x=2"], ["lr-x=3"]) == {
        "lr_x": "3", "data_seed": "1", "hidden_x": "2"}
    assert parse_grid(["--data-seed=1,2"]) == {"data_seed": ["1", "2"]}
    assert parse_model("fastweights:impl=memory")[1] == {"impl": "memory"}
    spec = plan(sets={"data-seed": 3}, grid={"--hidden": [4, 5]})
    assert spec.settings["data_seed"] == 3 and spec.grid["hidden"] == [4, 5]


def test_typed_settings_convert_environment_specs():
    """--env catch takes the catch task's own settings: converted and bounded by their types."""
    rules = parse_env("catch:N=24:M=5:paddle=2:motion=diagonal")
    assert (rules.N, rules.M, rules.paddle, rules.motion) == (24, 5, 2, "diagonal")
    assert task_settings("catch", {"N": "24", "M": 5}).rules() == parse_env("catch:N=24:M=5")
    with pytest.raises(FwbenchError, match="expected one of straight, diagonal"):
        parse_env("catch:motion=zigzag")


def test_task_settings_refuses_unknown_names():
    assert task_settings("retrieval", {"--K": "4"}).K == 4
    with pytest.raises(FwbenchError, match="unknown setting 'hidden' for task 'retrieval'"):
        task_settings("retrieval", {"hidden": 3})
