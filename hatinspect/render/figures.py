"""Figures drawn with matplotlib's object API (no pyplot state), written as PNG, SVG or PDF.

matplotlib is imported inside the functions: commands that draw nothing never load it.
Figures are sized for papers: one column of a two-column paper wide by default
(`--figsize` changes it), fonts embedded as TrueType (Type 42) in PDFs, text kept as text
in SVGs, and no dates in the files, so the same input gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hatinspect.analysis.capacity import CapacityReport
from hatinspect.analysis.masks import MaskReport, owners
from hatinspect.analysis.measure import LayerMeasure
from hatinspect.analysis.overlap import OverlapReport
from hatinspect.model.errors import HatinspectError
from hatinspect.native.atomic import write_atomically
from hatinspect.render.files import FIGURE_FORMATS, output_format

MAX_HEIGHT = 8.5  # inches: a figure of panels shares out at most this much of a page
TICK_SPACING = 10  # points from one task's tick label to the next, at the figures' 7 pt
MAX_PANELS = 64  # layers drawn unit by unit in one figure; beyond this it is too tall to read
JACCARD_SCALE = (0.0, 1.0)  # an overlap heatmap's colours: comparable across runs and papers
LABEL_FONT = 5.0  # points: the largest label an overlap cell carries
SMALLEST_LABEL = 3.5  # points: below this a label is not drawn (unreadable in print)
COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper (IEEE, ACM)
FONT_SIZE = 7.0  # points, as in a paper's figures
# what keeps files portable and reproducible: TrueType fonts in PDF/PS, SVG text as text,
# fixed SVG ids; dates are left out when saving
STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "svg.hashsalt": "hatinspect",
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": FONT_SIZE - 1,
    "ytick.labelsize": FONT_SIZE - 1,
    "legend.fontsize": FONT_SIZE - 1,
    "figure.titlesize": FONT_SIZE + 1,
    "image.interpolation": "nearest",
}
NO_DATES = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


@dataclass(frozen=True)
class Look:
    """What a user may set about any figure: its size in inches, title, colours, resolution."""

    figsize: tuple[float, float] | None = None
    title: str | None = None
    cmap: str | None = None
    dpi: int = 100


def parse_figsize(text: str) -> tuple[float, float]:
    """``"W,H"`` in inches as two positive numbers; ValueError otherwise."""
    parts = text.replace("x", ",").split(",")
    try:
        width, height = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"{text!r}: give WIDTH,HEIGHT in inches, e.g. 3.5,2.5") from None
    if not (0.5 <= width <= 50 and 0.5 <= height <= 50):
        raise ValueError(f"{text!r}: width and height must be between 0.5 and 50 inches")
    return width, height


def check_cmap(name: str) -> None:
    """ValueError for a colormap matplotlib does not know."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise ValueError(f"unknown colormap {name!r}; try viridis, magma, Greys or Blues")


@contextmanager
def styled():
    """`STYLE` in force: fonts and sizes are read when text is made, font types on saving."""
    from matplotlib import rc_context

    with rc_context(STYLE):
        yield


def _drawn(make_figure):
    """`make_figure(result, look, ...)` as a command's drawing: (result, path, look, ...)."""

    def draw(result, path: Path, look: Look = Look(), *options) -> None:
        with styled():
            save_figure(make_figure(result, look, *options), path, look.dpi)

    draw.__doc__ = f"Draw {make_figure.__name__} to a .png, .svg or .pdf file."
    return draw


# masks


def mask_figure(report: MaskReport, look: Look = Look(), per_unit: bool = False):
    """The masks as a figure: per unit (one strip of tasks × units per layer, for a few
    chosen layers) or, by default, the whole network (layers × tasks, any depth)."""
    _need_tasks(report.tasks, report.checkpoint)
    if per_unit and report.entries == "weights":
        return _owner_maps(report, look)
    return _unit_strips(report, look) if per_unit else network_masks(report, look)


MAX_SIDE = 512  # an owner map shows at most this many rows and columns: every k-th beyond


