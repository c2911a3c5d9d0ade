"""Name -> plugin registries with lazy imports and clear errors for unknown names."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from fwbench.errors import FwbenchError


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:Class"
    defaults: dict[str, Any] = field(default_factory=dict)  # overrides of the class's setting defaults

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """An ordered table of plugins; modules are imported only when an entry is used."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: str, **defaults: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, target, dict(defaults))

    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise FwbenchError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name).load()

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())
