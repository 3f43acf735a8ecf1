"""How a result shows itself: a one-line summary, HTML for a notebook, rich for a terminal.

The model cannot import the views (``render`` sits above it), so the views register one
presenter per kind here, as ``records`` takes each result's JSON; the package names the
module that registers them (``hatinspect/__init__.py``), loaded the first time a result is
shown, so that importing hatinspect or opening a file loads none of it.
"""

from __future__ import annotations

from collections.abc import Callable

KINDS = ("summary", "html", "rich")

_presenters: dict[str, Callable[[object], object]] = {}
_loaders: list[Callable[[], object]] = []


def presenter(kind: str):
    """Decorator: ``fn(result)`` presents any result as ``kind`` (one of ``KINDS``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")

    def register(fn: Callable[[object], object]):
        _presenters[kind] = fn
        return fn

    return register


def load_with(loader: Callable[[], object]) -> None:
    """Call ``loader`` (which imports the presenters) the first time one is asked for."""
    _loaders.append(loader)


def present(kind: str, result) -> object | None:
    """``result`` presented as ``kind``; None where no view is registered for it."""
    while kind not in _presenters and _loaders:
        _loaders.pop(0)()
    fn = _presenters.get(kind)
    return None if fn is None else fn(result)
