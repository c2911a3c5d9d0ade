"""The package's layering, read from its imports with `ast`: tasks, models and data never reach
up into commands, sweep, report, bench or the CLI; report never imports torch; no module import
cycle (imports inside functions count: they run too)."""

from __future__ import annotations

import ast
from pathlib import Path

import fwbench

ROOT = Path(fwbench.__file__).parent
LOW = ("tasks", "models", "data")
HIGH = ("commands", "sweep", "report", "bench", "cli")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The fwbench modules `name` imports (a package's __init__ counts for `from pkg import x`
    only when x is not a module of its own)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".")[:len(name.split(".")) - node.level + is_pkg]
                base = ".".join(pkg + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _area(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_lower_layers_never_import_upper_ones():
    bad = [(m, d) for m, deps in _graph().items() if _area(m) in LOW
           for d in deps if _area(d) in HIGH]
    assert not bad, bad


def test_report_never_imports_torch():
    for name, path in _modules().items():
        if _area(name) != "report":
            continue
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "torch"], name


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError(" -> ".join(path[path.index(d):] + [m, d]))
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_checker_sees_imports():
    """The graph is not empty by accident: known arrows are found."""
    graph = _graph()
    assert "fwbench.tasks.glimpses" in graph["fwbench.tasks.mnist"]
    assert "fwbench.report.benchplot" in graph["fwbench.report.bench"]
    assert "fwbench.settings" in graph["fwbench.config"]
