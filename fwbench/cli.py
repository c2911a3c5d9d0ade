"""The fwbench command line: parses, validates, and calls the library.

Each command lives in a module of `fwbench.commands` that defines `register(app)`; this file
only assembles them. Every command is guarded: a FwbenchError (bad input) becomes a one-line
`error: ...` on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
import signal
import threading

import typer
from rich.console import Console
from rich.markup import escape

from fwbench.errors import EXIT_INTERRUPTED, FwbenchError, Terminated

err_console = Console(stderr=True)


def _terminate(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_interrupts():
    """While a command runs, SIGTERM interrupts it as Ctrl-C does (runs record it, resume)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _guard(fn):
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            with _sigterm_interrupts():
                return fn(*args, **kwargs)
        except FwbenchError as e:
            err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except Terminated as e:
            err_console.print(f"terminated ({signal.Signals(e.signum).name}); run the same "
                              "command again to resume")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; run the same command again to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return guarded


class _App(typer.Typer):
    """A Typer app whose commands report FwbenchError as one line with exit code 2."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(fn):
            register(_guard(fn))
            return fn

        return decorator


app = _App(
    name="fwbench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Benchmark recurrent memory architectures: fast weights, LSTMs, linear Transformers.")


def _register_commands() -> None:
    import fwbench.commands as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                      if not m.name.startswith("_")):
        importlib.import_module(f"fwbench.commands.{mod}").register(app)


_register_commands()


def main() -> None:
    app()
