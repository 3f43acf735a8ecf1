"""How every result shows itself (``hatinspect.model.presenters``): its one-line summary
for ``repr``, HTML for a notebook, and the command's tables for rich. The package loads
this module the first time a result is shown."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.text import Text

from hatinspect.model.presenters import presenter

# `runs` and `tables` register every result's tables (a report's too) on `layout.tables`
from hatinspect.render import html, runs, summaries, trajectory  # noqa: F401
from hatinspect.render import tables as _views  # noqa: F401
from hatinspect.render.layout import Note, tables


@presenter("summary")
def summary(result) -> str:
    return summaries.summary(result)


@presenter("html")
def html_of(result) -> str:
    return html.html(result)


@presenter("rich")
def rich_of(result) -> Tables:
    return Tables(result)


class Tables:
    """A result's tables, laid out for the console's width when printed (folded as the
    command folds them); notes last, dimmed."""

    def __init__(self, result) -> None:
        self.result = result

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        renderables = tables(self.result, width=options.max_width)
        notes = list(dict.fromkeys(r for r in renderables if isinstance(r, Note)))
        shown = [r for r in renderables if not isinstance(r, Note)]
        yield Group(*shown, *(Text(f"note: {note}", "dim") for note in notes))
