"""Table output at ResNet scale, interleaved with baselines in one run.

1. The `masks` output of a HATMaskResNet152 (155 layers, 10 tasks), from the report to
   the text written, piped (no width limit) and at 80 columns, against
   - the same output with each cell a ``Text`` that rich pads, wraps and justifies in a
     row of its own (fixed column widths: the way before cells came laid out), and
   - the main table alone, measured for its natural width and laid out again to print
     (the way before widths were fixed).
   The outputs of the first two are checked equal first.
2. The `overlap` table at 640 tasks (summarised) against printing the full 640 × 640
   Jaccard matrix as a rich ``Table`` (one pair: the baseline takes minutes; --masks-only
   leaves it out).

    python benchmarks/bench_table_layout.py [--pairs 5] [--masks-only]
"""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stderr, redirect_stdout
from types import MappingProxyType
from unittest import mock

import numpy as np
import readme_figures as readme
from interleaved import interleave_calls, report
from readme_figures import ms
from rich.console import Console
from rich.table import Table
from support.reference_tables import text_cells_table

from hatinspect.analysis.masks import summarise_masks
from hatinspect.analysis.overlap import overlap
from hatinspect.model.checkpoint import Checkpoint, LayerInfo
from hatinspect.render import layout, tables

README_FIGURES = ("masks", "masks-before")


def resnet152_checkpoint(tasks: int) -> Checkpoint:
    """HATMaskResNet152's 155 masked layers with random masks (shapes only, no weights)."""
    specs = [("conv1", 64, 3 * 49, None)]
    channels, previous = 64, "conv1"
    stages = zip((3, 8, 36, 3), (64, 128, 256, 512), strict=True)
    for stage, (blocks, width) in enumerate(stages, start=2):
        for block in range(blocks):
            prefix = f"conv{stage}x/{block}"
            specs += [
                (f"{prefix}/conv1", width, channels, previous),
                (f"{prefix}/conv2", width, width * 9, f"{prefix}/conv1"),
                (f"{prefix}/conv3", 4 * width, width, f"{prefix}/conv2"),
            ]
            if block == 0:
                specs.append((f"{prefix}/shortcut", 4 * width, channels, previous))
            channels, previous = 4 * width, f"{prefix}/conv3"
    layers = tuple(
        LayerInfo(name, units, (units, fan_in), f"{name}.weight", None, pre)
        for name, units, fan_in, pre in specs
    )
    return _with_masks(layers, range(tasks))


def _with_masks(layers, tasks) -> Checkpoint:
    rng = np.random.default_rng(0)
    masks = {
        t: MappingProxyType(
            {lay.name: (rng.random(lay.units) < 0.4).astype(np.uint8) for lay in layers}
        )
        for t in tasks
    }
    return Checkpoint("bench", "HATMaskResNet152", "hatinspect", layers, tuple(tasks), masks)


def now_printing(result, width: int | None, **options) -> str:
    """The command's output, as `print_tables` writes it."""
    with redirect_stdout(io.StringIO()) as out, redirect_stderr(io.StringIO()):
        layout.print_renderables(layout.tables(result, width=width, **options), width)
    return out.getvalue()


def text_cells_printing(result, width: int | None) -> str:
    """The same output with `text_cells_table` for each grid, printed as before."""
    sink = io.StringIO()
    with mock.patch.object(layout.Grid, "table", text_cells_table):
        renderables = layout.tables(result, width=width)
    console = Console(file=sink, width=width or layout.UNLIMITED, highlight=False)
    for renderable in renderables:
        if not isinstance(renderable, layout.Note):
            console.print(renderable)
    return sink.getvalue()


def former_printing(report, width: int | None) -> None:
    """The same cells in a rich ``Table``, measured for its natural width, then printed."""
    grid = tables.mask_grid(report, report.tasks, tables.MASK_TASK_COLUMNS[0])
    table = Table()
    for k, name in enumerate(grid.columns):
        table.add_column(name, justify="left" if k == 0 else "right")
    for cells, style in grid.rows:
        table.add_row(*cells, style=style)
    Console(width=1_000_000, file=io.StringIO()).measure(table)
    Console(file=io.StringIO(), width=width or 1_000_000, highlight=False).print(table)


def full_matrix_printing(report) -> None:
    """A rich ``Table`` of the whole T × T Jaccard matrix, printed."""
    table = Table()
    for name in ["task", *map(str, report.tasks)]:
        table.add_column(name, justify="right")
    jaccard = report.network.jaccard
    for a, task in enumerate(report.tasks):
        table.add_row(str(task), *[f"{value:.2f}" for value in jaccard[a]])
    Console(file=io.StringIO(), width=1_000_000, highlight=False).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--masks-only", action="store_true")
    readme.add_option(parser)
    args = parser.parse_args()
    masks = summarise_masks(resnet152_checkpoint(10))
    widths = []
    for width in (None, 80):
        if now_printing(masks, width) != text_cells_printing(masks, width):
            raise SystemExit(f"masks output differs at width {width}")
        sides = {
            "hatinspect": lambda w=width: now_printing(masks, w),
            "Text cells, a rich row each (before)": lambda w=width: text_cells_printing(masks, w),
            "main table measured, then laid out": lambda w=width: former_printing(masks, w),
        }
        title = f"masks output, 155 layers x 10 tasks, width {width or 'unlimited'}"
        widths.append(
            [side["median"] for side in report(title, interleave_calls(sides, args.pairs)).values()]
        )
    (mine, cells, measured), (mine80, cells80, measured80) = widths
    figures = {
        "masks": f"median {ms(mine)} / {ms(mine80)} ms",
        "masks-before": f"`Text` cells a rich row each: {ms(cells)} / {ms(cells80)} ms; "
        f"measured first: {ms(measured)} / {ms(measured80)} ms",
    }
    readme.compare("table_layout", figures, args.write_readme)
    if args.masks_only:
        return
    layers = resnet152_checkpoint(0).layers[:4]
    wide = overlap(_with_masks(layers, range(640)))
    sides = {
        "hatinspect": lambda: now_printing(wide, None),
        "full matrix": lambda: full_matrix_printing(wide),
    }
    report("overlap table, 640 tasks (summary vs full matrix)", interleave_calls(sides, 1))


if __name__ == "__main__":
    main()
