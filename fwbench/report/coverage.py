"""How often an interval method's 95% interval holds the true mean, measured on many small
samples from distributions whose mean is known: the check behind the report's choice of
interval (docs/statistics.md). `python -m fwbench.report.coverage` prints the table.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from fwbench.report.stats import LEVEL, interval

Sampler = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]

# name -> (draw [reps, n] values, their true mean)
DISTRIBUTIONS: dict[str, tuple[Sampler, float]] = {
    "normal": (lambda rng, size: rng.normal(0.0, 1.0, size), 0.0),
    # right-skewed, like a run time or a loss
    "lognormal": (lambda rng, size: rng.lognormal(0.0, 1.0, size), math.exp(0.5)),
    # bounded and skewed, like a test error rate near 0: Beta(0.5, 5), mean 1/11
    "error rate": (lambda rng, size: rng.beta(0.5, 5.0, size), 0.5 / 5.5),
}


def coverage(distribution: str, n: int, method: str, reps: int = 2000, seed: int = 0,
             resamples: int = 999, level: float = LEVEL) -> float:
    """The fraction of `reps` samples of size `n` whose interval holds the true mean."""
    draw, true_mean = DISTRIBUTIONS[distribution]
    x = draw(np.random.default_rng(seed), (reps, n))  # [reps, n]: one sample per row
    low, high = interval(x, method, level, resamples, axis=1)
    return float(np.mean((low <= true_mean) & (true_mean <= high)))


def table(sizes=(3, 5, 10), methods=("percentile", "bca", "t"), reps: int = 4000) -> str:
    """Markdown: coverage of each method at each n and distribution."""
    header = "| distribution | n | " + " | ".join(methods) + " |"
    lines = [header, "|:---|---:|" + "---:|" * len(methods)]
    for name in DISTRIBUTIONS:
        for n in sizes:
            cells = [f"{coverage(name, n, m, reps):.3f}" for m in methods]
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table())
