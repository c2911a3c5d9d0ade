"""The fwbench command line: parses, validates, and calls the library.

Each command lives in a module of `fwbench.commands` that defines `register(app)`; this file
only assembles them and turns errors into one-line messages with exit codes.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from rich.console import Console

from fwbench.errors import EXIT_INTERRUPTED, FwbenchError

app = typer.Typer(
    name="fwbench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Benchmark recurrent memory architectures: fast weights, LSTMs, linear Transformers.")
err_console = Console(stderr=True)


def _register_commands() -> None:
    import fwbench.commands as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                      if not m.name.startswith("_")):
        importlib.import_module(f"fwbench.commands.{mod}").register(app)


_register_commands()


def main() -> None:
    """Entry point: FwbenchError -> 'error: ...' on stderr and exit code 2, no traceback."""
    try:
        app(standalone_mode=False)
    except FwbenchError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; run the same command again to resume")
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # usage errors of the option parser: it shows them itself
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            sys.exit(EXIT_INTERRUPTED)
        raise
