"""Human output: each result as rich tables. Rich drops colour when piped and honours NO_COLOR."""

from __future__ import annotations

import io
from functools import singledispatch

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from hatinspect.core.audit import AuditReport
from hatinspect.core.capacity import CapacityReport, TaskGrowth, Usage
from hatinspect.core.masks import MaskReport
from hatinspect.core.measure import LayerMeasure
from hatinspect.core.overlap import Overlap, OverlapReport
from hatinspect.core.types import Checkpoint


def print_tables(result, console: Console | None = None, **options) -> None:
    console = console or Console(highlight=False)
    for renderable in tables(result, width=console.width, **options):
        console.print(renderable)


@singledispatch
def tables(result, width: int | None = None, **options) -> list[RenderableType]:
    """Headings and tables for a result, in reading order; `width` is the console's, for
    layouts that adapt to it."""
    raise TypeError(f"no table for {type(result).__name__}")


def _natural_width(table: Table) -> int:
    return Console(width=1_000_000, file=io.StringIO()).measure(table).maximum


def _heading(text: str) -> Text:
    # a line of its own rather than a table title, which would wrap at the table's width
    return Text(text, "bold")


def _table(*columns: str, text: int = 1) -> Table:
    """A table whose first `text` columns are text and the others right-aligned numbers."""
    table = Table()
    table.add_column(columns[0], no_wrap=True)  # layer names stay whole: they are --layer globs
    for name in columns[1:text]:
        table.add_column(name, overflow="fold")
    for name in columns[text:]:
        table.add_column(name, justify="right")
    return table


def _count(n: int) -> str:
    return f"{n:,}"


def _share(x: float) -> str:
    return f"{x:.1%}"


def _of(n: int, fraction: float) -> str:
    return f"{n:,} ({fraction:.0%})"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


# masks


# per-task columns of the masks table, the fullest first: (header, cell)
MASK_TASK_COLUMNS = (
    (
        lambda task: f"task {task}",
        lambda layer, task: _of(layer.active[task], layer.fraction(task)),
    ),
    (lambda task: f"t{task}", lambda layer, task: _count(layer.active[task])),
)


@tables.register
def _(report: MaskReport, width: int | None = None) -> list[RenderableType]:
    return [
        _heading(f"Masks of {report.checkpoint} ({report.backbone})"),
        *_fitting_mask_table(report, width),
        _heading("Units by how many of the shown tasks use them"),
        _histogram_table(report),
    ]


def _fitting_mask_table(report: MaskReport, width: int | None) -> list[RenderableType]:
    for columns in MASK_TASK_COLUMNS:
        table = _mask_table(report, report.tasks, columns)
        if not width or _natural_width(table) <= width:
            compact = columns is not MASK_TASK_COLUMNS[0] and report.tasks
            return [table, Text("(tN: units task N uses)", "dim")] if compact else [table]
    # squeezed, every cell would be cut to "…": drop the per-task columns instead
    hint = "choose some with --task, or see all with --show or --format json"
    return [
        _mask_table(report, (), MASK_TASK_COLUMNS[0]),
        Text(
            f"({len(report.tasks)} per-task columns do not fit in {width} columns: {hint})", "dim"
        ),
    ]


def _mask_table(report: MaskReport, tasks: tuple[int, ...], columns) -> Table:
    header, cell = columns
    table = _table(
        "layer", "units", *map(header, tasks), "cumulative", "summative\nmax", "summative\nmean"
    )
    for layer in report.layers:
        table.add_row(
            layer.name,
            _count(layer.units),
            *[cell(layer, task) for task in tasks],
            _of(layer.cumulative, layer.cumulative_fraction),
            str(layer.summative_max),
            f"{layer.summative_mean:.2f}",
        )
    return table


def _histogram_table(report: MaskReport) -> Table:
    table = _table("tasks", "units", "share")
    table.add_column("")
    histogram = report.histogram
    widest = max(histogram) or 1
    for k, units in enumerate(histogram):
        bar = Text("█" * round(24 * units / widest), "green")
        table.add_row(str(k), _count(units), _share(units / report.units), bar)
    return table


# capacity


@tables.register
def _(report: CapacityReport, by_task: bool = False, **_layout) -> list[RenderableType]:
    if by_task:
        return [_heading("Growth task by task"), _growth_table(report, full=True)]
    return [
        _heading(f"Capacity of {report.checkpoint} after {len(report.tasks)} task(s)"),
        _usage_table(report),
        _heading("Per task"),
        _growth_table(report, full=False),
    ]


def _usage_table(report: CapacityReport) -> Table:
    table = _table(
        "layer", "units", "used", "unit usage", "params", "protected", "param usage", "free"
    )
    for usage in report.layers:
        table.add_row(*_usage_cells(usage))
    table.add_section()
    table.add_row(*_usage_cells(report.total), style="bold")
    return table


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


