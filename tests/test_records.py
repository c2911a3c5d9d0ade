"""atomic_write: whole content or the old file, never a temporary left behind; ordinary modes."""

from __future__ import annotations

import os
import stat

import pytest

from fwbench.records import atomic_write


def test_replaces_whole_content_with_the_mode_open_would_give(tmp_path):
    path = tmp_path / "out.csv"
    atomic_write(path, "first\n")
    atomic_write(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.csv"
    atomic_write(path, "old\n")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
