"""The compiled fast-weights kernel (fastweights_kernel.c) for the CPU path, loaded by the
shared loader in native.py (compiled once per scalar type, cached in a private directory, torch's
BLAS gemm for the slow-weight products)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from fwbench.models import native

SOURCE = Path(__file__).with_name("fastweights_kernel.c")


class Args(ctypes.Structure):
    """Mirror of `fw_args` in fastweights_kernel.c (same field order)."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "H", "S", "L", "stop_grad", "has_G",
                                                "need_A0")]
                + [("eta", ctypes.c_double), ("eps", ctypes.c_double)]
                + [(n, ctypes.c_void_p) for n in (
                    "cx", "h0", "W", "A0", "g", "b", "gp", "bp", "pw", "prev", "Y", "Yb", "Q", "XH", "RS",
                    "XP", "RP", "AB", "dY", "G", "DS", "DSb", "D", "dW", "dh0", "dg", "db", "dgp",
                    "dbp", "work", "gemm")])


KERNEL = native.Kernel("fastweights", SOURCE, ("fw_forward", "fw_backward"), Args)
load = KERNEL.load  # dtype -> the library, or None when no kernel can run
library_path = KERNEL.library_path
LOADS = KERNEL.loads
_compile = KERNEL.compile
