"""How settings and metrics are named for a reader: the paper's symbols and the units shown.

The one place that knows a setting's symbol (lam is λ) and how a summary key or a curve reads
in words ("test_error" is "test error", "valid/error" is "validation error"). Anything not
listed keeps its own name: nothing here guesses beyond these small maps.
"""

from __future__ import annotations

from typing import Any

# the paper's symbols for the settings it names by one (Ba et al. 2016, eq. 4)
SYMBOLS = {"lam": "λ", "eta": "η"}
# how metrics.csv's splits read in an axis label
SPLITS = {"valid": "validation", "train": "training", "eval": "evaluation", "test": "test"}
PERCENT = 100  # the display factor that means "in percent"


def setting(key: str) -> str:
    """A setting as a reader knows it: 'λ' for lam, else its own name."""
    return SYMBOLS.get(key, key)


def value(v: Any) -> str:
    """A setting's value, short: 0.5, 1, fastweights."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def assign(key: str, v: Any) -> str:
    """'λ=0.9'."""
    return f"{setting(key)}={value(v)}"


def assigns(pairs) -> str:
    """'λ=0.9 η=0.5 S=2' from (key, value) pairs."""
    return " ".join(assign(k, v) for k, v in pairs)


def metric(key: str) -> str:
    """A summary key or SPLIT/METRIC curve in words: 'test error', 'validation error'."""
    if "/" in key:
        split, name = key.split("/", 1)
        return f"{SPLITS.get(split, split)} {name.replace('_', ' ')}"
    head, _, rest = key.partition("_")
    if head in SPLITS and rest:
        return f"{SPLITS[head]} {rest.replace('_', ' ')}"
    return key.replace("_", " ")


def unit(scale: float) -> str:
    """' (%)' for scale 100, ' (x10)' for another factor, '' for 1."""
    if scale == PERCENT:
        return " (%)"
    return "" if scale == 1 else f" (x{scale:g})"


def default_scale(key: str) -> float:
    """The display factor of a summary key when no preset gives one: errors (fractions) in
    percent, as `fwbench run` prints them; anything else as it is."""
    return PERCENT if key.endswith("error") else 1


def default_bounds(key: str) -> tuple[float, float] | None:
    """The range of a summary key or curve when no preset gives one: fwbench's learners record
    errors and accuracies as fractions in [0, 1]; anything else is unbounded."""
    return (0.0, 1.0) if key.endswith(("error", "accuracy")) else None


def shown(v: float, scale: float) -> str:
    """A metric value in display units: '67.34%' in percent, else 4 significant digits."""
    return f"{v * scale:.2f}%" if scale == PERCENT else f"{v * scale:.4g}"
