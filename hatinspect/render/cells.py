"""How numbers, shapes and headings are written in a table's cells, for every view."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def heading(text: str) -> Text:
    # a line of its own rather than a table title, which would wrap at the table's width
    return Text(text, "bold")


# None: a count the file cannot know (a run known from its logs has no weights): "-"


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def of(n: int | None, fraction: float | None) -> str:
    return "-" if n is None else f"{n:,} ({fraction:.0%})"


def dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "-"


def new_table(*columns: str, text: int = 1) -> Table:
    """A rich table whose first `text` columns are text and the others right-aligned numbers."""
    table = Table()
    table.add_column(columns[0], no_wrap=True)  # layer names stay whole: they are --layer globs
    for name in columns[1:text]:
        table.add_column(name, overflow="fold")
    for name in columns[text:]:
        table.add_column(name, justify="right")
    return table
