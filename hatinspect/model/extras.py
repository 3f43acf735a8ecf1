"""Optional dependencies: which install provides a missing module, said in one line."""

from __future__ import annotations

from hatinspect.model.errors import HatinspectError

# top-level module -> what to pip install to get it
INSTALLS = {
    "torch": "hatinspect[torch]",
    "lightning": "hatinspect[lightning]",
    "sklearn": "hatinspect[digits]",
    "pandas": "pandas",
}


class MissingDependency(HatinspectError, ImportError):
    """An optional dependency that a command or function needs is not installed."""


def missing_dependency(exc: ModuleNotFoundError, purpose: str) -> MissingDependency | None:
    """The one-line error for `exc` when it is an optional dependency; None otherwise."""
    module = (exc.name or "").partition(".")[0]
    if module not in INSTALLS:
        return None
    return MissingDependency(
        f"{purpose} needs {module}, which is not installed: pip install '{INSTALLS[module]}'"
    )


def require(module: str, purpose: str):
    """Import `module`, or raise MissingDependency naming what to install."""
    from importlib import import_module

    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        missing = missing_dependency(exc, purpose)
        if missing is None:
            raise
        raise missing from None
