"""Human output: each result as rich tables. Rich drops colour when piped and honours NO_COLOR.

Tables never lose data: piped output has no width limit (unless ``COLUMNS`` or ``--width``
sets one), and a table wider than its limit is folded into several tables of fewer columns,
never cut to ellipses. Notes about the layout are `Note`s, which go to stderr once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import singledispatch

import numpy as np
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from hatinspect.analysis.audit import NOTHING_PROTECTED, AuditReport, verdict, verdict_tone
from hatinspect.analysis.capacity import CapacityReport, TaskGrowth, Usage
from hatinspect.analysis.masks import MaskReport
from hatinspect.analysis.measure import LayerMeasure
from hatinspect.analysis.overlap import Overlap, OverlapReport
from hatinspect.model.checkpoint import Checkpoint

UNLIMITED = 1_000_000  # the console width standing for "no limit"
OVERLAP_MATRIX_TASKS = 64  # up to this many tasks an overlap table shows the whole matrix


class Note(str):
    """A line about the output rather than part of it: printed on stderr, once."""


def output_width(width: int | None = None, stream=None) -> int | None:
    """Columns a table may use: ``width`` (``--width``), else ``COLUMNS``, else the
    terminal's; ``None``, no limit, when the output is not a terminal."""
    if width:
        return width
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = stream or sys.stdout
    if stream.isatty():
        return Console(file=stream).width
    return None


def console_for(width: int | None, **kwargs) -> Console:
    return Console(highlight=False, width=width or UNLIMITED, **kwargs)


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
        print(f"note: {note}", file=sys.stderr)


@singledispatch
def tables(result, width: int | None = None, **options) -> list[RenderableType | Note]:
    """Headings, tables and notes for a result, in reading order; `width` is the columns
    available (None: no limit), for layouts that adapt to it."""
    raise TypeError(f"no table for {type(result).__name__}")


def _heading(text: str) -> Text:
    # a line of its own rather than a table title, which would wrap at the table's width
    return Text(text, "bold")


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
    section: int | None = None  # a rule before this row

    def add_row(self, *cells: str, style: str | None = None) -> None:
        self.rows.append((list(cells), style))

    def add_section(self) -> None:
        self.section = len(self.rows)

    def widths(self) -> list[int]:
        """Each column's natural width: its widest header line or cell."""
        widths = [max(map(cell_len, name.split("\n"))) for name in self.columns]
        for cells, _ in self.rows:
            widths = [max(w, cell_len(c)) for w, c in zip(widths, cells, strict=True)]
        return widths

    def natural_width(self) -> int:
        # rich's default box: one space of padding each side and a rule between columns
        return _span(self.widths())

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
            ruled = r + 1 == self.section
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
        if not width or _span(widths) <= width:
            return [self.table()]
        parts: list[list[int]] = []
        current: list[int] = []
        for i in range(lead, len(widths)):
            if current and _span([widths[j] for j in [*range(lead), *current, i]]) > width:
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


