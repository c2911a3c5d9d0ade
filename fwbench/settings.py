"""Typed, documented, validated settings for plugins (tasks, models, learners).

Every plugin declares its settings as a dataclass whose fields are made with `setting()`.
Overrides arrive as strings (CLI, sweep grids) or values (presets, Python) and must name an
existing field; they are converted to the field's type and checked against its bounds. Every
`NAME=VALUE` input (--set, --grid, --where, a model's or an environment's `NAME:KEY=VALUE`)
is split by `parse_pair` and its name normalised by `normalise_key`, here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterable

from fwbench.errors import FwbenchError


def normalise_key(key: str) -> str:
    """A setting's name as typed (`--hidden`, ` data-seed`) -> its field name (`data_seed`)."""
    return key.strip().lstrip("-").replace("-", "_")


def parse_pair(item: str, what: str, form: str = "NAME=VALUE", given: str | None = None
               ) -> tuple[str, str]:
    """'NAME=VALUE' -> (normalised name, stripped value); FwbenchError naming `what` otherwise.

    `given` is the whole input when the pair is part of one (`lstm:hidden=20`), so the error
    quotes what the user typed.
    """
    key, sep, value = item.partition("=")
    key = normalise_key(key)
    if not sep or not key:
        raise FwbenchError(f"invalid {what} {item if given is None else given!r}: "
                           f"expected {form}")
    return key, value.strip()


def parse_pairs(items: Iterable[str] | None, what: str) -> dict[str, str]:
    """Repeated `NAME=VALUE` options -> {name: raw value}; a later name wins."""
    return dict(parse_pair(item, what) for item in items or [])


def parse_spec(text: str, what: str) -> tuple[str, dict[str, str]]:
    """'NAME:KEY=VALUE:KEY=VALUE' (a model or environment with settings) -> (name, {key: value})."""
    name, *pairs = text.strip().split(":")
    form = "NAME[:SETTING=VALUE...]"
    return name.strip(), dict(parse_pair(p, what, form, text) for p in pairs)


def check_known(names: Iterable[str], overrides: Iterable[str], owner: str) -> None:
    """FwbenchError naming the first override that is not one of `names` (the allowed ones)."""
    names = list(names)
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise FwbenchError(f"unknown setting {unknown[0]!r} for {owner}; allowed: "
                           + ", ".join(names))


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            choices: Iterable[Any] | None = None, paper: str = "", added: bool = False) -> Any:
    """A dataclass field carrying its help text, bounds and provenance mark ([P], [S], [R], [C]).

    `added`: a setting added after runs were recorded, left out of a run's config (and so of its
    id) while it holds its default, so those runs keep their ids (`is_unrecorded`).
    """
    meta = {"help": help, "low": low, "high": high,
            "choices": tuple(choices) if choices is not None else None, "paper": paper,
            "added": added}
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
    added: bool = False  # left out of a run's config at its default (see `setting`)

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


# The settings added after runs were recorded (`setting(..., added=True)`) and their defaults:
# a run's config leaves such a setting out while it holds its default, so a record without it
# was made at this value. Kept here, without torch, for the reports, which match records against
# presets; tests/test_config.py checks it against the settings classes.
ADDED_DEFAULTS: dict[str, Any] = {"levels": "flat", "encoder_units": 0, "optimizer": "adam",
                                  "rms_alpha": 0.99, "rms_eps": 0.1, "obs_encoder": 0,
                                  "impl": "auto", "update_path": "auto"}


def recorded(flat: Any, key: str) -> Any:
    """A run's value of `key` from its flat config (a mapping): the recorded one, else the
    default of a setting added after the run was recorded, else None."""
    value = flat.get(key)
    if value is None or (isinstance(value, float) and value != value):  # absent or NaN
        return ADDED_DEFAULTS.get(key)
    return value


def is_unrecorded(field: dataclasses.Field, value: Any) -> bool:
    """Whether a run's config leaves this field out: an `added` setting at its default."""
    if not field.metadata.get("added"):
        return False
    default = field.default if field.default is not dataclasses.MISSING \
        else field.default_factory()
    return value == default


def fields_of(cls: type) -> list[FieldInfo]:
    """The settings of a dataclass, with resolved types."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        m = f.metadata
        out.append(FieldInfo(f.name, hints[f.name], default, m.get("help", ""), m.get("low"),
                             m.get("high"), m.get("choices"), m.get("paper", ""),
                             m.get("added", False)))
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


def build_known(cls: type, overrides: dict[str, Any], defaults: dict[str, Any] | None,
                owner: str) -> Any:
    """`build`, but every override must name a setting of `cls` (normalised names)."""
    overrides = {normalise_key(k): v for k, v in overrides.items()}
    check_known([f.name for f in fields_of(cls)], overrides, owner)
    return build(cls, overrides, defaults)
