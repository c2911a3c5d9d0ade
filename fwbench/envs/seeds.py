"""Episode seeds for batched environments, shared by every episodic task."""

from __future__ import annotations

import numpy as np


def env_seeds(seed: int, stream: int, n: int) -> list[int]:
    """n distinct episode seeds derived from (seed, stream), e.g. stream 0 train, 1 evaluation."""
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(n)]