def _owner_maps(report: MaskReport, look: Look):
    """One panel per layer: the weight matrix (rows: output units; columns: inputs x
    kernel), each weight coloured by its owner, the first chosen task that keeps it. Big
    layers show every k-th row and column, and say so."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if len(report.layers) > MAX_PANELS:
        raise HatinspectError(
            f"{len(report.layers)} layers are too many to draw weight by weight "
            f"(at most {MAX_PANELS}); choose fewer with --layer"
        )
    fig = new_figure(look, (COLUMN_WIDTH, 1.6 * len(report.layers) + 0.9))
    axes = fig.subplots(len(report.layers), 1, squeeze=False)[:, 0]
    palette = _cmap(look.cmap or "tab10")
    colours = ["white", *(palette(i % palette.N) for i in range(len(report.tasks)))]
    cmap = ListedColormap(colours)
    for ax, layer in zip(axes, report.layers, strict=True):
        owner = owners(layer)
        steps = [max(1, -(-side // MAX_SIDE)) for side in owner.shape]
        shown = owner[:: steps[0], :: steps[1]]
        ax.imshow(shown + 1, aspect="auto", cmap=cmap, vmin=0, vmax=len(colours) - 1,
                  interpolation="nearest")  # fmt: skip
        every = "" if steps == [1, 1] else f", every {steps[0]}th row, {steps[1]}th column"
        ax.set_title(f"{layer.name}  ({owner.size:,} weights{every})", loc="left")
        ax.set_ylabel("unit")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("input (x kernel)")
    handles = [Patch(facecolor=colours[0], edgecolor="0.5", label="free")] + [
        Patch(facecolor=colours[i + 1], edgecolor="0.5", label=f"task {task}")
        for i, task in enumerate(report.tasks)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)),
               frameon=False)  # fmt: skip
    fig.suptitle(look.title or f"Owner of each weight\n{_name(report)}")
    return fig


def network_masks(report: MaskReport, look: Look = Look()):
    """Layers × tasks: the share of each layer's units each task keeps, and beside it the
    share any task uses (cumulative); layers grouped by stage and block."""
    names = [layer.name for layer in report.layers]
    shares = np.array(
        [[layer.fraction(task) for task in report.tasks] for layer in report.layers]
    ).reshape(len(names), len(report.tasks))
    cumulative = np.array([[layer.cumulative_fraction] for layer in report.layers])
    height = float(np.clip(1.1 + 0.034 * len(names), 1.8, 8.5))
    fig = new_figure(look, (COLUMN_WIDTH, height))
    tasks_ax, cumulative_ax, bar_ax = fig.subplots(
        1, 3, width_ratios=[max(len(report.tasks), 3), 1, 0.25]
    )
    cmap = look.cmap or "viridis"
    for ax, values in ((tasks_ax, shares), (cumulative_ax, cumulative)):
        image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=0, vmax=1)
        _layer_axis(ax, names, labelled=ax is tasks_ax)
    _label_ticks(tasks_ax, "x", report.tasks)
    tasks_ax.set_xlabel("task")
    cumulative_ax.set_xticks([0], ["any"])
    cumulative_ax.set_xlabel("cumul.")
    colorbar = fig.colorbar(image, cax=bar_ax)
    colorbar.set_label(f"share of the layer's {report.entries} kept")
    colorbar.ax.yaxis.set_major_formatter("{x:.0%}")
    kept = report.entries.capitalize()
    fig.suptitle(
        look.title or f"{kept} kept per layer and task\n{report.backbone}, {_name(report)}"
    )
    return fig


def _layer_axis(ax, names: list[str], labelled: bool) -> None:
    """Layers top to bottom: every name when few, else one label per stage, with rules
    between stages (and faint ones between blocks)."""
    stages, blocks = _runs(names, 1), _runs(names, 2)
    if len(names) <= 40:
        ax.set_yticks(range(len(names)), names if labelled else [])
    else:
        centres = [(start + end - 1) / 2 for _, start, end in stages]
        labels = [f"{stage} ({end - start})" for stage, start, end in stages]
        ax.set_yticks(centres, labels if labelled else [])
        ax.tick_params(axis="y", length=0)
    for _, start, _ in blocks[1:]:
        if len(blocks) < len(names):
            ax.axhline(start - 0.5, color="white", linewidth=0.3)
    for _, start, _ in stages[1:]:
        ax.axhline(start - 0.5, color="white", linewidth=1.0)


def _runs(names: list[str], depth: int) -> list[tuple[str, int, int]]:
    """(prefix, start, end) of consecutive names sharing their first `depth` path parts."""
    runs: list[tuple[str, int, int]] = []
    for i, name in enumerate(names):
        prefix = "/".join(name.split("/")[:depth])
        if runs and runs[-1][0] == prefix:
            runs[-1] = (prefix, runs[-1][1], i + 1)
        else:
            runs.append((prefix, i, i + 1))
    return runs


def _unit_strips(report: MaskReport, look: Look):
    """One panel per layer: rows are tasks, columns units, drawn pixel-exact (no blending
    of neighbouring units, whatever the width): two colours, kept and not used."""
    from matplotlib.patches import Patch

    if len(report.layers) > MAX_PANELS:
        raise HatinspectError(
            f"{len(report.layers)} layers are too many to draw unit by unit "
            f"(at most {MAX_PANELS}); choose fewer with --layer, or leave --layer out "
            "for the whole-network figure"
        )
    # one column wide and at most a page's height: many layers share it out
    panel = min(_panel_height(len(report.tasks)), (MAX_HEIGHT - 0.9) / len(report.layers))
    heights = [panel] * len(report.layers)
    fig = new_figure(look, (COLUMN_WIDTH, sum(heights) + 0.9))
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    cmap = _cmap(look.cmap or "Greys")
    for ax, layer in zip(axes, report.layers, strict=True):
        ax.imshow(layer.matrix, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{layer.name}  ({layer.units:,} units)", loc="left")
        _label_ticks(ax, "y", report.tasks, room=panel)
        _unit_axis(ax)
    axes[-1].set_xlabel("unit")
    fig.supylabel("task")
    handles = [
        Patch(facecolor=cmap(1.0), edgecolor="0.5", label="unit kept"),
        Patch(facecolor=cmap(0.0), edgecolor="0.5", label="not used"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(look.title or f"Task masks, unit by unit\n{_name(report)}")
    return fig


# overlap


def overlap_figure(report: OverlapReport, look: Look = Look(), scale=JACCARD_SCALE):
    """The network-wide task × task Jaccard matrix, coloured on ``scale`` (0–1 unless
    asked otherwise, so that runs and panels compare). The diagonal (always 1) is left
    blank and labelled with each task's kept units."""
    _need_tasks(report.tasks, report.checkpoint)
    n = len(report.tasks)
    fig = new_figure(look, (COLUMN_WIDTH, COLUMN_WIDTH * 0.85))
    ax = fig.subplots()
    off_diagonal = np.ma.masked_array(report.network.jaccard, mask=np.eye(n, dtype=bool))
    cmap = _cmap(look.cmap or "viridis").with_extremes(bad="0.85")
    low, high = scale
    image = ax.imshow(off_diagonal, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="Jaccard index of the kept units", shrink=0.9)
    for axis in "xy":
        _label_ticks(ax, axis, report.tasks)
    ax.set_xlabel("task")
    ax.set_ylabel("task")
    ax.set_title(look.title or f"Units shared between tasks\n{_name(report)}")
    _annotate(ax, image, off_diagonal, report.network.shared)
    return fig


