"""Nothing from outside the user's control runs or is written: preset names stay inside the
results directory, and a planted kernel library in the compiled-kernel cache is refused."""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from fwbench.cli import app
from fwbench.errors import FwbenchError
from fwbench.models import fastweights_native as native
from fwbench.presets import load


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "", "x y", "/abs"])
def test_preset_name_must_be_plain(tmp_path, name):
    toml = tmp_path / "p.toml"
    toml.write_text(f'name = "{name}"\ntask = "retrieval"\n')
    with pytest.raises(FwbenchError, match="is not a plain name"):
        load(str(toml))


def test_preset_sweep_name_must_be_plain(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('task = "retrieval"\n[sweeps."../up"]\ngrid = { hidden = [8] }\n')
    with pytest.raises(FwbenchError, match="sweep '../up' is not a plain name"):
        load(str(toml))


def test_escaping_preset_writes_nothing_outside(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('name = "../../../x"\ntask = "retrieval"\n')
    results = tmp_path / "a" / "b" / "results"
    for cmd in (["sweep", "--dry-run"], ["report"]):
        out = CliRunner().invoke(app, [*cmd, "--preset", str(toml), "--results", str(results)])
        assert out.exit_code == 2 and "is not a plain name" in out.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["p.toml"]


@pytest.fixture
def kernel_cache(tmp_path, monkeypatch):
    cache = tmp_path / "kernels"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("FWBENCH_KERNEL_CACHE", str(cache))
    native.load.cache_clear()
    yield cache
    native.load.cache_clear()  # later tests load the real cache again


def _plant(mode: int) -> str:
    path = native.library_path(torch.float32)
    path.write_bytes(b"\x7fELF not really a library")
    path.chmod(mode)
    return str(path)


def test_planted_kernel_writable_by_others_is_refused(kernel_cache):
    _plant(0o666)
    with pytest.raises(FwbenchError, match="group or others may write it") as e:
        native.load(torch.float32)
    print(e.value)  # the message, in the test's log


def test_kernel_cache_writable_by_others_is_refused(kernel_cache):
    _plant(0o600)
    kernel_cache.chmod(0o777)
    with pytest.raises(FwbenchError, match=r"kernels: group or others may write it \(mode 777\)"):
        native.load(torch.float32)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_planted_kernel_of_another_user_is_refused(kernel_cache):
    os.chown(_plant(0o600), 12345, -1)
    with pytest.raises(FwbenchError, match="belongs to uid 12345, not to you"):
        native.load(torch.float32)


def test_private_build_is_loaded(kernel_cache):
    if native.load(torch.float32) is None:
        pytest.skip("no C compiler")
    path = native.library_path(torch.float32)
    assert path.stat().st_mode & 0o022 == 0 and path.stat().st_uid == os.getuid()
    assert not list(kernel_cache.glob("*.tmp"))


def test_a_changed_header_builds_a_new_library(tmp_path):
    """The cache key covers the local headers a source includes, not the source alone: a
    library built against an older header is never loaded for a newer one."""
    import ctypes

    from fwbench.models.native import Kernel

    (tmp_path / "k.c").write_text('#include "common.h"\nvoid f(void) {}\n')
    header = tmp_path / "common.h"
    header.write_text("#define A 1\n")
    kernel = Kernel("k", tmp_path / "k.c", ("f",), ctypes.Structure)
    before = kernel.library_path(torch.float32)
    header.write_text("#define A 2\n")
    assert kernel.library_path(torch.float32) != before
    assert kernel.texts() == ['#include "common.h"\nvoid f(void) {}\n', "#define A 2\n"]
