"""Loading compiled CPU kernels (the C sources next to this file) with ctypes.

A `Kernel` names one C source and the functions it exports. Its source is compiled on first
use with the system C compiler, once per scalar type (-DREAL=float|double), into a cache
directory keyed by a hash of the source (with the local headers it includes), the flags and
the CPU, so later runs load it in milliseconds. Without a working compiler `Kernel.load`
returns None and callers use their torch path. Matrix products inside a kernel call the BLAS
gemm that torch itself links when it is exported (`torch_gemm`; each kernel checks it once
against its own loops), otherwise plain loops.

A library in the cache runs inside every fwbench process, so one another user could have
planted is refused: the cache directory and the library must belong to the current user and be
writable by no one else. A build goes to a private temporary file, then is renamed into place.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from fwbench.errors import FwbenchError

FLAGS = ("-O3", "-fopenmp-simd", "-fPIC", "-shared")
NATIVE_FLAGS = ("-march=native",)
REAL = {torch.float32: "float", torch.float64: "double"}


def cache_dir() -> Path:
    """Where compiled kernels live: $FWBENCH_KERNEL_CACHE, else the user's cache directory."""
    if os.environ.get("FWBENCH_KERNEL_CACHE"):
        return Path(os.environ["FWBENCH_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fwbench" / "kernels"


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(keep))
    except OSError:
        return platform.processor() + platform.machine()


def check_private(path: Path) -> None:
    """FwbenchError unless `path` belongs to the current user and no one else may write it."""
    st = path.stat()
    problem = None
    if st.st_uid != os.getuid():
        problem = f"it belongs to uid {st.st_uid}, not to you (uid {os.getuid()})"
    elif st.st_mode & 0o022:
        problem = f"group or others may write it (mode {st.st_mode & 0o777:o})"
    if problem:
        raise FwbenchError(f"refusing to load the compiled kernel from {path}: {problem}; "
                           "delete it, or set FWBENCH_KERNEL_CACHE to a private directory")


class Kernel:
    """One compiled kernel: C source `source`, cached as `<name>_<real>_<hash>.so`, exporting
    `functions`, each taking one pointer to the argument structure `args` (a ctypes.Structure
    mirroring the C struct); `flags` are compiler flags of its own, after the common ones."""

    def __init__(self, name: str, source: Path, functions: tuple[str, ...], args: type,
                 flags: tuple[str, ...] = ()):
        self.name, self.source, self.functions, self.args = name, source, functions, args
        self.flags = flags
        self.loads: dict[torch.dtype, dict] = {}  # what `load` did, for benchmark records
        self.load = lru_cache(maxsize=None)(self._load)  # load.cache_clear() forgets
        # torch's BLAS inside the kernel, once it passes its check (tests turn it off); `probe`
        # (set by the kernel's module): dtype -> f, f(gemm address or None) -> the kernel's
        # output on a small problem with that gemm or with its own loops
        self.blas, self.probe = True, None
        self._checked_gemm = lru_cache(maxsize=None)(
            lambda dtype: checked_gemm(dtype, self.probe(dtype)))

    def gemm(self, dtype: torch.dtype) -> int | None:
        """The gemm address the kernel should use now (None: its own loops)."""
        return self._checked_gemm(dtype) if self.blas and self.probe else None

    def describe(self, device: torch.device) -> dict:
        """Whether the kernel serves this device, where it is, how it was loaded (for bench
        records)."""
        if device.type != "cpu" or self.load(torch.float32) is None:
            return {"fused": False}
        return {"fused": True, "blas": self.gemm(torch.float32) is not None,
                **self.loads.get(torch.float32, {})}

    def texts(self) -> list[str]:
        """The source and the local headers it includes (`#include "name.h"`, next to it)."""
        text = self.source.read_text()
        headers = re.findall(r'^#include "([^"]+)"', text, flags=re.MULTILINE)
        return [text, *((self.source.parent / h).read_text() for h in headers)]

    def library_path(self, dtype: torch.dtype) -> Path:
        """Where the kernel for `dtype` is cached, named by a hash of what its build depends on."""
        real = REAL[dtype]
        parts = [*self.texts(), real, *FLAGS, *self.flags, *NATIVE_FLAGS, _cpu_id(), sys.platform]
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
        return cache_dir() / f"{self.name}_{real}_{key}.so"

    def compile(self, real: str, out: Path) -> bool:
        """Compile for one scalar type into `out` atomically; False if no compiler works."""
        cc = (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
              or shutil.which("clang"))
        if cc is None:
            return False
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_private(out.parent)
        for extra in (NATIVE_FLAGS, ()):
            fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
            os.close(fd)
            cmd = [cc, *FLAGS, *self.flags, *extra, f"-DREAL={real}", str(self.source), "-o", tmp,
                   "-lm"]
            done = subprocess.run(cmd, capture_output=True).returncode == 0
            if done:
                os.replace(tmp, out)
                for old in out.parent.glob(f"{self.name}_{real}_*.so"):  # older sources' builds
                    if old != out:
                        old.unlink(missing_ok=True)
                return True
            os.unlink(tmp)
        return False

    def available(self, x: torch.Tensor) -> bool:
        """Whether the kernel can run on tensors like x (CPU, float32 or float64, compiled)."""
        return x.device.type == "cpu" and self.load(x.dtype) is not None

    def run(self, fn: str, args: ctypes.Structure, tensors: dict, dtype: torch.dtype) -> None:
        """Call function `fn` with `args`, its pointer fields set from `tensors` (field name ->
        tensor, or None for a null pointer)."""
        for name, t in tensors.items():
            setattr(args, name, None if t is None else t.data_ptr())
        getattr(self.load(dtype), fn)(ctypes.byref(args))

    def _load(self, dtype: torch.dtype):
        """The compiled library for `dtype` (float32 or float64), or None if unavailable."""
        if dtype not in REAL or os.environ.get("FWBENCH_NO_KERNEL"):
            return None
        real, started = REAL[dtype], time.perf_counter()
        path = self.library_path(dtype)
        cached = path.exists()
        if cached:  # before anything of it runs
            check_private(path.parent)
            check_private(path)
        try:
            if not cached and not self.compile(real, path):
                return None
            lib = ctypes.CDLL(str(path))
        except OSError:
            return None
        self.loads[dtype] = {"path": str(path), "cached": cached,
                             "seconds": round(time.perf_counter() - started, 3)}
        for fn in self.functions:
            getattr(lib, fn).argtypes = [ctypes.POINTER(self.args)]
            getattr(lib, fn).restype = None
        return lib


@lru_cache(maxsize=None)
def torch_gemm(dtype: torch.dtype) -> int | None:
    """Address of the Fortran gemm (sgemm_/dgemm_) exported by torch's CPU library, if any."""
    if sys.byteorder != "little" or os.environ.get("FWBENCH_NO_BLAS"):
        return None  # kernels pass 64-bit integers, read as 32-bit only on little-endian
    name = {torch.float32: "sgemm_", torch.float64: "dgemm_"}[dtype]
    libdir = Path(torch.__file__).parent / "lib"
    for lib_path in sorted(libdir.glob("libtorch_cpu.*")):
        try:
            return ctypes.cast(getattr(ctypes.CDLL(str(lib_path)), name), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    return None


def checked_gemm(dtype: torch.dtype, probe) -> int | None:
    """torch's BLAS gemm for `dtype` if a kernel's output on a small problem with it,
    `probe(address)`, agrees with the output of the kernel's own loops, `probe(None)`."""
    ptr = torch_gemm(dtype)
    if ptr is None:
        return None
    loops, blas = probe(None), probe(ptr)
    return ptr if torch.allclose(loops, blas, rtol=1e-4, atol=1e-5) else None


def check_inputs(kernel: str, want: dict, dtype: torch.dtype) -> None:
    """FwbenchError unless every tensor of `want` (name -> (tensor or None, shape)) has its
    shape, `dtype` and is on the CPU: the C kernels trust what they are given."""
    for name, (t, shape) in want.items():
        if t is None:
            continue
        if tuple(t.shape) != shape or t.dtype != dtype or t.device.type != "cpu":
            raise FwbenchError(f"{kernel} kernel: {name} is {t.dtype} {tuple(t.shape)} on "
                               f"{t.device}; expected {dtype} {shape} on the CPU")


def no_kernel_reason(p: torch.Tensor) -> str:
    """Why a compiled kernel is unavailable for tensors like `p`."""
    if p.device.type != "cpu":
        return f"device {p.device.type} is not CPU"
    if p.dtype not in REAL:
        return f"dtype {p.dtype} is not float32/float64"
    if os.environ.get("FWBENCH_NO_KERNEL"):
        return "FWBENCH_NO_KERNEL is set"
    return "the C kernel did not compile (no working C compiler)"


class KernelChoice:
    """How a model with a compiled CPU kernel (`impl = "fused"`) beside torch paths resolves
    its `impl` setting, and what its run record says about it. The model sets `kernel` (a
    module whose `available(x)` tells whether the kernel runs on x), `step_impl` (what `step`
    runs) and, unless it is `torch`, `torch_impl(x)` (what `auto` falls back to)."""

    kernel: Any = None
    step_impl = "reference"

    def torch_impl(self, x: torch.Tensor) -> str:
        """What `auto` runs without the kernel."""
        return "torch"

    def choose_impl(self, x: torch.Tensor) -> str:
        """The implementation `forward` uses for x[B, T, D] (resolves `auto`)."""
        impl = self.cfg.impl
        if impl == "fused" and not self.kernel.available(x):
            raise FwbenchError("impl=fused needs float32/float64 CPU tensors and a working C "
                               "compiler (cc); use impl=auto to fall back to torch")
        if impl != "auto":
            return impl
        return "fused" if self.kernel.available(x) else self.torch_impl(x)

    def implementation(self, seq_len: int | None = None) -> dict[str, str]:
        """The implementation `forward` runs for `seq_len` steps (None: `step`), and why the
        fused kernel did not run when `auto` fell back."""
        if seq_len is None:
            return {"impl": self.step_impl, "reason": "stepped one input at a time"}
        p = next(self.parameters())
        impl = self.choose_impl(p.new_empty(1, seq_len, self.input_size))
        if impl == "fused" or self.cfg.impl != "auto":
            return {"impl": impl}
        return {"impl": impl, "reason": no_kernel_reason(p)}