def parse_scale(text: str) -> tuple[float, float]:
    """``"LO,HI"``: the Jaccard values the colours span, ``0 <= LO < HI <= 1``."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: give LO,HI, e.g. 0,1 or 0.3,0.4") from None
    if not 0 <= low < high <= 1:
        raise ValueError(f"{text!r}: need 0 <= LO < HI <= 1")
    return low, high


# measure


def measure_figure(result: LayerMeasure, look: Look = Look()):
    """The measure of each (output unit, input unit) pair: the same over a conv's kernel,
    so one cell per pair; colours over the measure's own values (two for a binary one)."""
    from matplotlib.colors import BoundaryNorm

    matrix = unit_pairs(result.weight)
    top = max(1, int(np.ceil(matrix.max(initial=0))))
    cmap = _cmap(look.cmap or "viridis").resampled(top + 1)
    norm = BoundaryNorm(np.arange(top + 2) - 0.5, cmap.N)
    fig = new_figure(look, (COLUMN_WIDTH, COLUMN_WIDTH * 0.8))
    ax = fig.subplots()
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, ticks=_integer_ticks(top))
    colorbar.set_label(f"{result.aggregation} of the {result.of} measure")
    _unit_axis(ax, rows_are_units=True)
    ax.set_xlabel("input unit j")
    ax.set_ylabel("output unit i")
    ax.set_title(look.title or f"Parameter-wise measure of {result.layer}\n{_name(result)}")
    return fig


def unit_pairs(weight: np.ndarray) -> np.ndarray:
    """(out, in) from a weight-shaped measure: a conv's kernel positions all carry their
    (output unit, input unit) pair's value, so the first one stands for all."""
    return weight.reshape(*weight.shape[:2], -1)[:, :, 0]


