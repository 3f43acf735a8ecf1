"""The Typer application, its error policy and the entry point.

Commands live in sibling modules and register themselves with :func:`command`;
heavy libraries (torch, matplotlib) are imported inside the commands that need them.
"""

import functools
import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

import hatinspect
from hatinspect.model.errors import HatinspectError
from hatinspect.model.extras import missing_dependency

DEBUG_ENV = "HATINSPECT_DEBUG"


class _PlainFlags:
    """Flags show no value placeholder in --help (Typer would show ``<bool>``)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_PlainFlags, TyperCommand):
    pass


class _OneLineUsageErrors(_PlainFlags, TyperGroup):
    """Usage errors (unknown option, missing argument, bad value) as one line, exit 2,
    like every other error, instead of a framed message after the usage line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:  # the parser's usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":  # no command: the help is the answer
                if exc.format_message().strip():  # rich has printed it already otherwise
                    exc.show()
            else:
                context = getattr(exc, "ctx", None)
                where = context.command_path if context else "hatinspect"
                fail(exc.format_message(), f"see {where} --help", code=exc.exit_code)
            code = exc.exit_code
        except typer.Abort:
            fail("aborted")
            code = 1
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    name="hatinspect",
    cls=_OneLineUsageErrors,
    help="Look inside HAT / AdaHAT continual-learning networks.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print one error line (and an optional hint) on stderr; return the Exit to raise."""
    line = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    print(line, file=sys.stderr)
    return typer.Exit(code)


def _one_line_errors(fn: Callable, name: str) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except ModuleNotFoundError as exc:  # an optional dependency: what to install
            missing = missing_dependency(exc, name)
            if missing is None or os.environ.get(DEBUG_ENV):
                raise
            raise fail(str(missing)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None
        except HatinspectError as exc:  # bad input, said in its own words
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(str(exc)) from None
        except OSError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(_os_error(exc)) from None
        except Exception as exc:  # a bug: say so, and how to see where
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc}", f"set {DEBUG_ENV}=1 for a traceback"
            ) from None

    return wrapper


def _os_error(exc: OSError) -> str:
    """An OS error as the file it concerns and the reason, without errno numbers."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason.lower()}" if exc.filename else reason


def command(name: str, **kwargs) -> Callable[[Callable], Callable]:
    """Register a command whose known failures become one line on stderr and exit 1."""

    def register(fn: Callable) -> Callable:
        app.command(name, cls=_Command, **kwargs)(_one_line_errors(fn, name))
        return fn

    return register


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Import torch (a command's heavy library) with the cyclic collector paused, then
    freeze what exists.

    torch's ~165,000 import-time objects live as long as the process: the collections its
    import sets off find nothing among them to free (0.1 s), and every full collection the
    command sets off later would walk them all again. Frozen (``gc.freeze``), they are left
    out; what the command makes afterwards is collected as ever."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _print_version(value: bool) -> None:
    if value:
        print(f"hatinspect {hatinspect.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Look inside HAT / AdaHAT continual-learning networks."""


def _register_commands() -> None:
    # Importing a command module registers its commands; each keeps torch out of its imports.
    from hatinspect.cli import commands  # noqa: F401


def main() -> None:
    # overlap's matrix product (640 tasks x 19,840 units: 0.13-0.18 s on one thread of the
    # 2-core machine) gains at best a third from a second BLAS thread and takes 1.5-4x as
    # long when the other core is busy. Set before numpy loads; a value the user set wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _register_commands()
    try:
        app()
    finally:
        # The process ends here. Frozen, what is alive is left out of the interpreter's
        # last collections: after `import torch` they took 0.4-0.6 s of every exit.
        gc.freeze()
