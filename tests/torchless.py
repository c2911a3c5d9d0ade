"""Running fwbench's command line in a fresh interpreter where importing torch fails, to prove
that a command never needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_CODE = textwrap.dedent("""
    import json, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, Block())
    from typer.testing import CliRunner
    from fwbench.cli import app
    outs = []
    for args in json.loads(sys.argv[1]):
        res = CliRunner().invoke(app, args, terminal_width=int(sys.argv[2]))
        outs.append([res.exit_code, res.output])
    assert "torch" not in sys.modules, "torch was imported"
    print(json.dumps(outs))
    """)


def invoke_without_torch(*commands: list[str], width: int = 100,
                         env: dict | None = None) -> list[tuple[int, str]]:
    """(exit code, output) of each command, run in turn in one interpreter without torch;
    AssertionError with its stderr if the interpreter failed (torch imported, a crash)."""
    proc = subprocess.run([sys.executable, "-c", _CODE, json.dumps(list(commands)), str(width)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [tuple(r) for r in json.loads(proc.stdout)]
