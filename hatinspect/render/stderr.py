"""What a command says on stderr beside its output: notes, lines about what it wrote, and
the details ``-v`` asks for. ``--quiet`` silences all of them (errors are not said here);
JSON keeps its notes, which are part of the record."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Verbosity:
    quiet: bool = False
    verbose: bool = False


verbosity: ContextVar[Verbosity] = ContextVar("hatinspect_verbosity", default=Verbosity())  # noqa: B039 (frozen)


@contextmanager
def speaking(quiet: bool = False, verbose: bool = False) -> Iterator[Verbosity]:
    """Notes and details inside the block as ``--quiet`` and ``-v`` ask."""
    token = verbosity.set(Verbosity(quiet, verbose))
    try:
        yield verbosity.get()
    finally:
        verbosity.reset(token)


def say(line: str) -> None:
    """A line on stderr (what was written, what was read), unless quiet."""
    if not verbosity.get().quiet:
        print(line, file=sys.stderr)


def note(text: str) -> None:
    """A caveat about the output: ``note: ...`` on stderr, unless quiet."""
    say(f"note: {text}")


def detail(text: str) -> None:
    """What ``-v`` adds: ``detail: ...`` on stderr."""
    if verbosity.get().verbose:
        print(f"detail: {text}", file=sys.stderr)
