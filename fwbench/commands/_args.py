"""Parsing `--name value`, `--name=value` and `--set name=value` settings from the command line."""

from __future__ import annotations

from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.settings import normalise_key, parse_pair


def parse_extra(args: list[str], sets: list[str] | None = None) -> dict[str, str]:
    """Settings given as extra options or `--set` pairs -> {normalised name: raw string value}.

    One setting given twice with different values is refused, whichever form and order: a
    silent winner would run another experiment than the one the user meant.
    """
    given = [(parse_pair(item, "--set"), f"--set {item}") for item in sets or []]
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise FwbenchError(f"unexpected argument {tok!r}: settings are given as --NAME VALUE")
        if "=" in tok:
            given.append((parse_pair(tok, "option"), tok))
            i += 1
        else:
            if i + 1 >= len(args):
                raise FwbenchError(f"option {tok} needs a value")
            given.append(((normalise_key(tok), args[i + 1].strip()), f"{tok} {args[i + 1]}"))
            i += 2
    out: dict[str, str] = {}
    first: dict[str, str] = {}
    for (key, value), typed in given:
        if key in out and out[key] != value:
            raise FwbenchError(f"conflicting values for {key}: {first[key]} and {typed}; "
                               "give each setting once")
        out[key] = value
        first.setdefault(key, typed)
    return out


def check_number(value: float | None, name: str, low: float | None = None,
                 open_low: bool = False) -> None:
    """FwbenchError for an option's number that is not finite or below `low` (None: unset)."""
    if value is None:
        return
    bound = "" if low is None else f" {'>' if open_low else '>='} {low:g}"
    below = low is not None and (value <= low if open_low else value < low)
    if value != value or value in (float("inf"), float("-inf")) or below:
        raise FwbenchError(f"invalid --{name} {value}: expected a finite number{bound}")


def check_out(path: Path | None, name: str = "out", kind: str = "directory") -> None:
    """FwbenchError for an output path at or under a file (`kind` directory), or under a file
    or at a directory (`kind` file); checked before anything is written."""
    if path is None:
        return
    if kind == "file" and path.is_dir():
        raise FwbenchError(f"invalid --{name} {path}: it is a directory; expected a file name")
    first = path if kind == "directory" else path.parent
    for p in (first, *first.parents):
        if p.exists():
            if not p.is_dir():
                raise FwbenchError(f"--{name} {path} is not writable: {p} is a file; expected "
                                   f"a {kind} path whose parents are directories")
            return
