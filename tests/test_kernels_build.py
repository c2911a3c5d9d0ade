"""Every compiled kernel builds wherever a C compiler is there: a kernel that stops compiling
would otherwise be skipped silently, every model falling back to its torch path."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from fwbench.models import (alstm_fused, conv_fused, delta_fused, fastweights_native, gru_fused,
                            recurrent_delta_fused)

KERNELS = [m.KERNEL for m in (alstm_fused, conv_fused, delta_fused, fastweights_native,
                              gru_fused, recurrent_delta_fused)]
COMPILER = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") \
    or shutil.which("clang")


@pytest.mark.skipif(COMPILER is None or bool(os.environ.get("FWBENCH_NO_KERNEL")),
                    reason="no C compiler, or the kernels are switched off")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_every_kernel_compiles_and_loads(kernel, dtype, tmp_path, monkeypatch):
    monkeypatch.setenv("FWBENCH_KERNEL_CACHE", str(tmp_path))
    kernel.load.cache_clear()
    try:
        assert kernel.load(dtype) is not None, f"{kernel.source.name} did not compile"
        assert kernel.library_path(dtype).parent == tmp_path
    finally:
        kernel.load.cache_clear()  # later tests load the real cache again
