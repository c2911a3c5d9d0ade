"""Typed, documented, validated settings for plugins (tasks, models, learners).

Every plugin declares its settings as a dataclass whose fields are made with `setting()`.
Overrides arrive as strings (CLI, sweep grids) or values (presets, Python) and must name an
existing field; they are converted to the field's type and checked against its bounds.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterable

from fwbench.errors import FwbenchError


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            choices: Iterable[Any] | None = None, paper: str = "") -> Any:
    """A dataclass field carrying its help text, bounds and provenance mark ([P], [S], [R], [C])."""
    meta = {"help": help, "low": low, "high": high,
            "choices": tuple(choices) if choices is not None else None, "paper": paper}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any
    default: Any
    help: str
    low: float | None
    high: float | None
    choices: tuple | None
    paper: str

    def describe_allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        kind = _type_name(self.type)
        if self.low is not None and self.high is not None:
            return f"{kind} in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"{kind} >= {self.low}"
        if self.high is not None:
            return f"{kind} <= {self.high}"
        return kind


def fields_of(cls: type) -> list[FieldInfo]:
    """The settings of a dataclass, with resolved types."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        m = f.metadata
        out.append(FieldInfo(f.name, hints[f.name], default, m.get("help", ""), m.get("low"),
                             m.get("high"), m.get("choices"), m.get("paper", "")))
    return out


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"comma-separated list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "integer", float: "number", bool: "boolean", str: "string"}.get(tp, str(tp))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def convert(info: FieldInfo, value: Any) -> Any:
    """Convert a string or Python value to the field's type; FwbenchError if impossible."""
    tp = info.type
    bad = FwbenchError(f"invalid value {value!r} for {info.name}: expected {info.describe_allowed()}")
    if typing.get_origin(tp) is tuple:
        inner = dataclasses.replace(info, type=typing.get_args(tp)[0], choices=None)
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (int, float)):
            items = [items]
        return tuple(convert(inner, v) for v in items if not (isinstance(v, str) and v == ""))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value))
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if out != out or out in (float("inf"), float("-inf")):
            raise bad
        return out
    if tp is str:
        return str(value)
    raise bad


def check(info: FieldInfo, value: Any) -> None:
    """Bounds and choices; FwbenchError naming what is allowed."""
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        ok = True
        if info.choices is not None and v not in info.choices:
            ok = False
        if info.low is not None and v < info.low:
            ok = False
        if info.high is not None and v > info.high:
            ok = False
        if not ok:
            raise FwbenchError(f"invalid value {v!r} for {info.name}: expected {info.describe_allowed()}")


def build(cls: type, overrides: dict[str, Any], defaults: dict[str, Any] | None = None) -> Any:
    """Instantiate settings class `cls` from (registry) defaults and overrides, all validated.

    Keys in `overrides` that `cls` does not have are ignored here: the caller checks that every
    override was used by some section.
    """
    values = {}
    for info in fields_of(cls):
        raw = info.default
        if defaults and info.name in defaults:
            raw = defaults[info.name]
        if info.name in overrides:
            raw = overrides[info.name]
        value = convert(info, raw)
        check(info, value)
        values[info.name] = value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj
