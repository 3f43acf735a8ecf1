"""The error policy of every command: one line on stderr, the exit code, and a traceback
only when ``HATINSPECT_DEBUG`` asks for it."""

import functools
import os
import sys
from collections.abc import Callable

import typer
from typer.exceptions import TyperException

from hatinspect.cli.help import number_range
from hatinspect.model.errors import HatinspectError
from hatinspect.model.extras import missing_dependency

DEBUG_ENV = "HATINSPECT_DEBUG"
INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print one error line (and an optional hint) on stderr; return the Exit to raise."""
    line = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    print(line, file=sys.stderr)
    return typer.Exit(code)


def one_line_errors(fn: Callable, name: str) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a pipe closed early fails here, not at the interpreter's exit
            return result
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            stdout_gone()
            raise typer.Exit(0) from None
        except ModuleNotFoundError as exc:  # an optional dependency: what to install
            missing = missing_dependency(exc, name)
            if missing is None or os.environ.get(DEBUG_ENV):
                raise
            raise fail(str(missing)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=INTERRUPTED) from None
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


def stdout_gone() -> None:
    """Point stdout at the null device once its reader has closed it, so that what is
    still buffered, flushed at exit, fails nowhere (Python's advice on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind stdout (captured)
        pass


def _os_error(exc: OSError) -> str:
    """An OS error as the file it concerns and the reason, without errno numbers."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason.lower()}" if exc.filename else reason


def usage_message(exc: TyperException) -> str:
    """A usage error in hatinspect's words: the option, what it accepts, what was given
    (never the parser's "Value error, ..." or "Input should be ...")."""
    param = getattr(exc, "param", None)
    kind = type(exc).__name__
    if param is None or kind not in ("BadParameter", "MissingParameter"):
        return getattr(exc, "message", None) or exc.format_message()
    name = max(param.opts, key=len) if param.param_type_name == "option" else _metavar(param)
    if kind == "MissingParameter":
        shown = f"{name} {_metavar(param)}" if param.param_type_name == "option" else name
        return f"{shown} is required"
    given = _given(exc)
    if given is None:  # a check of ours: its message says what is accepted
        return f"{name}: {exc.message}"
    return must_be(name, _accepted(param), given)


def must_be(option: str, accepted: str, given: object) -> str:
    """The one wording of a refused value: ``--format must be one of table, json, not 'x'``."""
    return f"{option} must be {accepted}, not {given!r}"


def _metavar(param) -> str:
    return param.metavar or param.name.upper()


def _given(exc) -> object | None:
    """The value the parser refused, when its own validation refused it."""
    cause = exc.__cause__
    if type(cause).__name__ != "ValidationError":
        return None
    errors = cause.errors()
    return errors[0].get("input") if errors else None


def _accepted(param) -> str:
    described = param.type_descriptor
    if described.choices is not None:
        return "one of " + ", ".join(str(getattr(c, "value", c)) for c in described.choices)
    annotation = described.annotation
    element = getattr(annotation, "__args__", (annotation,))[0]  # list[int]: int
    number = "a whole number" if element is int else "a number"
    words = number_range(described.parameter_info.min, described.parameter_info.max)
    if words is None:
        return number
    return f"{number} {'from ' if ' to ' in words else 'of '}{words}"
