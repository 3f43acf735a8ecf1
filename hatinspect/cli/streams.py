"""``--quiet`` and ``-v`` on every command, and the progress bars a terminal is shown.

`with_stream_options` gives a command function the two options (the app wraps each
command so): ``--quiet`` drops the progress bars and every note on stderr, errors kept;
``-v`` adds details (what read the file, its size, how long the command took). Bars are
drawn on stderr only when it is a terminal and not ``--quiet``; rich's progress is then
imported, so that a piped command pays nothing for it."""

import functools
import inspect
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Annotated

import typer

from hatinspect.cli.errors import fail
from hatinspect.render.stderr import detail, speaking

QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress and no notes on stderr (errors still are)."),
]
VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Say more on stderr: what read each file, its size, timings."
    ),
]
_ADDED = (
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False,
                      annotation=QuietOption),
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False,
                      annotation=VerboseOption),
)  # fmt: skip


def with_stream_options(fn: Callable, name: str) -> Callable:
    """`fn` with ``--quiet/-q`` and ``--verbose/-v`` added to its options."""

    @functools.wraps(fn)
    def wrapper(*args, quiet: bool = False, verbose: bool = False, **kwargs):
        if quiet and verbose:
            raise fail("--quiet and --verbose ask for opposite things; give one", code=2)
        started = time.perf_counter()
        with ExitStack() as stack:
            stack.enter_context(speaking(quiet, verbose))
            if not quiet and sys.stderr.isatty():
                from hatinspect.terminal.progress import bars

                stack.enter_context(bars())
            result = fn(*args, **kwargs)
            detail(f"{name} took {time.perf_counter() - started:.2f} s")
        return result

    signature = inspect.signature(fn)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *_ADDED]
    )
    wrapper.__annotations__ = {
        **fn.__annotations__, "quiet": QuietOption, "verbose": VerboseOption
    }  # fmt: skip
    return wrapper
