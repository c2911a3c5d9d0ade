"""Run ids of earlier `fwbench run` requests, so that a finished run is reported without torch.

A run id is a pure function of the request (task, model, the settings given) and of the code
that resolves it; resolving imports every settings class, hence torch (seconds). So each
resolved request is remembered, with its id and the config the id hashes, in fwbench's cache
directory under the key that `fwbench list` uses for its description (a hash of fwbench's
source files and of every registry entry, plugins' included). A later request with the same
task, model and settings under the same code finds its run directory here; if that run has
finished it is reported at once, and everything else (a new or partial run, `--force`, a
missing or stale cache) goes the usual way. A request counts as the same only when written
the same way after key normalisation: `--hidden 20` and `--hidden 20.0` are two entries for one
run, which costs a lookup miss, never a wrong answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_ENTRIES = 1000  # the newest requests kept; an older one is resolved again when asked


def cache_path() -> Path:
    """Where the remembered requests live: run_ids.json in fwbench's cache directory."""
    from fwbench.data.cache import cache_dir

    return cache_dir() / "run_ids.json"


def request_key(task: str, model: str, settings: dict[str, Any]) -> str:
    """The request as one string: task, model and the settings given, sorted by name."""
    given = sorted((str(k), str(v)) for k, v in settings.items() if k not in ("task", "model"))
    return json.dumps([task, model, given], separators=(",", ":"))


def _read(path: Path, code: str) -> dict[str, Any]:
    """The remembered requests if `path` holds them for `code`, else an empty table."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("code") != code:
        return {}
    runs = data.get("runs")
    return runs if isinstance(runs, dict) else {}


def lookup(task: str, model: str, settings: dict[str, Any]) -> tuple[str, dict] | None:
    """(run id, config) of an earlier identical request under the installed code, or None."""
    from fwbench.listing import source_key

    entry = _read(cache_path(), source_key()).get(request_key(task, model, settings))
    if (isinstance(entry, dict) and isinstance(entry.get("run_id"), str)
            and isinstance(entry.get("config"), dict) and "/" not in entry["run_id"]
            and entry["run_id"] not in ("", ".", "..")):
        return entry["run_id"], entry["config"]
    return None


def remember(task: str, model: str, settings: dict[str, Any], run_id: str,
             config: dict[str, Any]) -> None:
    """Record a resolved request; a cache that cannot be written is skipped."""
    from fwbench.listing import source_key
    from fwbench.records import atomic_write

    path, code = cache_path(), source_key()
    runs = _read(path, code)
    runs.pop(request_key(task, model, settings), None)  # re-inserted last: the newest
    runs[request_key(task, model, settings)] = {"run_id": run_id, "config": config}
    runs = dict(list(runs.items())[-MAX_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"code": code, "runs": runs}, indent=1) + "\n")
    except OSError:
        pass  # a read-only home or a full disk: the next request resolves again