def _span(widths: Sequence[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1


def _count(n: int) -> str:
    return f"{n:,}"


def _share(x: float) -> str:
    return f"{x:.1%}"


def _of(n: int, fraction: float) -> str:
    return f"{n:,} ({fraction:.0%})"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _table(*columns: str, text: int = 1) -> Table:
    """A rich table whose first `text` columns are text and the others right-aligned numbers."""
    table = Table()
    table.add_column(columns[0], no_wrap=True)  # layer names stay whole: they are --layer globs
    for name in columns[1:text]:
        table.add_column(name, overflow="fold")
    for name in columns[text:]:
        table.add_column(name, justify="right")
    return table


# masks


# per-task columns of the masks table, the fullest first: (header, cell)
MASK_TASK_COLUMNS = (
    (
        lambda task: f"task {task}",
        lambda layer, task: _of(layer.active[task], layer.fraction(task)),
    ),
    (lambda task: f"t{task}", lambda layer, task: _count(layer.active[task])),
)
# the columns after the per-task ones, the first to go last: a narrow terminal loses
# `summative mean`, then `summative max`, before any column a user chose with --task
MASK_SUMMARY_COLUMNS = ("cumulative", "summative\nmax", "summative\nmean")


@tables.register
def _(
    report: MaskReport, width: int | None = None, chosen_tasks: bool = False
) -> list[RenderableType | Note]:
    return [
        _heading(f"Masks of {report.checkpoint} ({report.backbone})"),
        *_fitting_mask_table(report, width, chosen_tasks),
        _heading("Units by how many of the shown tasks use them"),
        _histogram_table(report, width),
    ]


def _fitting_mask_table(report: MaskReport, width: int | None, chosen: bool) -> list:
    for columns in MASK_TASK_COLUMNS:
        grid = _mask_grid(report, report.tasks, columns)
        if not width or grid.natural_width() <= width:
            return [grid.table(), *_legend(report, columns)]
    widths = grid.widths()
    everything = list(range(len(widths)))
    for dropped in (1, 2):
        keep = everything[:-dropped]
        if _span([widths[i] for i in keep]) <= width:
            left_out = " and ".join(c.replace("\n", " ") for c in MASK_SUMMARY_COLUMNS[-dropped:])
            note = Note(
                f"{left_out} left out to fit in {width} columns (see all: --width, --format)"
            )
            return [grid.table(keep), *_legend(report, columns), note]
    if chosen:  # the user picked these tasks: fold them over several tables, drop none
        return [*grid.fitted(width, lead=2), *_legend(report, columns)]
    hint = "choose some with --task, or see all with --width, --show or --format json"
    return [
        _mask_grid(report, (), MASK_TASK_COLUMNS[0]).table(),
        Note(f"{len(report.tasks)} per-task columns do not fit in {width} columns: {hint}"),
    ]


def _legend(report: MaskReport, columns) -> list[Text]:
    compact = columns is not MASK_TASK_COLUMNS[0] and report.tasks
    return [Text("(tN: units task N uses)", "dim")] if compact else []


def _mask_grid(report: MaskReport, tasks: tuple[int, ...], columns) -> Grid:
    header, cell = columns
    grid = Grid(["layer", "units", *map(header, tasks), *MASK_SUMMARY_COLUMNS])
    for layer in report.layers:
        grid.add_row(
            layer.name,
            _count(layer.units),
            *[cell(layer, task) for task in tasks],
            _of(layer.cumulative, layer.cumulative_fraction),
            str(layer.summative_max),
            f"{layer.summative_mean:.2f}",
        )
    return grid


def _histogram_table(report: MaskReport, width: int | None) -> Table:
    histogram = report.histogram
    rows = [
        (str(k), _count(units), _share(units / report.units)) for k, units in enumerate(histogram)
    ]
    numbers = Grid(["tasks", "units", "share"])
    for row in rows:
        numbers.add_row(*row)
    # the bars only illustrate the counts: they shrink to the room left
    room = 24 if not width else max(0, min(24, width - numbers.natural_width() - 3))
    table = _table("tasks", "units", "share")
    table.add_column("", no_wrap=True)
    widest = max(histogram) or 1
    for row, units in zip(rows, histogram, strict=True):
        table.add_row(*row, Text("█" * round(room * units / widest), "green"))
    return table


# capacity


@tables.register
def _(
    report: CapacityReport, by_task: bool = False, width: int | None = None
) -> list[RenderableType | Note]:
    if not report.protects:
        why = "a fine-tuning run" if report.tasks else "no task stored"
        return [
            _heading(f"Capacity of {report.checkpoint}"),
            Text(f"no masks: nothing is protected ({why}); every parameter is free"),
        ]
    return [
        _heading(f"Capacity of {report.checkpoint} after {len(report.tasks)} task(s)"),
        *_usage_grid(report).fitted(width),
        _heading("Growth task by task" if by_task else "Per task"),
        *_growth_grid(report, full=by_task).fitted(width),
    ]


def _usage_grid(report: CapacityReport) -> Grid:
    grid = Grid(
        ["layer", "units", "used", "unit usage", "params", "protected", "param usage", "free"]
    )
    for usage in report.layers:
        grid.add_row(*_usage_cells(usage))
    grid.add_section()
    grid.add_row(*_usage_cells(report.total), style="bold")
    return grid


def _usage_cells(usage: Usage) -> list[str]:
    return [
        usage.name,
        _count(usage.units),
        _count(usage.units_used),
        _share(usage.unit_usage),
        _count(usage.params),
        _count(usage.params_protected),
        _share(usage.param_usage),
        _share(usage.free),
    ]


def _growth_grid(report: CapacityReport, full: bool) -> Grid:
    wide = ("units used", "params protected", "param usage") if full else ()
    grid = Grid(["task", "new units", "reused units", "network sparsity", *wide])
    for step in report.by_task:
        grid.add_row(*_growth_cells(step, full))
    return grid


def _growth_cells(step: TaskGrowth, full: bool) -> list[str]:
    cells = [
        str(step.task),
        _count(step.new_units),
        _count(step.reused_units),
        _share(step.network_sparsity),
    ]
    if full:
        cells += [_count(step.units_used), _count(step.params_protected), _share(step.param_usage)]
    return cells


# measure


@tables.register
def _(result: LayerMeasure, width: int | None = None) -> list[RenderableType | Note]:
    return [
        _heading(
            f"Parameter-wise {result.aggregation} of {_unit_wise(result.of)}, "
            f"layer {result.layer} of {result.checkpoint}"
        ),
        *_measure_stats(result).fitted(width),
        _heading("Histogram"),
        *_measure_histogram(result).fitted(width),
    ]


def _unit_wise(of: str) -> str:
    kind, _, task = of.partition(":")
    return f"task {task.strip()}'s mask" if task else f"the {kind} mask"


def _measure_stats(result: LayerMeasure) -> Grid:
    grid = Grid(["tensor", "shape", "entries", "min", "max", "mean"])
    tensors = [
        ("weight", result.weight_shape, result.weight_stats),
        ("bias", result.bias_shape, result.bias_stats),
    ]
    for name, shape, stats in tensors:
        if stats is not None:
            grid.add_row(
                name,
                _shape(shape),
                _count(stats.count),
                f"{stats.min:g}",
                f"{stats.max:g}",
                f"{stats.mean:.4g}",
            )
    return grid


def _measure_histogram(result: LayerMeasure) -> Grid:
    grid = Grid(["value", "weights", "share", "biases"])
    weights = dict(result.weight_stats.histogram)
    biases = dict(result.bias_stats.histogram) if result.bias_stats else {}
    for value in sorted(weights.keys() | biases.keys()):
        n = weights.get(value, 0)
        grid.add_row(
            f"{value:g}",
            _count(n),
            _share(n / result.weight_stats.count),
            _count(biases[value]) if value in biases else "-",
        )
    return grid


# overlap


# each cell of an overlap matrix, the fullest first; a narrower form is used when it fits
OVERLAP_CELLS = {
    "Shared units (Jaccard)": lambda shared, jaccard: f"{shared:,} ({jaccard:.2f})",
    "Jaccard index of the kept units": lambda shared, jaccard: f"{jaccard:.2f}",
}


@tables.register
def _(
    report: OverlapReport, per_layer: bool = False, width: int | None = None
) -> list[RenderableType | Note]:
    scopes = [report.network, *(report.layers if per_layer else ())]
    wide = len(report.tasks) > OVERLAP_MATRIX_TASKS
    renderables: list[RenderableType | Note] = []
    for scope in scopes:
        where = "the network" if scope is report.network else f"layer {scope.name}"
        if wide:
            renderables += _overlap_summary(report.tasks, scope, width, where)
        else:
            renderables += _fitting_overlap(report.tasks, scope, width, where)
    if wide:
        renderables.append(
            Note(
                f"{len(report.tasks)} tasks: each task's overlaps are summarised; "
                "the full matrices are in --format json or csv, or a --heatmap"
            )
        )
    return renderables


def _fitting_overlap(tasks, scope: Overlap, width: int | None, where: str) -> list:
    jaccard = scope.jaccard
    grids = {
        title: _overlap_grid(tasks, scope.shared, jaccard, cell)
        for title, cell in OVERLAP_CELLS.items()
    }
    heading = "{title} between tasks, " + f"{where}: {scope.units:,} units"
    for title, grid in grids.items():
        if not width or grid.natural_width() <= width:
            return [_heading(heading.format(title=title)), grid.table()]
    title, grid = next(iter(grids.items()))  # folded, every cell whole
    return [_heading(heading.format(title=title)), *grid.fitted(width)]


def _overlap_grid(tasks: tuple[int, ...], shared, jaccard, cell) -> Grid:
    grid = Grid(["task", *map(str, tasks)])
    for a, task in enumerate(tasks):
        grid.add_row(str(task), *[cell(shared[a, b], jaccard[a, b]) for b in range(len(tasks))])
    return grid


def _overlap_summary(tasks, scope: Overlap, width: int | None, where: str) -> list:
    others = scope.jaccard.copy()
    np.fill_diagonal(others, np.nan)
    most, least = np.nanargmax(others, axis=1), np.nanargmin(others, axis=1)
    mean = np.nanmean(others, axis=1)
    grid = Grid(["task", "units kept", "mean Jaccard", "closest", "Jaccard", "farthest", "Jaccard"])
    for a, task in enumerate(tasks):
        grid.add_row(
            str(task),
            _count(int(scope.shared[a, a])),
            f"{mean[a]:.2f}",
            str(tasks[most[a]]),
            f"{others[a, most[a]]:.2f}",
            str(tasks[least[a]]),
            f"{others[a, least[a]]:.2f}",
        )
    heading = (
        f"Overlap of each task with the {len(tasks) - 1} others, {where}: {scope.units:,} units"
    )
    return [_heading(heading), *grid.fitted(width)]


# audit


@tables.register
def _(report: AuditReport, width: int | None = None, **_layout) -> list[RenderableType]:
    return [
        _heading(f"Audit of {report.after} against the protection of {report.before}"),
        *([] if report.rule == NOTHING_PROTECTED else _audit_grid(report).fitted(width)),
        _verdict(report),
    ]


def _audit_grid(report: AuditReport) -> Grid:
    grid = Grid(["layer", "protected", "changed", "max |change|", "mean |change|"])
    for layer in report.layers:
        grid.add_row(
            layer.name,
            _count(layer.protected),
            _count(layer.changed),
            f"{layer.max_abs_change:.3g}",
            f"{layer.mean_abs_change:.3g}",
            style="red" if layer.changed else None,
        )
    grid.add_section()
    grid.add_row("total", _count(report.protected), _count(report.changed), "", "", style="bold")
    return grid


def _verdict(report: AuditReport) -> Text:
    return Text(verdict(report), _VERDICT_STYLES[verdict_tone(report)])


_VERDICT_STYLES = {"pass": "green", "drift": "yellow", "fail": "bold red", "none": ""}


# info


@tables.register
def _(checkpoint: Checkpoint, width: int | None = None, **_layout) -> list[RenderableType]:
    return [
        _heading(str(checkpoint.path)),
        _about(checkpoint),
        _heading("Layers"),
        *_layers(checkpoint).fitted(width),
    ]


def _about(checkpoint: Checkpoint) -> Table:
    table = Table(show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    facts = {
        "backbone": checkpoint.backbone,
        "source": checkpoint.source,
        "tasks": ", ".join(map(str, checkpoint.task_ids)) or "(none)",
        "weighted layers": str(len(checkpoint.layers)),
        "their parameters": _count(sum(layer.params for layer in checkpoint.layers)),
    }
    for key, value in [*facts.items(), *checkpoint.metadata.items()]:
        table.add_row(key, value)
    return table


def _layers(checkpoint: Checkpoint) -> Grid:
    grid = Grid(["layer", "preceding", "weight shape", "bias", "units", "params"], text=4)
    for layer in checkpoint.layers:
        grid.add_row(
            layer.name,
            f"{layer.preceding} (inferred)" if layer.preceding_inferred else layer.preceding or "-",
            _shape(layer.weight_shape),
            "yes" if layer.has_bias else "no",
            _count(layer.units),
            _count(layer.params),
        )
    return grid


# runs: registered by their own module
from hatinspect.render import runs as _runs  # noqa: E402, F401