def _growth_table(report: CapacityReport, full: bool) -> Table:
    wide = ("units used", "params protected", "param usage") if full else ()
    table = _table("task", "new units", "reused units", "network sparsity", *wide)
    for step in report.by_task:
        table.add_row(*_growth_cells(step, full))
    return table


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
def _(result: LayerMeasure, **_layout) -> list[RenderableType]:
    return [
        _heading(
            f"Parameter-wise {result.aggregation} of {_unit_wise(result.of)}, "
            f"layer {result.layer} of {result.checkpoint}"
        ),
        _measure_stats(result),
        _heading("Histogram"),
        _measure_histogram(result),
    ]


def _unit_wise(of: str) -> str:
    kind, _, task = of.partition(":")
    return f"task {task.strip()}'s mask" if task else f"the {kind} mask"


def _measure_stats(result: LayerMeasure) -> Table:
    table = _table("tensor", "shape", "entries", "min", "max", "mean")
    tensors = [
        ("weight", result.weight, result.weight_stats),
        ("bias", result.bias, result.bias_stats),
    ]
    for name, values, stats in tensors:
        if stats is not None:
            table.add_row(
                name,
                _shape(values.shape),
                _count(stats.count),
                f"{stats.min:g}",
                f"{stats.max:g}",
                f"{stats.mean:.4g}",
            )
    return table


def _measure_histogram(result: LayerMeasure) -> Table:
    table = _table("value", "weights", "share", "biases")
    weights = dict(result.weight_stats.histogram)
    biases = dict(result.bias_stats.histogram) if result.bias_stats else {}
    for value in sorted(weights.keys() | biases.keys()):
        n = weights.get(value, 0)
        table.add_row(
            f"{value:g}",
            _count(n),
            _share(n / result.weight_stats.count),
            _count(biases[value]) if value in biases else "-",
        )
    return table


# overlap


# each cell of an overlap matrix, the fullest first; a narrower form is used when it fits
OVERLAP_CELLS = {
    "Shared units (Jaccard)": lambda shared, jaccard: f"{shared:,} ({jaccard:.2f})",
    "Jaccard index of the kept units": lambda shared, jaccard: f"{jaccard:.2f}",
}


@tables.register
def _(
    report: OverlapReport, per_layer: bool = False, width: int | None = None
) -> list[RenderableType]:
    renderables = []
    for scope in [report.network, *(report.layers if per_layer else ())]:
        where = "the network" if scope is report.network else f"layer {scope.name}"
        renderables += _fitting_overlap(report.tasks, scope, width, where)
    return renderables


def _fitting_overlap(tasks, scope: Overlap, width: int | None, where: str) -> list[RenderableType]:
    for title, cell in OVERLAP_CELLS.items():
        table = _overlap_table(tasks, scope, cell)
        if not width or _natural_width(table) <= width:
            heading = f"{title} between tasks, {where}: {scope.units:,} units"
            return [_heading(heading), table]
    hint = "choose some with --task, draw them with --heatmap, or use --format json"
    return [Text(f"({len(tasks)} tasks do not fit in {width} columns: {hint})", "dim")]


def _overlap_table(tasks: tuple[int, ...], scope: Overlap, cell) -> Table:
    table = _table("task", *map(str, tasks))
    jaccard = scope.jaccard
    for a, task in enumerate(tasks):
        table.add_row(
            str(task), *[cell(scope.shared[a, b], jaccard[a, b]) for b in range(len(tasks))]
        )
    return table


# audit


@tables.register
def _(report: AuditReport, **_layout) -> list[RenderableType]:
    return [
        _heading(f"Audit of {report.after} against the protection of {report.before}"),
        _audit_table(report),
        _verdict(report),
    ]


def _audit_table(report: AuditReport) -> Table:
    table = _table("layer", "protected", "changed", "max |change|", "mean |change|")
    for layer in report.layers:
        table.add_row(
            layer.name,
            _count(layer.protected),
            _count(layer.changed),
            f"{layer.max_abs_change:.3g}",
            f"{layer.mean_abs_change:.3g}",
            style="red" if layer.changed else None,
        )
    table.add_section()
    table.add_row("total", _count(report.protected), _count(report.changed), "", "", style="bold")
    return table


def _verdict(report: AuditReport) -> Text:
    if report.ok:
        return Text(
            f"OK: all {report.protected:,} protected parameters are bit-identical.", "green"
        )
    return Text(
        f"FAILED: {report.changed:,} of {report.protected:,} protected parameters changed.",
        "bold red",
    )


# info


@tables.register
def _(checkpoint: Checkpoint, **_layout) -> list[RenderableType]:
    return [
        _heading(str(checkpoint.path)),
        _about(checkpoint),
        _heading("Layers"),
        _layers(checkpoint),
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


def _layers(checkpoint: Checkpoint) -> Table:
    table = _table("layer", "preceding", "weight shape", "bias", "units", "params", text=4)
    for layer in checkpoint.layers:
        table.add_row(
            layer.name,
            f"{layer.preceding} (inferred)" if layer.preceding_inferred else layer.preceding or "-",
            _shape(layer.weight_shape),
            "yes" if layer.has_bias else "no",
            _count(layer.units),
            _count(layer.params),
        )
    return table
