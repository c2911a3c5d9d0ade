"""Parsing `--name value`, `--name=value` and `--set name=value` settings from the command line."""

from __future__ import annotations

from fwbench.errors import FwbenchError
from fwbench.settings import normalise_key, parse_pair, parse_pairs


def parse_extra(args: list[str], sets: list[str] | None = None) -> dict[str, str]:
    """Settings given as extra options or `--set` pairs -> {normalised name: raw string value}."""
    out = parse_pairs(sets, "--set")
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise FwbenchError(f"unexpected argument {tok!r}: settings are given as --NAME VALUE")
        if "=" in tok:
            key, value = parse_pair(tok, "option")
            out[key] = value
            i += 1
        else:
            if i + 1 >= len(args):
                raise FwbenchError(f"option {tok} needs a value")
            out[normalise_key(tok)] = args[i + 1]
            i += 2
    return out
