"""`fwbench show`: a PNG of an image and its glimpses; bad requests are one-line errors."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fwbench.cli import app

runner = CliRunner()


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "faces" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(
                tmp_path / "faces" / name / f"{i}.png")
    return tmp_path / "faces"


def _show(*args):
    return runner.invoke(app, ["show", *map(str, args)])


def test_show_writes_a_png(tmp_path):
    out = tmp_path / "pics" / "g.png"
    res = _show("--task", "faces", "--dataset", "folder", "--faces_dir", _folder(tmp_path),
                "--size", "16", "--index", "1", "--out", out)
    assert res.exit_code == 0, res.output
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 100  # image beside glimpses


def test_show_bad_requests(tmp_path):
    faces = _folder(tmp_path)
    base = ["--task", "faces", "--dataset", "folder", "--faces_dir", faces, "--size", "16"]
    cases = [
        (["--task", "retrieval"], "task 'retrieval' has no images to show; choose one of"),
        ([*base, "--index", "99"], "invalid --index 99: the test split holds"),
        ([*base, "--split", "dev"], "invalid split 'dev'"),
        ([*base, "--out", tmp_path / "g.jpg"], "expected a file name ending in .png"),
        ([*base, "--hidden", "3"], "unknown setting 'hidden' for task 'faces'"),
    ]
    for args, message in cases:
        res = _show(*args)
        assert res.exit_code == 2, res.output
        assert message in " ".join(res.output.split())
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.jpg"))
