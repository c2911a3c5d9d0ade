"""Every `docs/paper.md §N` reference in the tree names a section that exists, with its anchor."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "docs" / "paper.md"
TEXT_SUFFIXES = {".py", ".md", ".toml", ".c", ".txt", ".cfg", ".ini", ".yml", ".yaml"}
SECTION = r"\d+(?:\.\d+)*"
OLD_NAME = "PAPER" + ".md"  # spelt in two parts so that this file does not match itself


def _sections() -> dict[str, int]:
    """Section number -> line of its heading in docs/paper.md."""
    found = {}
    for i, line in enumerate(PAPER.read_text(encoding="utf-8").splitlines()):
        m = re.match(rf"#+ §({SECTION}) \S", line)
        if m:
            assert m[1] not in found, f"section §{m[1]} twice in docs/paper.md"
            found[m[1]] = i
    return found


def _text_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix in TEXT_SUFFIXES or name == "Makefile":
                yield path, path.read_text(encoding="utf-8", errors="replace")


def _where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


def test_every_section_has_a_stable_anchor_just_before_it():
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    sections = _sections()
    assert {"1", "1.1", "1.5", "2", "3.1", "3.2", "3.3", "3.4", "4", "4.5"} <= set(sections)
    for number, i in sections.items():
        # a blank line between: an HTML line directly above would swallow the heading
        assert lines[i - 2:i] == [f'<a id="s{number}"></a>', ""], f"§{number}: no anchor s{number}"


def test_every_section_reference_resolves():
    sections, bad, seen = _sections(), [], 0
    for path, text in _text_files():
        for m in re.finditer(rf"§({SECTION})", text):
            seen += 1
            if m[1] not in sections:
                bad.append(f"{_where(path, text, m.start())}: §{m[1]}")
        for m in re.finditer(rf"docs/paper\.md#s({SECTION})", text):
            if m[1] not in sections:
                bad.append(f"{_where(path, text, m.start())}: #s{m[1]}")
    assert seen > 20, "the scan found almost no references: is it looking in the right place?"
    assert not bad, "references to sections docs/paper.md lacks:\n" + "\n".join(bad)


def test_references_name_a_section_the_one_way():
    # a bare number or "section N" after the file name would escape the check above
    bad = []
    for path, text in _text_files():
        for m in re.finditer(r"docs/paper\.md(?![ \t]+§\d|#s\d)[ \t]+(?:sections?[ \t]+)?\d", text):
            bad.append(_where(path, text, m.start()))
    assert not bad, "write references as `docs/paper.md §N`:\n" + "\n".join(bad)


def test_no_reference_to_the_old_file_name_remains():
    bad = [_where(path, text, m.start()) for path, text in _text_files()
           for m in re.finditer(re.escape(OLD_NAME), text)]
    assert not bad, f"{OLD_NAME} is not in the repository; cite docs/paper.md §N:\n" + "\n".join(bad)
