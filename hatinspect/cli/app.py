"""The Typer application and the entry point.

The app imports the command modules, which declare their commands in
``hatinspect.cli.registry``, and registers each; no command module imports the app.
Heavy libraries (torch, matplotlib) are imported inside the commands that need them.
"""

import gc
import os
import sys
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

import hatinspect
from hatinspect.cli import (  # noqa: F401
    inspect_commands,
    run_commands,
    train_command,
    trajectory_command,
)
from hatinspect.cli.errors import INTERRUPTED, fail, one_line_errors, usage_message
from hatinspect.cli.help import TypedPlaceholders
from hatinspect.cli.registry import COMMANDS
from hatinspect.cli.streams import with_stream_options


class _PlainFlags:
    """Flags show no value placeholder in --help (Typer would show ``<bool>``)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_PlainFlags, TypedPlaceholders, TyperCommand):
    pass


class _OneLineUsageErrors(_PlainFlags, TyperGroup):
    """Usage errors (unknown option, missing argument, bad value) as one line, exit 2,
    like every other error, instead of a framed message after the usage line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _forget_unreadable_sizes()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:  # the parser's usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":  # no command: the help is the answer
                if exc.format_message().strip():  # rich has printed it already otherwise
                    exc.show()
            else:
                context = getattr(exc, "ctx", None)
                where = context.command_path if context else "hatinspect"
                fail(usage_message(exc), f"see {where} --help", code=exc.exit_code)
            code = exc.exit_code
        except typer.Abort:
            fail("aborted")
            code = 1
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


def _forget_unreadable_sizes() -> None:
    """``COLUMNS`` / ``LINES`` that are no plain number ("²", 5,000 digits) are dropped, as
    if unset: rich would take them for a size and raise."""
    for name in ("COLUMNS", "LINES"):
        value = os.environ.get(name)
        if value is not None and not (value.isascii() and value.isdigit() and len(value) < 7):
            del os.environ[name]


app = typer.Typer(
    name="hatinspect",
    cls=_OneLineUsageErrors,
    help="Look inside HAT / AdaHAT continual-learning networks.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


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


def _register(commands) -> None:
    for declared in commands:
        function = with_stream_options(declared.function, declared.name)
        wrapped = one_line_errors(function, declared.name)
        app.command(declared.name, cls=_Command, **declared.options)(wrapped)


# each command module keeps torch and matplotlib out of its imports
_register(COMMANDS)


def main() -> None:
    # overlap's matrix product gains little from a second BLAS thread and loses much when
    # the other core is busy (benchmarks/bench_scaling.py). Set before numpy loads; a value
    # the user set wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app()
    except KeyboardInterrupt:  # before or after a command's own work
        fail("interrupted")
        sys.exit(INTERRUPTED)
    finally:
        # The process ends here. Frozen, what is alive is left out of the interpreter's
        # last collections, which walk every object torch made (README, "Leaving").
        gc.freeze()
