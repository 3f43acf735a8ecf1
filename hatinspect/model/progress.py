"""Progress of long work, reported to whoever asked for it.

The library's long loops (a report's runs, an overlap's layers, an audit's bytes) go
through `track`, a PyTorch file's loading through `reading`, a file written by a writer
that cannot count its bytes (safetensors') through `writing`; what shows it is the
`Reporter` in `reporter`, a context variable that holds a `Silent` one unless a caller
installs another with `reporting` (the command line, or an API function called with
``progress=True``). Nothing here draws or imports rich.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    def start(self, description: str, total: int | None, unit: str) -> object:
        """A new piece of work of `total` `unit`s ("bytes", "layers", "files"); its handle."""

    def advance(self, handle: object, amount: int) -> None: ...

    def finish(self, handle: object) -> None: ...


class Silent:
    """The default: work goes unreported."""

    def start(self, description: str, total: int | None, unit: str) -> object:
        return None

    def advance(self, handle: object, amount: int) -> None:
        pass

    def finish(self, handle: object) -> None:
        pass


SILENT = Silent()
reporter: ContextVar[Reporter] = ContextVar("hatinspect_progress", default=SILENT)


@contextmanager
def reporting(chosen: Reporter) -> Iterator[Reporter]:
    """`chosen` receives the progress of the work done inside the block."""
    token = reporter.set(chosen)
    try:
        yield chosen
    finally:
        reporter.reset(token)


def _ignore(amount: int) -> None:
    pass


@contextmanager
def task(
    description: str, total: int | None, unit: str = "bytes"
) -> Iterator[Callable[[int], None]]:
    """One piece of work done inside the block: the block calls what it is given with
    each amount done (bytes read, layers done)."""
    current = reporter.get()
    if current is SILENT:
        yield _ignore
        return
    handle = current.start(description, total, unit)
    try:
        yield lambda amount: current.advance(handle, amount)
    finally:
        current.finish(handle)


class _CountedFile(io.FileIO):
    """A file whose every read is reported, in bytes (buffered reads included)."""

    def __init__(self, path: str | os.PathLike, advance: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self._advance = advance

    def readinto(self, buffer) -> int | None:
        count = super().readinto(buffer)
        if count:
            self._advance(count)
        return count


@contextmanager
def reading(path: str | os.PathLike, description: str) -> Iterator[io.BufferedIOBase]:
    """``open(path, "rb")``, its bytes read reported against its size (as they are read:
    a reader that seeks back may count some twice)."""
    if reporter.get() is SILENT:
        with open(path, "rb") as f:
            yield f
        return
    with task(description, os.path.getsize(path)) as advance:
        with io.BufferedReader(_CountedFile(path, advance)) as f:
            yield f


def track(
    items: Iterable[T],
    description: str,
    *,
    unit: str = "layers",
    total: int | None = None,
    size: Callable[[T], int] | None = None,
) -> Iterator[T]:
    """Each of `items`, reported as one `unit` done once the loop's body is through with it
    (or ``size(item)`` of them: bytes). `total` defaults to ``len(items)`` or the sum of
    the sizes, where the items can be counted."""
    if reporter.get() is SILENT:
        yield from items
        return
    if size is not None:
        items = list(items)
        total = sum(map(size, items)) if total is None else total
    elif total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total, unit) as advance:
        for item in items:
            yield item
            advance(1 if size is None else size(item))


@contextmanager
def writing(path: str | os.PathLike, description: str) -> Iterator[None]:
    """The block writes `path` with a writer that cannot count its bytes (safetensors',
    whose file has its whole size, or no name, while it is written): reported as work of
    unknown length, done with the file's size once the block is through."""
    if reporter.get() is SILENT:
        yield
        return
    with task(description, None) as advance:
        yield
        advance(os.path.getsize(path))
