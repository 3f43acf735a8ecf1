"""A `Grid` table comes out as rich lays out the same cells itself: the reference is rich's
own ``Table`` of ``Text`` cells (the same fixed widths, rich's padding, one row per row),
printed without colour byte for byte, and with colour character for character."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from support.reference_tables import text_cells_table

from hatinspect.render.layout import Grid


def plain() -> Grid:
    grid = Grid(["layer", "units", "summative\nmax"])
    for n in range(12):
        grid.add_row(f"conv{n}/{'x' * n}", f"{n**3:,}", f"{n / 7:.2f}")
    return grid


def awkward() -> Grid:
    """Cells rich changes or lays out unusually: control characters, two lines, tabs,
    trailing spaces (stripped when right-justified), wide characters, empty cells."""
    grid = Grid(["name", "note", "n ", "a\nb\nc"], text=2)
    rows = [
        ("bell\x07", "x ", "1 ", ""),
        ("two\nlines", "\tTab", "日本語", "é"),
        ("", "", "", ""),
        ("wide 😀", "e\u0301", "  ", "12,345 (40%)"),
        ("plain", "[bold]m[/]", "7", ":smile:"),
        ("more", "of", "the", "same"),
    ]
    for row in rows:
        grid.add_row(*row)
    return grid


def styled() -> Grid:
    """Styled rows, runs of plain ones between them, a rule, and an empty column."""
    grid = Grid(["after", "task 1", "task 2", "capacity", ""])
    for t in range(6):
        style = "bold" if t == 2 else "dim on blue" if t == 4 else None
        grid.add_row(f"task {t}", f"{t}.0%", "", f"{10 * t}%", "", style=style)
    grid.add_section()
    grid.add_row("forgetting", "1.5", "", "", "", style="red")
    grid.add_row("total", "2", "3", "4", "")
    return grid


GRIDS = {"plain": plain, "awkward": awkward, "styled": styled}


def drawn(table: Table, width: int, colour: bool) -> str | list[tuple[str, str]]:
    """What the console shows: the bytes without colour; with colour each character and
    its style, a space by its background (escape codes may be grouped differently)."""
    sink = io.StringIO()
    console = Console(
        file=sink,
        width=width,
        highlight=False,
        force_terminal=colour,
        color_system="truecolor" if colour else None,
    )
    if not colour:
        console.print(table)
        return sink.getvalue()
    seen = []
    for segment in console.render(table):
        style = segment.style
        for char in segment.text:
            shown = style and (style.bgcolor if char == " " else style)
            seen.append((char, str(shown) if shown else "none"))
    return seen


@pytest.mark.parametrize("name", GRIDS)
@pytest.mark.parametrize("width", [1_000_000, 40, 14, 7])
@pytest.mark.parametrize("colour", [False, True])
def test_grid_tables_come_out_as_rich_lays_out_the_cells(name, width, colour):
    grid = GRIDS[name]()
    everything = list(range(len(grid.columns)))
    for keep in (everything, [0, *everything[2:]]):
        ours = drawn(grid.table(keep), width, colour)
        assert ours == drawn(text_cells_table(grid, keep), width, colour)
