"""The error policy of every command: one line on stderr, the exit code, and a traceback
only when ``HATINSPECT_DEBUG`` asks for it."""

import functools
import os
import sys
from collections.abc import Callable

import typer
from typer.exceptions import TyperException

from hatinspect.model.errors import HatinspectError
from hatinspect.model.extras import missing_dependency

DEBUG_ENV = "HATINSPECT_DEBUG"


def fail(message: str, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print one error line (and an optional hint) on stderr; return the Exit to raise."""
    line = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    print(line, file=sys.stderr)
    return typer.Exit(code)


def one_line_errors(fn: Callable, name: str) -> Callable:
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
