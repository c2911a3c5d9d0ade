"""What `fwbench list` shows: every registry entry described as plain data, and rendered.

The description is a pure function of the installed code, but building it imports every model,
task and learner class, hence torch (seconds). So it is cached as JSON in fwbench's cache
directory, keyed by a hash of fwbench's source files and of the registry entries (plugins'
modules included), and read back without importing torch. A cache that is missing, stale or
unreadable is rebuilt from the classes; one that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

KINDS = ("tasks", "models", "learners")
SETTING_KEYS = ("name", "default", "allowed", "source", "help")
FORMAT = 1  # bumped when the description's layout changes
_PACKAGE = Path(__file__).resolve().parent
_SUFFIXES = (".py", ".c")


def registries() -> dict[str, Any]:
    """The task, model and learner registries, by kind (no class is imported)."""
    from fwbench.learners import LEARNERS
    from fwbench.models import MODELS
    from fwbench.tasks import TASKS

    return {"tasks": TASKS, "models": MODELS, "learners": LEARNERS}


# --- the key: what the description depends on ---------------------------------------------

def _module_file(module: str) -> Path | None:
    """The source file of `module`, found without importing it or its packages (else None)."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level find imports nothing
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return None
            spec = importlib.machinery.PathFinder.find_spec(
                ".".join(parts[:i + 1]), list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def _entry_key(entry: Any) -> list:
    """An entry as registered; a plugin's with its module's contents, which fwbench's hash
    does not cover."""
    key = [entry.name, entry.target, sorted((k, repr(v)) for k, v in entry.defaults.items())]
    if entry.origin:
        path = _module_file(entry.target.partition(":")[0])
        key.append(hashlib.sha256(path.read_bytes()).hexdigest() if path else None)
    return key


def source_key() -> str:
    """A hash of everything the description depends on: fwbench's source files (the registry
    files among them) and every registry entry, installed plugins' included."""
    from fwbench.provenance import files_digest

    files = sorted((p for p in _PACKAGE.rglob("*") if p.suffix in _SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(_PACKAGE).as_posix())
    entries = {kind: [_entry_key(e) for e in reg] for kind, reg in registries().items()}
    blob = json.dumps([FORMAT, files_digest(files, _PACKAGE), entries], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- the description, from the classes -----------------------------------------------------

def _describe_entry(kind: str, entry: Any) -> dict:
    from fwbench.settings import fields_of

    cls = entry.load()
    out: dict[str, Any] = {"name": entry.name, "summary": str(cls.summary),
                           "defaults": {k: str(v) for k, v in entry.defaults.items()}}
    if kind == "tasks":
        out["learner"], out["provides"] = str(cls.learner), [str(p) for p in cls.provides]
    if kind == "models":
        out["consumes"] = str(cls.consumes)
    settings = []
    for f in fields_of(cls.Config):
        default = entry.defaults.get(f.name, f.default)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        values = (f.name, default, f.describe_allowed(), f.paper, f.help)
        settings.append(dict(zip(SETTING_KEYS, map(str, values))))
    out["settings"] = settings
    return out


def describe() -> dict[str, list[dict]]:
    """Every registry entry as `fwbench list` shows it, built from the classes (imports torch)."""
    return {kind: [_describe_entry(kind, e) for e in reg] for kind, reg in registries().items()}


# --- the cache -----------------------------------------------------------------------------

def cache_path() -> Path:
    """Where the description is cached: listing.json in fwbench's cache directory."""
    from fwbench.data.cache import cache_dir

    return cache_dir() / "listing.json"


def _well_formed(kinds: Any) -> bool:
    """Whether a cached description has the layout `render` reads (all text where text goes)."""
    def texts(*values: Any) -> bool:
        return all(isinstance(v, str) for v in values)

    try:
        for kind in KINDS:
            for d in kinds[kind]:
                if not (texts(d["name"], d["summary"], *d["defaults"], *d["defaults"].values())
                        and all(texts(*(s[k] for k in SETTING_KEYS)) for s in d["settings"])):
                    return False
                if kind == "tasks" and not texts(d["learner"], *d["provides"]):
                    return False
                if kind == "models" and not texts(d["consumes"]):
                    return False
    except (KeyError, TypeError, AttributeError):
        return False
    return True


def read_cache(path: Path, key: str) -> dict[str, list[dict]] | None:
    """The cached description if `path` holds one for `key`; None if missing, stale or corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: bad JSON or bad UTF-8, a half-written file
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    kinds = data.get("kinds")
    return kinds if _well_formed(kinds) else None


def write_cache(path: Path, key: str, kinds: dict[str, list[dict]]) -> None:
    """Cache the description atomically; a cache that cannot be written is skipped."""
    from fwbench.records import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"key": key, "kinds": kinds}, indent=1) + "\n")
    except OSError:
        pass  # a read-only home or a full disk: the listing still prints, built next time too


def listing() -> dict[str, list[dict]]:
    """The description of every entry: cached if it matches the installed code, else built."""
    key, path = source_key(), cache_path()
    kinds = read_cache(path, key)
    if kinds is None:
        kinds = describe()
        write_cache(path, key, kinds)
    return kinds


# --- rendering -----------------------------------------------------------------------------

def _settings_table(settings: list[dict]) -> Table:
    table = Table(title="", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("setting", "default", "allowed", "source", "meaning"):
        table.add_column(col)
    for s in settings:
        table.add_row(*(escape(s[k]) for k in SETTING_KEYS))
    return table


def _headline(kind: str, d: dict) -> str:
    desc = d["summary"]
    if d["defaults"]:
        desc += " [" + ", ".join(f"{k}={v}" for k, v in d["defaults"].items()) + "]"
    extra = ""
    if kind == "tasks":
        extra = escape(f" (learner: {d['learner']}; inputs: {', '.join(d['provides'])})")
    if kind == "models":
        extra = escape(f" (consumes: {d['consumes']})")
    # escaped: rich would take a variant's "[eta=0.0]" for markup and drop it
    return f"[bold cyan]{escape(d['name'])}[/bold cyan]: {escape(desc)}[dim]{extra}[/dim]"


def render(console: Console, kinds: dict[str, list[dict]], kind: str | None = None,
           brief: bool = False) -> None:
    """Print the description of `kind` (every kind if None), with settings unless `brief`."""
    for name in KINDS:
        if kind not in (None, name):
            continue
        console.rule(f"[bold]{name}")
        for d in kinds[name]:
            console.print(_headline(name, d))
            if not brief:
                console.print(_settings_table(d["settings"]))
                console.print()
