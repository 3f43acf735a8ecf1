"""Importing a command's heavy library (torch) without the collector walking it later."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Import torch (a command's heavy library) with the cyclic collector paused, then
    freeze what exists.

    torch's ~165,000 import-time objects live as long as the process: the collections its
    import sets off find nothing among them to free, and every full collection the
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
