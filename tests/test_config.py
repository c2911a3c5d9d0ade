"""Config resolution and run ids, checked over every registered task x model pair."""

from __future__ import annotations

import pytest

from fwbench.config import from_dict, resolve, settings_table
from fwbench.errors import FwbenchError
from fwbench.models import MODELS
from fwbench.tasks import TASKS

PAIRS = [(t.name, m.name) for t in TASKS for m in MODELS
         if m.load().consumes in t.load().provides]


@pytest.mark.parametrize("task, model", PAIRS)
def test_every_pair_resolves_with_unique_setting_names(task, model):
    table = settings_table(task, model)  # raises if two sections share a name
    cfg = resolve(task, model)
    # settings added after runs were recorded stay out of the config at their defaults
    assert set(cfg.flat()) == {n for n, (_, i) in table.items() if not i.added} | {"task", "model"}
    assert from_dict(cfg.to_dict()) == cfg
    assert cfg.run_id.startswith(f"{task}-{model}-h")


def test_run_id_is_stable_and_sensitive():
    a = resolve("retrieval", "fastweights", {"lam": "0.9", "hidden": 20})
    b = resolve("retrieval", "fastweights", {"hidden": "20", "--lam": 0.9})
    assert a.run_id == b.run_id == "retrieval-fastweights-h20-" + a.digest
    assert resolve("retrieval", "fastweights", {"lam": 0.91, "hidden": 20}).run_id != a.run_id
    assert resolve("retrieval", "fastweights", {"lam": 0.9, "hidden": 20, "seed": 1}).run_id \
        != a.run_id
    # explicit defaults are the same experiment as omitted ones
    assert resolve("retrieval", "lstm", {"K": 4}).run_id == resolve("retrieval", "lstm").run_id


# ids recorded before each model gained its `impl` setting (a compiled kernel beside torch)
IDS_BEFORE_IMPL = {
    "alstm": ("retrieval-alstm-h100-9636919444", "mnist-alstm-h100-3bdb2acbe1"),
    "recurrent-delta": ("retrieval-recurrent-delta-h100-39b784130e",
                        "mnist-recurrent-delta-h100-c70fa568b5"),
    "gru": ("retrieval-gru-h100-1cc7624cf6", "mnist-gru-h100-68124ab129"),
}


@pytest.mark.parametrize("model", sorted(IDS_BEFORE_IMPL))
def test_run_ids_are_unchanged_by_an_added_impl_setting(model):
    """`impl` was added after these models' runs were recorded: at its default it is left out
    of the config, so the ids of default runs are the ones recorded before it existed."""
    cfg = resolve("retrieval", model)
    assert "impl" not in cfg.to_dict()["model_settings"]
    assert (cfg.run_id, resolve("mnist", model).run_id) == IDS_BEFORE_IMPL[model]
    assert resolve("retrieval", model, {"impl": "auto"}).run_id == cfg.run_id
    assert resolve("retrieval", model, {"impl": "torch"}).run_id != cfg.run_id


def test_incompatible_model_and_task_is_a_clear_error():
    image_models = [m.name for m in MODELS if m.load().consumes == "image"]
    for name in image_models:
        with pytest.raises(FwbenchError, match="does not provide"):
            resolve("retrieval", name)


def test_boolean_and_list_parsing():
    cfg = resolve("retrieval", "fastweights", {"layernorm": "off", "eval_K": "2,8"})
    assert cfg.model_cfg.layernorm is False and cfg.task_cfg.eval_K == (2, 8)
    with pytest.raises(FwbenchError, match="expected integer"):
        resolve("retrieval", "fastweights", {"hidden": 2.5})
    with pytest.raises(FwbenchError, match="expected boolean"):
        resolve("retrieval", "fastweights", {"layernorm": 3})


def test_the_reports_table_of_added_settings_is_the_settings_classes():
    """Reports read a record without an added setting as made at its default, from a table kept
    without torch: it must name every added setting of every task, model and learner, at the
    default its class declares."""
    import dataclasses

    from fwbench.learners import LEARNERS
    from fwbench.settings import ADDED_DEFAULTS

    classes = [TASKS.get(n).Config for n in TASKS.names()]
    classes += [MODELS.get(n).Config for n in MODELS.names()]
    classes += [LEARNERS.get(n).Config for n in LEARNERS.names()]
    found: dict = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.metadata.get("added"):
                found.setdefault(f.name, set()).add(f.default)
    assert {k: v for k, v in found.items() if len(v) > 1} == {}  # one default per name
    assert {k: v.pop() for k, v in found.items()} == ADDED_DEFAULTS


def test_a_record_without_an_added_setting_belongs_where_its_default_is_pinned():
    from fwbench.presets import load
    from fwbench.report.spec import in_preset

    run = {"task": "mnist", "model": "irnn", "hidden": 100, "lr": 0.001, "max_steps": 20000,
           "eval_every": 1000, "patience": 8}  # recorded before `levels` existed
    table2 = load("table2")  # pins levels = "flat", the default (its multilevel sweep aside)
    assert in_preset(run, table2, "h100") and in_preset({**run, "levels": "flat"}, table2, "h100")
    assert not in_preset({**run, "levels": "multilevel"}, table2, "h100")
    assert in_preset({**run, "levels": "multilevel"}, table2, "multilevel")
    assert in_preset({**run, "levels": "multilevel"}, load("table2_multilevel"))
    assert not in_preset(run, load("table2_multilevel"))
