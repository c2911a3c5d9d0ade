"""Parsing `--name value`, `--name=value` and `--set name=value` settings from the command line."""

from __future__ import annotations

from fwbench.errors import FwbenchError


def parse_extra(args: list[str], sets: list[str] | None = None) -> dict[str, str]:
    """Settings given as extra options or `--set` pairs -> {name: raw string value}."""
    out: dict[str, str] = {}
    for item in sets or []:
        if "=" not in item:
            raise FwbenchError(f"invalid --set {item!r}: expected NAME=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise FwbenchError(f"unexpected argument {tok!r}: settings are given as --NAME VALUE")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise FwbenchError(f"option {tok} needs a value")
            key, value = tok[2:], args[i + 1]
            i += 2
        out[key] = value
    return out