def _integer_ticks(top: int) -> list[int]:
    step = max(1, -(-top // 8))
    return list(range(0, top + 1, step))


# capacity


def growth_figure(report: CapacityReport, look: Look = Look()):
    """Unit and parameter usage after each task, with the AdaHAT network sparsity."""
    _need_tasks(report.tasks, report.checkpoint)
    fig = new_figure(look, (COLUMN_WIDTH, 2.4))
    ax = fig.subplots()
    steps = np.arange(len(report.by_task))
    series = {
        "unit usage": [step.units_used / report.total.units for step in report.by_task],
        "param usage": [step.param_usage for step in report.by_task],
        "network sparsity": [step.network_sparsity for step in report.by_task],
    }
    for (label, values), style in zip(series.items(), ("-o", "-s", ":^"), strict=True):
        if None not in values:  # param usage is unknown for logs without weights
            ax.plot(steps, values, style, label=label, markersize=3)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter("{x:.0%}")
    _label_ticks(ax, "x", report.tasks)
    ax.set_xlabel("after task")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(look.title or f"Capacity used, task by task\n{_name(report)}")
    return fig


mask_heatmap = _drawn(mask_figure)
overlap_heatmap = _drawn(overlap_figure)
measure_heatmap = _drawn(measure_figure)
growth_plot = _drawn(growth_figure)


def _need_tasks(tasks: Sequence[int], checkpoint: str) -> None:
    if not tasks:
        raise HatinspectError(f"{checkpoint} stores no task masks: there is nothing to draw")


def _name(result) -> str:
    return Path(result.checkpoint).name


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def new_figure(look: Look, default: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=look.figsize or default, layout="constrained")


def save_figure(fig, path: Path, dpi: int) -> None:
    kind = output_format(path, FIGURE_FORMATS)
    write_atomically(
        path,
        lambda temporary: fig.savefig(temporary, format=kind, dpi=dpi, metadata=NO_DATES[kind]),
    )


def _panel_height(tasks: int) -> float:
    return float(np.clip(0.4 + 0.08 * tasks, 0.6, 3.0))


def _label_ticks(ax, axis: str, tasks: Sequence[int], room: float | None = None) -> None:
    """Task ids as tick labels, thinned to about 20 so that 50 tasks stay readable, and
    to what `room` inches of axis hold without two labels touching."""
    fit = 20 if room is None else max(1, min(20, int(room * 72 / TICK_SPACING)))
    every = max(1, -(-len(tasks) // fit))
    positions = list(range(0, len(tasks), every))
    getattr(ax, f"set_{axis}ticks")(positions, [str(tasks[i]) for i in positions])


def _unit_axis(ax, rows_are_units: bool = False) -> None:
    """Whole-unit ticks, no lines over the cells."""
    from matplotlib.ticker import MaxNLocator

    for axis in (ax.xaxis, ax.yaxis) if rows_are_units else (ax.xaxis,):
        axis.set_major_locator(MaxNLocator(integer=True))


def _annotate(ax, image, jaccard: np.ma.MaskedArray, shared: np.ndarray) -> None:
    """Each cell's shared units and Jaccard index, in the largest font (up to
    ``LABEL_FONT``) its width lets the text fit; fewer decimals, then the Jaccard index
    alone, then none where the cells are too small."""
    labels = _cell_labels(_cell_points(ax, len(jaccard)), int(shared.max(initial=0)))
    if labels is None:
        return
    size, count, decimals = labels
    for (a, b), value in np.ndenumerate(jaccard.data):
        units = f"{shared[a, b]:,}"
        if a == b:  # blank: each task's own kept units, where counts fit
            if count:
                ax.text(b, a, units, ha="center", va="center", fontsize=size)
            continue
        red, green, blue, _ = image.cmap(image.norm(value))
        ink = "black" if 0.3 * red + 0.6 * green + 0.1 * blue > 0.5 else "white"
        text = f"{units}\n{value:.{decimals}f}" if count else f"{value:.{decimals}f}"
        ax.text(b, a, text, ha="center", va="center", fontsize=size, color=ink)


def _cell_points(ax, tasks: int) -> float:
    """The side of one cell of the laid-out (square) image, in points."""
    fig = ax.get_figure()
    fig.draw_without_rendering()  # constrained layout places the axes
    box = ax.get_window_extent()
    return min(box.width, box.height) / tasks * 72 / fig.dpi


def _cell_labels(cell: float, most_units: int) -> tuple[float, bool, int] | None:
    """(font size, with the count, decimals) of the first label that fits a ``cell`` points
    wide at ``SMALLEST_LABEL`` or more: "count / 0.00", "0.00", "0.0"; None if none does."""
    count = len(f"{most_units:,}")
    for with_count, decimals in ((True, 2), (False, 2), (False, 1)):
        lines, chars = (2, max(count, 4)) if with_count else (1, 2 + decimals)
        # a digit is ~0.6 em wide and a line 1.2 em high; text keeps 10 % of the cell free
        size = min(LABEL_FONT, 0.9 * cell / (0.6 * chars), 0.9 * cell / (1.2 * lines))
        if size >= SMALLEST_LABEL:
            return size, with_count, decimals
    return None
