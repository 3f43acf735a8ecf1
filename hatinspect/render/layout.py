"""Printing a result's tables: the width they may take, notes on stderr once, and the
`Grid` that folds a table too wide for it. Each view registers its result's tables on
`tables` beside its own code (`render.tables`, `render.runs`)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import singledispatch

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from hatinspect.render.stderr import note as print_note

UNLIMITED = 1_000_000  # the console width standing for "no limit"


class Note(str):
    """A line about the output rather than part of it: printed on stderr, once."""


def output_width(width: int | None = None, stream=None) -> int | None:
    """Columns a table may use: ``width`` (``--width``), else ``COLUMNS``, else the
    terminal's; ``None``, no limit, when the output is not a terminal."""
    if width:
        return width
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and 0 < len(columns) < 7 and int(columns) > 0:
        return int(columns)
    stream = stream or sys.stdout
    if stream.isatty():
        return Console(file=stream).width
    return None


class OutputConsole(Console):
    """A console for stdout whose closed pipe (``| head``) is the caller's to handle as a
    ``BrokenPipeError``: rich's own handling exits with 1."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def console_for(width: int | None, **kwargs) -> Console:
    return OutputConsole(highlight=False, width=width or UNLIMITED, **kwargs)


def print_tables(result, width: int | None = None, **options) -> None:
    """`result`'s tables on stdout within `width` columns (see `output_width`); notes on stderr."""
    limit = output_width(width)
    print_renderables(tables(result, width=limit, **options), limit)


def print_renderables(renderables: Sequence[RenderableType | Note], width: int | None) -> None:
    console = console_for(width)
    notes: list[str] = []
    for renderable in renderables:
        if isinstance(renderable, Note):
            if renderable not in notes:
                notes.append(renderable)
        else:
            console.print(renderable, crop=width is not None)  # no limit: nothing to crop
    for note in notes:
        print_note(note)


@singledispatch
def tables(result, width: int | None = None, **options) -> list[RenderableType | Note]:
    """Headings, tables and notes for a result, in reading order; `width` is the columns
    available (None: no limit), for layouts that adapt to it."""
    raise TypeError(f"no table for {type(result).__name__}")


@dataclass
class Grid:
    """A table's columns and cells as plain strings: measured without a layout, folded
    into narrower tables when too wide, and turned into a rich ``Table`` once.

    The first `text` columns are text (the first one never wraps: layer names are
    ``--layer`` globs); the others are right-aligned numbers.
    """

    columns: list[str]
    text: int = 1
    rows: list[tuple[list[str], str | None]] = field(default_factory=list)
    sections: set[int] = field(default_factory=set)  # a rule before each of these rows

    def add_row(self, *cells: str, style: str | None = None) -> None:
        self.rows.append((list(cells), style))

    def add_section(self) -> None:
        self.sections.add(len(self.rows))

    def widths(self) -> list[int]:
        """Each column's natural width: its widest header line or cell."""
        widths = [max(map(cell_len, name.split("\n"))) for name in self.columns]
        for cells, _ in self.rows:
            widths = [max(w, cell_len(c)) for w, c in zip(widths, cells, strict=True)]
        return widths

    def natural_width(self) -> int:
        # rich's default box: one space of padding each side and a rule between columns
        return table_span(self.widths())

    def table(self, keep: Sequence[int] | None = None) -> Table:
        """A rich ``Table`` of the columns in `keep` (all by default), laid out once: each
        column's width is fixed from its known cells, so rich measures nothing; each cell
        comes justified and padded, so rich wraps nothing; and each run of like rows is one
        rich row of many lines (see `_Cell`), drawn exactly as the rows would be one by one."""
        keep = list(range(len(self.columns)) if keep is None else keep)
        widths = self.widths()
        layout = [(i, widths[i], i >= self.text) for i in keep]
        table = Table(padding=0)  # the cells carry rich's one space each side
        for i, width, right in layout:
            header = _Cell([self.columns[i]], width, right)
            justify = "right" if right else "left"
            table.add_column(header, width=width + 2, no_wrap=True, justify=justify)
        for rows, style, ruled in self._runs():
            cells = [_Cell([row[i] for row in rows], width, right) for i, width, right in layout]
            table.add_row(*cells, style=style, end_section=ruled)
        return table

    def _runs(self) -> Iterator[tuple[list[list[str]], str | None, bool]]:
        """Rows that may share a rich row: (cells of each row, style, ruled after). A run
        holds unstyled rows of one-line cells, up to the rule; any other row is alone (its
        height and style are its own)."""
        run: list[list[str]] = []
        for r, (cells, style) in enumerate(self.rows):
            ruled = r + 1 in self.sections
            if style is None and all(map(str.isprintable, cells)):
                run.append(cells)
                if ruled:
                    yield run, None, True
                    run = []
                continue
            if run:
                yield run, None, False
                run = []
            yield [cells], style, ruled
        if run:
            yield run, None, False

    def fitted(self, width: int | None, lead: int = 1) -> list[Text]:
        """One table, or, when wider than `width`, several that repeat the first `lead`
        columns and share out the others (each column whole, every cell kept)."""
        widths = self.widths()
        if not width or table_span(widths) <= width:
            return [self.table()]
        parts: list[list[int]] = []
        current: list[int] = []
        for i in range(lead, len(widths)):
            if current and table_span([widths[j] for j in [*range(lead), *current, i]]) > width:
                parts.append(current)
                current = []
            current.append(i)
        parts.append(current)
        return [self.table([*range(lead), *part]) for part in parts]


class _Cell:
    """One column's cells in a run of rows (or its header), justified and padded as rich
    would lay them out, made once: rich's own way (a ``Padding`` around a ``Text``, wrapped,
    justified and placed row by row) costs most of a large table's output time.

    Each line is one segment, so a styled row's escape codes may be grouped unlike rich's
    (the same on screen). Text that rich would change, or a column that rich narrows because
    the table is wider than the console, goes rich's own way.
    """

    __slots__ = ("rows", "segments", "text", "width")

    def __init__(self, texts: list[str], width: int, right: bool) -> None:
        self.rows = len(texts)
        self.text = "\n".join(texts)
        self.width = width + 2
        self.segments = _justified(self.text, width, right)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.segments is not None and options.max_width == self.width:
            return self.segments
        if options.max_width > 2 or self.rows == 1:
            return [Padding(Text(self.text), (0, 1))]
        # no room inside the padding: rich would draw each row as a blank line
        return [Segment(" " * options.max_width + "\n")] * self.rows

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)


def cell_rows(cell) -> list[str]:
    """The text of each table row that a cell of a `Grid`'s table stands for (a run of
    like rows is one rich row, see `_Cell`), or of any other cell: its one row."""
    if isinstance(cell, _Cell):
        return cell.text.split("\n") if cell.rows > 1 else [cell.text]
    return [cell.plain if isinstance(cell, Text) else str(cell)]


def _justified(text: str, width: int, right: bool) -> list[Segment] | None:
    """Each line of `text` justified to `width` cells and padded, or None where rich would
    change it: control characters, too wide a line, or trailing spaces (right-justifying
    strips them)."""
    segments = []
    for line in text.split("\n"):
        gap = width - cell_len(line)
        if gap < 0 or not line.isprintable() or (right and line.endswith(" ")):
            return None
        padded = " " * gap + line if right else line + " " * gap
        segments.append(Segment(f" {padded} \n"))
    return segments


def table_span(widths: Sequence[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1
