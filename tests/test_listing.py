"""`fwbench list` from its cache: the same text as from the classes, no torch, and a cache that
is rebuilt when the code changes or the file is damaged."""

from __future__ import annotations

import io
import json
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fwbench import listing
from fwbench.cli import app
from fwbench.registry import Entry
from torchless import invoke_without_torch

runner = CliRunner()
VIEWS = [(None, False), (None, True), ("models", True), ("tasks", False), ("learners", False)]


@pytest.fixture(scope="module")
def described():
    return listing.describe()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory of this test's own, and the file the listing goes to."""
    monkeypatch.setenv("FWBENCH_CACHE", str(tmp_path / "cache"))
    return listing.cache_path()


def _text(kinds, kind=None, brief=False, terminal=True) -> str:
    out = io.StringIO()
    listing.render(Console(file=out, width=100, force_terminal=terminal), kinds, kind, brief)
    return out.getvalue()


def _args(kind, brief):
    return ["list", *([kind] if kind else []), *(["--brief"] if brief else [])]


def test_text_from_the_cache_equals_text_from_the_classes(described, cache):
    listing.write_cache(cache, "k", described)
    cached = listing.read_cache(cache, "k")
    assert cached is not None
    for kind, brief in VIEWS:
        assert _text(cached, kind, brief) == _text(described, kind, brief)
    # the headline of a variant keeps its bracketed defaults and the table its marks
    text = _text(cached, "models", terminal=False)
    assert "[eta=0.0]" in text and "[P]" in text


def test_the_command_prints_the_same_cold_and_warm(cache):
    for kind, brief in VIEWS:
        cache.unlink(missing_ok=True)
        cold = runner.invoke(app, _args(kind, brief), terminal_width=120)
        assert cold.exit_code == 0, cold.output
        assert cache.is_file()
        warm = runner.invoke(app, _args(kind, brief), terminal_width=120)
        assert warm.exit_code == 0 and warm.output == cold.output


def test_a_warm_cache_lists_without_torch(cache, described):
    listing.write_cache(cache, listing.source_key(), described)
    views = (["list"], ["list", "models", "--brief"], ["list", "tasks"])
    outs = invoke_without_torch(*views, env={"FWBENCH_CACHE": str(cache.parent)})
    for args, (code, out) in zip(views, outs):
        assert code == 0, out
        assert out == runner.invoke(app, args, terminal_width=100).output


def test_a_changed_source_key_rebuilds(described, cache, monkeypatch):
    doctored = json.loads(json.dumps(described))
    doctored["models"][0]["summary"] = "a summary no class has"
    monkeypatch.setattr(listing, "source_key", lambda: "old")
    listing.write_cache(cache, "old", doctored)
    assert listing.listing() == doctored  # the key matches: the cache is believed
    monkeypatch.setattr(listing, "source_key", lambda: "new")
    assert listing.listing() == described
    assert json.loads(cache.read_text())["key"] == "new"


@pytest.mark.parametrize("content", [
    b'{"key": "k", "kinds": {"tasks": [', b"\xff\xfe\x00", b"[]", b"",
    b'{"key": "k", "kinds": {"tasks": [{"name": 1}], "models": [], "learners": []}}',
    b'{"key": "k", "kinds": {"tasks": []}}',
])
def test_a_corrupt_cache_is_ignored_and_rebuilt(described, cache, monkeypatch, content):
    monkeypatch.setattr(listing, "source_key", lambda: "k")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    assert listing.read_cache(cache, "k") is None
    assert listing.listing() == described
    assert listing.read_cache(cache, "k") == described


def test_an_unwritable_cache_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FWBENCH_CACHE", str(blocker / "cache"))  # under a file: no mkdir
    res = runner.invoke(app, ["list", "models", "--brief"])
    assert res.exit_code == 0, res.output
    assert "fastweights" in res.output and blocker.read_text() == ""


def test_a_bad_kind_writes_no_cache(cache):
    res = runner.invoke(app, ["list", "widgets"])
    assert res.exit_code == 2 and "unknown kind 'widgets'" in res.output
    assert not cache.parent.exists()


def test_a_plugin_module_edit_changes_its_key(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "lplug"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("class C: summary = 'one'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = Entry("x", "lplug.mod:C", {}, "model entry point 'x':")
    before = listing._entry_key(entry)
    (pkg / "mod.py").write_text("class C: summary = 'two'\n")
    after = listing._entry_key(entry)
    assert before[-1] is not None and before != after
    assert "lplug" not in sys.modules  # found, not imported
