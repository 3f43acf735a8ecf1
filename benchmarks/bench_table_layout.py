"""Table output at ResNet scale, interleaved with a baseline in one run.

1. The `masks` table of a HATMaskResNet152 (155 layers, 10 tasks), piped (no width
   limit) and at 80 columns (folded), against the same cells in a rich ``Table`` that is
   measured for its natural width and laid out again to print (the former way).
2. The `overlap` table at 640 tasks (summarised) against printing the full 640 × 640
   Jaccard matrix as a rich ``Table`` (one pair: the baseline takes minutes).

    python benchmarks/bench_table_layout.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from types import MappingProxyType

import numpy as np
from rich.console import Console
from rich.table import Table

from hatinspect.core.masks import summarise_masks
from hatinspect.core.overlap import overlap
from hatinspect.core.types import Checkpoint, LayerInfo
from hatinspect.render import tables


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


def now_printing(result, width: int | None, **options) -> None:
    sink = io.StringIO()
    renderables = tables.tables(result, width=width, **options)
    console = Console(file=sink, width=width or tables.UNLIMITED, highlight=False)
    for renderable in renderables:
        if not isinstance(renderable, tables.Note):
            console.print(renderable)


def former_printing(report, width: int | None) -> None:
    """The same cells in a rich ``Table``, measured for its natural width, then printed."""
    grid = tables._mask_grid(report, report.tasks, tables.MASK_TASK_COLUMNS[0])
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


def interleaved(name: str, ours, baseline, pairs: int) -> None:
    times: dict[str, list[float]] = {"hatinspect": [], "baseline": []}
    for _ in range(pairs):
        for key, run in (("hatinspect", ours), ("baseline", baseline)):
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    ours_ms = 1000 * statistics.median(times["hatinspect"])
    base_ms = 1000 * statistics.median(times["baseline"])
    print(
        f"{name}: hatinspect median {ours_ms:.1f} ms (min {1000 * min(times['hatinspect']):.1f}),"
        f" baseline median {base_ms:.1f} ms (min {1000 * min(times['baseline']):.1f}),"
        f" ratio {ours_ms / base_ms:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    report = summarise_masks(resnet152_checkpoint(10))
    for width in (None, 80):
        interleaved(
            f"masks table, 155 layers x 10 tasks, width {width or 'unlimited'}",
            lambda w=width: now_printing(report, w),
            lambda w=width: former_printing(report, w),
            args.pairs,
        )
    layers = resnet152_checkpoint(0).layers[:4]
    wide = overlap(_with_masks(layers, range(640)))
    interleaved(
        "overlap table, 640 tasks (summary vs full matrix)",
        lambda: now_printing(wide, None),
        lambda: full_matrix_printing(wide),
        1,
    )


if __name__ == "__main__":
    main()
