"""Figures drawn with matplotlib's object API (no pyplot state), written as PNG, SVG or PDF.

matplotlib is imported inside the functions: commands that draw nothing never load it.
Sizes scale with the data so that 10 to 2048 units and 1 to 50 tasks stay legible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hatinspect.core.capacity import CapacityReport
from hatinspect.core.errors import HatinspectError
from hatinspect.core.masks import MaskReport
from hatinspect.core.measure import LayerMeasure
from hatinspect.core.overlap import OverlapReport
from hatinspect.render.files import FIGURE_FORMATS, output_format, write_atomically

MAX_PANELS = 64  # layers in one mask figure; beyond this it is too tall to read
_ANNOTATE = 12  # tasks up to which overlap cells carry their numbers
_WIDTH = 9.0  # inches


def check_cmap(name: str) -> None:
    """ValueError for a colormap matplotlib does not know."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise ValueError(f"unknown colormap {name!r}; try viridis, magma, Greys or Blues")


def mask_heatmap(report: MaskReport, path: Path, dpi: int = 100, cmap: str = "Greys") -> None:
    """One panel per layer: rows are tasks, columns units, dark where the task keeps a unit."""
    _need_tasks(report.tasks, report.checkpoint)
    if len(report.layers) > MAX_PANELS:
        raise HatinspectError(
            f"{len(report.layers)} layers are too many for one figure "
            f"(at most {MAX_PANELS}); choose some with --layer or --exclude"
        )
    heights = [_panel_height(len(report.tasks))] * len(report.layers)
    fig = _figure(_WIDTH, sum(heights) + 0.8)
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, layer in zip(axes, report.layers, strict=True):
        ax.imshow(layer.matrix, aspect="auto", cmap=cmap, vmin=0, vmax=1)
        ax.set_title(f"{layer.name}  ({layer.units:,} units)", loc="left", fontsize=9)
        _label_ticks(ax, "y", report.tasks)
        _unit_axis(ax, layer.matrix.shape)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("unit")
    fig.supylabel("task", fontsize=9)
    fig.suptitle(f"Task masks of {Path(report.checkpoint).name} (dark: unit kept)", fontsize=10)
    _save(fig, path, dpi)


def overlap_heatmap(
    report: OverlapReport, path: Path, dpi: int = 100, cmap: str = "viridis"
) -> None:
    """The network-wide task x task Jaccard matrix, with shared counts when few tasks."""
    _need_tasks(report.tasks, report.checkpoint)
    side = float(np.clip(2.5 + 0.22 * len(report.tasks), 4.0, 13.0))
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    jaccard = report.network.jaccard
    image = ax.imshow(jaccard, cmap=cmap, vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="Jaccard index of the kept units")
    for axis in "xy":
        _label_ticks(ax, axis, report.tasks)
    if len(report.tasks) <= _ANNOTATE:
        _annotate(ax, image, jaccard, report.network.shared)
    ax.set_xlabel("task")
    ax.set_ylabel("task")
    ax.set_title(f"Units shared between tasks, {Path(report.checkpoint).name}", fontsize=10)
    _save(fig, path, dpi)


def measure_heatmap(
    result: LayerMeasure, path: Path, dpi: int = 100, cmap: str = "viridis"
) -> None:
    """The (out, in) measure of a layer; conv kernels are summed over their spatial extent."""
    matrix = result.weight_matrix
    fig = _figure(8.0, 6.5)
    ax = fig.subplots()
    image = ax.imshow(
        matrix,
        aspect="auto",
        cmap=cmap,
        interpolation="nearest" if max(matrix.shape) <= 256 else "antialiased",
    )
    kernel = "×".join(map(str, result.weight_shape[2:]))
    summed = f", summed over the {kernel} kernel" if kernel else ""
    fig.colorbar(image, ax=ax, label=f"{result.aggregation} of the {result.of} measure{summed}")
    _unit_axis(ax, matrix.shape, rows_are_units=True)
    ax.set_xlabel("input unit j")
    ax.set_ylabel("output unit i")
    ax.set_title(f"{result.layer} of {Path(result.checkpoint).name}", fontsize=10)
    _save(fig, path, dpi)


def growth_plot(report: CapacityReport, path: Path, dpi: int = 100) -> None:
    """Unit and parameter usage after each task, with the AdaHAT network sparsity."""
    _need_tasks(report.tasks, report.checkpoint)
    fig = _figure(7.0, 4.0)
    ax = fig.subplots()
    steps = np.arange(len(report.by_task))
    series = {
        "unit usage": [step.units_used / report.total.units for step in report.by_task],
        "param usage": [step.param_usage for step in report.by_task],
        "network sparsity": [step.network_sparsity for step in report.by_task],
    }
    for (label, values), style in zip(series.items(), ("-o", "-s", ":^"), strict=True):
        ax.plot(steps, values, style, label=label, markersize=4)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter("{x:.0%}")
    _label_ticks(ax, "x", report.tasks)
    ax.set_xlabel("after task")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"Capacity used, task by task, {Path(report.checkpoint).name}", fontsize=10)
    _save(fig, path, dpi)


def _need_tasks(tasks: Sequence[int], checkpoint: str) -> None:
    if not tasks:
        raise HatinspectError(f"{checkpoint} stores no task masks: there is nothing to draw")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: Path, dpi: int) -> None:
    kind = output_format(path, FIGURE_FORMATS)
    write_atomically(path, lambda temporary: fig.savefig(temporary, format=kind, dpi=dpi))


def _panel_height(tasks: int) -> float:
    return float(np.clip(0.45 + 0.12 * tasks, 0.7, 4.0))


def _label_ticks(ax, axis: str, tasks: Sequence[int]) -> None:
    """Task ids as tick labels, thinned to about 20 so that 50 tasks stay readable."""
    every = max(1, -(-len(tasks) // 20))
    positions = list(range(0, len(tasks), every))
    getattr(ax, f"set_{axis}ticks")(positions, [str(tasks[i]) for i in positions])


def _unit_axis(ax, shape: tuple[int, int], rows_are_units: bool = False) -> None:
    """Whole-unit ticks; for small layers, faint lines between cells so units can be counted."""
    from matplotlib.ticker import MaxNLocator

    for axis in (ax.xaxis, ax.yaxis) if rows_are_units else (ax.xaxis,):
        axis.set_major_locator(MaxNLocator(integer=True))
    rows, columns = shape
    if columns <= 64:
        ax.set_xticks(np.arange(columns + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.75", linewidth=0.5)
        ax.tick_params(which="minor", length=0)


def _annotate(ax, image, jaccard: np.ndarray, shared: np.ndarray) -> None:
    for (a, b), value in np.ndenumerate(jaccard):
        red, green, blue, _ = image.cmap(image.norm(value))
        ink = "black" if 0.3 * red + 0.6 * green + 0.1 * blue > 0.5 else "white"
        ax.text(
            b, a, f"{shared[a, b]:,}\n{value:.2f}", ha="center", va="center", fontsize=7, color=ink
        )
