"""Content hashes of a run's files, so that damage is detected rather than believed.

    checksums.json   {name: {"current": entry, "previous": entry | null}}

An entry holds a file's sha256 and, for a checkpoint or a final summary, the size and
sha256 of the metrics.csv prefix it covers. The manifest is rewritten atomically *before*
the file it describes; a process killed between the two leaves the file as it was, which
the manifest still holds as "previous", so a kill never reads as damage. A run directory
without a manifest was written before checksums existed: its files are read unverified.
No torch here: the report checks runs through this module.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fwbench.errors import FwbenchError

MANIFEST = "checksums.json"


def sha256_bytes(data: bytes) -> str:
    """The sha256 hex digest of `data`."""
    return hashlib.sha256(data).hexdigest()


def metrics_digest(path: Path) -> dict[str, Any]:
    """The size and sha256 of a metrics.csv as it stands (the rows written so far)."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    return {"metrics_bytes": len(data), "metrics_sha256": sha256_bytes(data)}


class Checksums:
    """The checksums manifest of the run directory `run_dir`."""

    def __init__(self, run_dir: Path, write):
        self.run_dir, self.path, self._write = Path(run_dir), Path(run_dir) / MANIFEST, write

    def read(self) -> dict[str, Any] | None:
        """The manifest, None if the run has none; FwbenchError if it is unreadable."""
        try:
            manifest = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise self._damaged(MANIFEST, f"unreadable ({type(e).__name__})") from None
        if not isinstance(manifest, dict):
            raise self._damaged(MANIFEST, "not a table of files")
        return manifest

    def seal(self, name: str, data: bytes, **extra: Any) -> None:
        """Record `data` as the content `name` is about to be written with."""
        manifest = self.read() or {}
        entry = {"sha256": sha256_bytes(data), **extra}
        old = manifest.get(name) or {}
        manifest[name] = {"current": entry, "previous": old.get("current")}
        self._write(self.path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    def check(self, name: str, data: bytes) -> dict[str, Any] | None:
        """The entry `data` matches (None for a file never recorded); FwbenchError naming the
        file if its content is not the one recorded."""
        manifest = self.read()
        record = (manifest or {}).get(name)
        if not record:
            return None
        digest = sha256_bytes(data)
        for entry in (record.get("current"), record.get("previous")):
            if entry and entry.get("sha256") == digest:
                return entry
        raise self._damaged(name, "does not match its recorded sha256")

    def check_metrics(self, entry: dict[str, Any] | None, covered_by: str) -> None:
        """FwbenchError unless metrics.csv still starts with the rows `entry` covers."""
        if not entry or "metrics_bytes" not in entry:
            return
        path = self.run_dir / "metrics.csv"
        try:
            with open(path, "rb") as f:
                prefix = f.read(entry["metrics_bytes"])
        except OSError:
            raise self._damaged("metrics.csv", f"missing, though {covered_by} covers "
                                "its rows") from None
        if len(prefix) < entry["metrics_bytes"]:
            raise self._damaged("metrics.csv", f"truncated: {covered_by} covers "
                                f"{entry['metrics_bytes']} bytes, it has {len(prefix)}")
        if sha256_bytes(prefix) != entry["metrics_sha256"]:
            raise self._damaged("metrics.csv", f"changed: the rows {covered_by} covers "
                                "do not match their recorded sha256")

    def _damaged(self, name: str, why: str) -> FwbenchError:
        return FwbenchError(f"run directory {self.run_dir} is corrupted: {name} {why}; "
                            "rerun with --force to start it over")


def config_problem(saved: Any, run_id: str) -> str | None:
    """Why a config.json does not describe run `run_id` (its config must hash to the id, as
    fwbench.config.RunConfig.run_id does, and its flat table repeat the config), else None."""
    config = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict):
        return "config.json has no config"
    try:
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        expected = (f"{config['task']}-{config['model']}-h{config['model_settings']['hidden']}"
                    f"-{sha256_bytes(blob.encode())[:10]}")
        flat = {"task": config["task"], "model": config["model"]}
        for section in ("learner", "task", "model"):
            flat.update(config[f"{section}_settings"])
    except (KeyError, TypeError, AttributeError):
        return "config.json's config is incomplete"
    if expected != run_id:
        return f"config.json's config hashes to run {expected}, not {run_id}"
    if saved.get("flat") != flat:
        return "config.json's flat settings differ from its config"
    return None
