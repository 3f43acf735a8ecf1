"""Paths handed to hatinspect, checked before the system sees them.

The system's calls raise ``TypeError`` for what is not a path and ``ValueError`` for a
name with a NUL character; here either is one line the CLI shows like any other error.
"""

from __future__ import annotations

import os
from pathlib import Path

from hatinspect.model.errors import CheckpointError, HatinspectError, shown


def checkpoint_path(value) -> Path:
    """A checkpoint (or run folder) to read, as a ``Path``; ``CheckpointError`` if no path."""
    problem = _problem(value)
    if problem:
        raise CheckpointError(problem)
    return Path(value)


def output_path(value) -> Path:
    """A file to write, as a ``Path``; ``HatinspectError`` if no path."""
    problem = _problem(value)
    if problem:
        raise HatinspectError(problem)
    return Path(value)


def _problem(value) -> str | None:
    try:
        name = os.fspath(value)
    except TypeError:
        return f"a path must be a str or os.PathLike, got {shown(value)}"
    if not isinstance(name, str):  # bytes: Path() takes only text
        return f"a path must be text, got {shown(name)}"
    if "\x00" in name:
        return f"{name}: a path cannot contain a NUL character"
    return None
