"""The fwbench command line: parses, validates, and calls the library.

Each command lives in a module of `fwbench.commands` that defines `register(app)`; this file
only assembles them. Every command is guarded: a FwbenchError (bad input), a usage error and a
failed write (a full disk) each become a one-line `error: ...` on stderr and exit code 2, with
no traceback. Options are spelled `--dry-run` or `--dry_run`, as settings are.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import pkgutil
import signal
import sys
import threading

import typer
from rich.console import Console
from rich.markup import escape
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from fwbench.version import __version__
from fwbench.errors import EXIT_INTERRUPTED, EXIT_USAGE, FwbenchError, Terminated

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
            _error(str(e))
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a full disk, a file where a folder must be: the user's to fix
            _error(_describe_os_error(e))
            raise typer.Exit(EXIT_USAGE) from None
        except Terminated as e:
            err_console.print(f"terminated ({signal.Signals(e.signum).name}); run the same "
                              "command again to resume")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; run the same command again to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return guarded


def _error(message: str) -> None:
    """One line on stderr, whatever the terminal's width."""
    err_console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False,
                      soft_wrap=True)


_OS_ADVICE = {errno.ENOSPC: "free some space or choose another --results",
              errno.EDQUOT: "free some space or choose another --results",
              errno.EISDIR: "a directory stands where a file belongs: move it away",
              errno.ENOTDIR: "a file stands where a directory belongs: move it away",
              errno.EACCES: "choose a path you may write",
              errno.EPERM: "choose a path you may write",
              errno.EROFS: "choose a writable path"}


def _describe_os_error(e: OSError) -> str:
    where = f" {e.filename}" if e.filename else ""
    advice = _OS_ADVICE.get(e.errno, "check the path and the disk")
    return f"cannot use{where}: {e.strerror or e}; {advice}"


def _one_line_usage(run):
    """Run click's main; a usage error (unknown option, missing value) becomes one line."""
    try:
        rv = run()
    except click.exceptions.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _error(e.format_message() + hint)
        sys.exit(EXIT_USAGE)
    except typer.Abort:  # Ctrl-C at a prompt, a closed output pipe
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


class _Command(TyperCommand):
    """A command whose options may be spelled with `_` or `-`, with hidden old spellings
    (`aliases`), and whose help shows no value type for a plain flag."""

    aliases: dict[str, str] = {}

    def get_params(self, ctx):
        return _no_flag_types(super().get_params(ctx))

    def parse_args(self, ctx, args):
        known = {o for p in self.params for o in (*p.opts, *p.secondary_opts)}
        return super().parse_args(ctx, [self._spelling(a, known) for a in args])

    def _spelling(self, arg: str, known: set[str]) -> str:
        if not arg.startswith("--"):
            return arg
        name, eq, value = arg.partition("=")
        name = self.aliases.get(name, name)
        dashed = "--" + name[2:].replace("_", "-")
        return (dashed if name not in known and dashed in known else name) + eq + value


def _no_flag_types(params: list) -> list:
    for param in params:
        if getattr(param, "is_flag", False):  # a flag takes no value: help shows no <bool>
            param.display_type_rich = lambda ctx: None
    return params


class _Group(TyperGroup):
    def get_params(self, ctx):
        return _no_flag_types(super().get_params(ctx))

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        return _one_line_usage(lambda: super(_Group, self).main(*args, standalone_mode=False,
                                                               **kwargs))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fwbench {__version__}")
        raise typer.Exit()


class _App(typer.Typer):
    """A Typer app whose commands report FwbenchError as one line with exit code 2."""

    def command(self, *args, aliases: dict[str, str] | None = None, **kwargs):
        kwargs.setdefault("cls", type("Command", (_Command,), {"aliases": aliases or {}}))
        register = super().command(*args, **kwargs)

        def decorator(fn):
            register(_guard(fn))
            return fn

        return decorator


app = _App(
    name="fwbench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
    help="Benchmark recurrent memory architectures: fast weights, LSTMs, linear Transformers.")


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="print fwbench's version and exit")) -> None:
    """Benchmark recurrent memory architectures: fast weights, LSTMs, linear Transformers."""


def _register_commands() -> None:
    import fwbench.commands as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                      if not m.name.startswith("_")):
        importlib.import_module(f"fwbench.commands.{mod}").register(app)


_register_commands()


def main() -> None:
    app()
