"""Name -> plugin registries with lazy imports and clear errors for unknown names.

Besides the entries registered here, a registry finds plugins from other packages:

* Python entry points of its group (e.g. `fwbench.models`), declared by an installed
  distribution as `name = "package.module:Class"`; they are read when a name is first looked up
  or listed, and imported only when used, so importing fwbench stays cheap.
* A `package.module:Class` target given directly as the name (`--model mypkg.mod:MyCore`).

A plugin that cannot be imported, or whose class breaks the registry's contract (`check`), is
a FwbenchError in one line, raised before anything is written.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

from fwbench.errors import FwbenchError


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:Class"
    defaults: dict[str, Any] = field(default_factory=dict)  # overrides of the class's setting defaults
    origin: str = ""  # where a plugin came from ("" for fwbench's own entries)
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def load(self) -> Any:
        """The registered object; a plugin's import or contract failure is a FwbenchError."""
        module, _, attr = self.target.partition(":")
        if not self.origin:  # fwbench's own entries: a failure is a bug, keep its traceback
            return getattr(importlib.import_module(module), attr)
        try:
            obj = getattr(importlib.import_module(module), attr)
        except Exception as e:  # any failure to import a plugin is the plugin's problem
            raise FwbenchError(f"{self.origin} {self.target!r} cannot be loaded: "
                               f"{type(e).__name__}: {e}".replace("\n", " ")) from None
        problem = self.check(obj) if self.check else None
        if problem:
            raise FwbenchError(f"{self.origin} {self.target!r} {problem}")
        return obj


class Registry:
    """An ordered table of plugins; modules are imported only when an entry is used."""

    def __init__(self, kind: str, group: str | None = None,
                 check: Callable[[Any], str | None] | None = None):
        self.kind, self.group, self.check = kind, group, check
        self._entries: dict[str, Entry] = {}
        self._found: dict[str, Entry] | None = None  # entry points, read on first need

    def add(self, name: str, target: str, **defaults: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, target, dict(defaults))

    def plugins(self) -> dict[str, Entry]:
        """Entries from installed distributions' entry points (fwbench's own names win)."""
        if self._found is None:
            self._found = {}
            eps = metadata.entry_points(group=self.group) if self.group else ()
            for ep in eps:
                if ep.name not in self._entries and ep.name not in self._found:
                    self._found[ep.name] = Entry(ep.name, ep.value, {},
                                                 f"{self.kind} entry point {ep.name!r}:",
                                                 self.check)
        return self._found

    def _all(self) -> dict[str, Entry]:
        return {**self._entries, **self.plugins()}

    def names(self) -> list[str]:
        return list(self._all())

    def entry(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        if ":" in name and self.group:  # a direct "package.module:Class"
            return Entry(name, name, {}, self.kind, self.check)
        found = self.plugins()
        if name not in found:
            hint = " (or package.module:Class)" if self.group else ""
            raise FwbenchError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._all())}{hint}")
        return found[name]

    def get(self, name: str) -> Any:
        return self.entry(name).load()

    def __contains__(self, name: str) -> bool:
        return name in self._all()

    def __iter__(self):
        return iter(self._all().values())
