"""The reference a `Grid` table is checked and timed against: rich's own ``Table`` of the
same cells as ``Text`` (the same fixed widths, rich's padding, one rich row per row)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def text_cells_table(grid, keep=None) -> Table:
    """`grid` (a ``hatinspect.render.layout.Grid``) as rich lays out its cells itself: it
    pads, wraps and justifies each in a row of its own."""
    keep = list(range(len(grid.columns)) if keep is None else keep)
    widths = grid.widths()
    table = Table()
    for i in keep:
        justify = "right" if i >= grid.text else "left"
        table.add_column(grid.columns[i], width=widths[i], no_wrap=True, justify=justify)
    for r, (cells, style) in enumerate(grid.rows):
        ruled = r + 1 in grid.sections
        table.add_row(*(Text(cells[i]) for i in keep), style=style, end_section=ruled)
    return table
