"""Size limits checked from the settings before anything is allocated or written.

A typo such as `--hidden 1000000000` or `--n_train 1000000000000` would otherwise allocate
until the kernel's out-of-memory killer ends the process (or torch fails with a traceback),
after a run directory was made. The limits are coarse: far above any experiment of the paper
(hidden <= 400, 100,000 training strings), far below what would exhaust a large machine.
"""

from __future__ import annotations

from typing import Any, Mapping

from fwbench.errors import FwbenchError

MAX_MATRIX = 2**28  # floats in one hidden x hidden matrix (1 GiB): hidden <= 16384
MAX_BATCH_FLOATS = 2**33  # floats of a batch's B x T x width activations or B x H x H state
MAX_EXAMPLES = 10_000_000  # examples per data split


def check_sizes(flat: Mapping[str, Any]) -> None:
    """FwbenchError naming the limit a setting breaks; `flat` holds settings by name."""
    hidden = int(flat.get("hidden", 1))
    if hidden * hidden > MAX_MATRIX:
        raise FwbenchError(f"hidden {hidden} is beyond the size limit: a hidden x hidden "
                           f"matrix may hold at most {MAX_MATRIX} floats (hidden <= "
                           f"{int(MAX_MATRIX ** 0.5)})")
    for split in ("n_train", "n_valid", "n_test"):
        if split in flat and int(flat[split]) > MAX_EXAMPLES:
            raise FwbenchError(f"{split} {flat[split]} is beyond the size limit of "
                               f"{MAX_EXAMPLES} examples per split")
    batch = int(flat.get("batch_size", flat.get("batch", 1)))
    width = max(hidden, int(flat.get("input_size", 1)))
    per_example = max(hidden * hidden, int(flat.get("seq_len", 1)) * width)
    if batch * per_example > MAX_BATCH_FLOATS:
        raise FwbenchError(f"batch {batch} x {per_example} floats per example is beyond the "
                           f"size limit of {MAX_BATCH_FLOATS} floats per batch; use a smaller "
                           "batch, hidden or sequence")
