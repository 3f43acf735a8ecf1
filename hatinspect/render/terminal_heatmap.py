"""A quick look at masks in the terminal: one row of shade characters per task and layer.

Each character stands for a run of adjacent units and shows what share of them the task
keeps, so a 2048-unit layer still fits in one line; shades read without colour too.
"""

from __future__ import annotations

import numpy as np
from rich.console import RenderableType
from rich.text import Text

from hatinspect.analysis.masks import LayerMasks, MaskReport

SHADES = " ░▒▓█"  # share of the cell's units kept: 0, (0, 1/3], (1/3, 2/3], (2/3, 1), 1
_LABEL = 8  # width of the task label column


def mask_lines(report: MaskReport, width: int) -> list[RenderableType]:
    """Renderables showing every chosen layer's (tasks, units) mask in `width` columns."""
    cells = max(width - _LABEL - 2, 4)
    lines: list[RenderableType] = []
    for layer in report.layers:
        lines.append(_header(layer, cells))
        lines += [
            _row(task, row, cells) for task, row in zip(report.tasks, layer.matrix, strict=True)
        ]
    return [*lines, *legend(report.entries)] if lines else lines


# what each shade says, as SHADES orders them
SHADE_MEANINGS = ("none", "up to 1/3", "up to 2/3", "over 2/3", "all")


def legend(entries: str = "units") -> list[Text]:
    """Two short lines (they fit a narrow terminal): what the shades measure, and each
    shade, the fullest first, with the share it stands for."""
    key = Text()
    for mark, meaning in reversed(list(zip(SHADES, SHADE_MEANINGS, strict=True))):
        key.append("│ │" if mark == " " else mark, "green")
        key.append(f" {meaning}  ")
    key.rstrip()
    return [Text(f"shades: the share of a character's {entries} the task keeps", "dim"), key]


def _header(layer: LayerMasks, cells: int) -> Text:
    per_cell = -(-layer.units // min(cells, layer.units))
    unit = "1 unit" if per_cell == 1 else f"up to {per_cell} units"
    return Text(f"{layer.name}  ({layer.units:,} units, {unit} per character)", "bold")


def _row(task: int, mask: np.ndarray, cells: int) -> Text:
    line = Text(f"task {task}".ljust(_LABEL)[:_LABEL] + "│")
    line.append(shade(mask, cells), "green")
    line.append("│")
    return line


def shade(mask: np.ndarray, cells: int) -> str:
    """`mask` binned into at most `cells` runs of adjacent units, one shade per run."""
    cells = min(cells, mask.size)
    starts = np.linspace(0, mask.size, cells + 1).astype(int)[:-1]
    kept = np.add.reduceat(mask.astype(np.int64), starts)
    share = kept / np.diff(starts, append=mask.size)
    levels = np.where(share >= 1, 4, np.ceil(share * 3))
    return "".join(SHADES[int(level)] for level in levels)
