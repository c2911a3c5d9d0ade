"""Resolving a run's configuration: task + model + learner settings, validated, hashed.

Settings live in three sections (learner, task, model) whose field names are distinct, so a
flat `name=value` override finds its section unambiguously. The run id is a readable prefix
plus a hash of the resolved settings; execution settings (device, threads, output paths) are
not part of it, so the same experiment maps to the same directory wherever it runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from fwbench.budget import check_sizes
from fwbench.errors import FwbenchError
from fwbench.learners import LEARNERS
from fwbench.models import MODELS
from fwbench.settings import (FieldInfo, build, build_known, check_known, fields_of,
                              is_unrecorded, normalise_key)
from fwbench.tasks import TASKS

SECTIONS = ("learner", "task", "model")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    task: str
    model: str
    learner: str
    learner_cfg: Any
    task_cfg: Any
    model_cfg: Any

    def to_dict(self) -> dict[str, Any]:
        """The experiment as plain JSON-able data (what the run id hashes)."""
        return {
            "task": self.task, "model": self.model, "learner": self.learner,
            "learner_settings": _recorded(self.learner_cfg),
            "task_settings": _recorded(self.task_cfg),
            "model_settings": _recorded(self.model_cfg),
        }

    def flat(self) -> dict[str, Any]:
        """All settings in one flat name -> value table, plus task and model."""
        d = self.to_dict()
        out = {"task": self.task, "model": self.model}
        for section in SECTIONS:
            out.update(d[f"{section}_settings"])
        return out

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.task}-{self.model}-h{self.model_cfg.hidden}-{self.digest}"


def _recorded(settings: Any) -> dict[str, Any]:
    """A section's settings as the config records them: settings added after runs were
    recorded are left out at their default, so those runs keep their ids."""
    return {f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)
            if not is_unrecorded(f, getattr(settings, f.name))}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def section_classes(task: str, model: str) -> dict[str, tuple[type, dict[str, Any]]]:
    """Settings class and registry default overrides of each section, checking compatibility."""
    t_entry, m_entry = TASKS.entry(task), MODELS.entry(model)
    task_cls, model_cls = t_entry.load(), m_entry.load()
    if model_cls.consumes not in task_cls.provides:
        raise FwbenchError(
            f"model {model!r} consumes {model_cls.consumes} inputs, which task {task!r} does not "
            f"provide (it provides: {', '.join(task_cls.provides)})")
    learner_cls = LEARNERS.get(task_cls.learner)
    return {
        "learner": (learner_cls.Config, dict(task_cls.learner_defaults)),
        "task": (task_cls.Config, t_entry.defaults),
        "model": (model_cls.Config, m_entry.defaults),
    }


def settings_table(task: str, model: str) -> dict[str, tuple[str, FieldInfo]]:
    """name -> (section, field info) for every setting of this task/model pair."""
    table: dict[str, tuple[str, FieldInfo]] = {}
    for section, (cls, defaults) in section_classes(task, model).items():
        for info in fields_of(cls):
            if info.name in table:
                raise RuntimeError(f"setting {info.name!r} defined in both {table[info.name][0]} "
                                   f"and {section}: setting names must be unique")
            if info.name in defaults:
                info = dataclasses.replace(info, default=defaults[info.name])
            table[info.name] = (section, info)
    return table


def resolve(task: str, model: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Validated RunConfig from names and flat overrides (strings or values)."""
    overrides = {normalise_key(k): v for k, v in (overrides or {}).items()}
    overrides.pop("task", None), overrides.pop("model", None)
    table = settings_table(task, model)
    check_known(table, overrides, f"task {task!r} with model {model!r}")
    sections = section_classes(task, model)
    cfgs = {s: build(cls, overrides, defaults) for s, (cls, defaults) in sections.items()}
    task_cls = TASKS.get(task)
    cfg = RunConfig(task, model, task_cls.learner, cfgs["learner"], cfgs["task"], cfgs["model"])
    check_model = getattr(task_cls, "check_model", None)  # e.g. level marks need a memory
    if check_model is not None:
        check_model(cfg.task_cfg, MODELS.get(model))
    check_sizes(cfg.flat())  # before anything is allocated or written
    return cfg


def task_settings(task: str, overrides: dict[str, Any] | None = None) -> Any:
    """Validated settings of `task` alone (no model, no learner), from flat overrides."""
    entry = TASKS.entry(task)
    return build_known(entry.load().Config, overrides or {}, entry.defaults, f"task {task!r}")


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Inverse of RunConfig.to_dict (re-validated)."""
    flat = {}
    for section in SECTIONS:
        flat.update(d.get(f"{section}_settings", {}))
    return resolve(d["task"], d["model"], flat)
