"""The Typer application, its error policy and the entry point.

Commands live in sibling modules and register themselves with :func:`command`;
heavy libraries (torch, matplotlib) are imported inside the commands that need them.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

import hatinspect
from hatinspect.core.errors import HatinspectError

DEBUG_ENV = "HATINSPECT_DEBUG"

app = typer.Typer(
    name="hatinspect",
    help="Look inside HAT / AdaHAT continual-learning networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print one error line (and an optional hint) on stderr; return the Exit to raise."""
    line = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    print(line, file=sys.stderr)
    return typer.Exit(code)


def _one_line_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (HatinspectError, OSError) as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(str(exc), f"set {DEBUG_ENV}=1 for a traceback") from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None

    return wrapper


def command(*args, **kwargs) -> Callable[[Callable], Callable]:
    """Register a command whose known failures become one line on stderr and exit 1."""

    def register(fn: Callable) -> Callable:
        app.command(*args, **kwargs)(_one_line_errors(fn))
        return fn

    return register


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
    # The matrix products of an inspection (overlap's) are many and small: one BLAS thread
    # is as fast on a quiet machine, and far faster when the cores are busy. Set before
    # numpy loads; a value the user set wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _register_commands()
    app()
