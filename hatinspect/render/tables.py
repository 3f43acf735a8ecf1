"""Human output: each result as rich tables. Rich drops colour when piped and honours NO_COLOR.

Tables never lose data: piped output has no width limit (unless ``COLUMNS`` or ``--width``
sets one), and a table wider than its limit is folded into several tables of fewer columns,
never cut to ellipses. Notes about the layout are `Note`s, which go to stderr once.
"""

from __future__ import annotations

import numpy as np
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from hatinspect.analysis.accuracy import accuracy_view
from hatinspect.analysis.audit import NOTHING_PROTECTED, AuditReport, verdict, verdict_tone
from hatinspect.analysis.capacity import CapacityReport, TaskGrowth, Usage
from hatinspect.analysis.importance import ImportanceOverlap
from hatinspect.analysis.masks import MaskReport
from hatinspect.analysis.measure import LayerMeasure
from hatinspect.analysis.overlap import Overlap, OverlapReport
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.render.about import algorithm_rows, other_metadata, task_list, update_norms
from hatinspect.render.accuracy import accuracy_tables
from hatinspect.render.cells import count, dims, heading, new_table, of, share
from hatinspect.render.layout import Grid, Note, tables

OVERLAP_MATRIX_TASKS = 64  # up to this many tasks an overlap table shows the whole matrix


# masks


# per-task columns of the masks table, the fullest first: (header, cell)
MASK_TASK_COLUMNS = (
    (
        lambda task: f"task {task}",
        lambda layer, task: of(layer.active[task], layer.fraction(task)),
    ),
    (lambda task: f"t{task}", lambda layer, task: count(layer.active[task])),
)
# the columns after the per-task ones
MASK_SUMMARY_COLUMNS = ("cumulative", "summative\nmax", "summative\nmean")


@tables.register
def _(report: MaskReport, width: int | None = None) -> list[RenderableType | Note]:
    return [
        heading(f"Masks of {report.checkpoint} ({report.backbone})"),
        *_fitting_mask_table(report, width),
        heading(f"{report.entries.capitalize()} by how many of the shown tasks use them"),
        _histogram_table(report, width),
    ]


def _fitting_mask_table(report: MaskReport, width: int | None) -> list:
    """The fullest per-task columns that fit in `width`; else the compact ones, folded
    over several tables that repeat the layer and its size: every column kept whole."""
    for columns in MASK_TASK_COLUMNS:
        grid = mask_grid(report, report.tasks, columns)
        if not width or grid.natural_width() <= width:
            return [grid.table(), *_legend(report, columns)]
    return [*grid.fitted(width, lead=2), *_legend(report, columns)]


def _legend(report: MaskReport, columns) -> list[Text]:
    compact = columns is not MASK_TASK_COLUMNS[0] and report.tasks
    return [Text(f"(tN: {report.entries} task N uses)", "dim")] if compact else []


def mask_grid(report: MaskReport, tasks: tuple[int, ...], columns) -> Grid:
    header, cell = columns
    grid = Grid(["layer", report.entries, *map(header, tasks), *MASK_SUMMARY_COLUMNS])
    for layer in report.layers:
        grid.add_row(
            layer.name,
            count(layer.units),
            *[cell(layer, task) for task in tasks],
            of(layer.cumulative, layer.cumulative_fraction),
            str(layer.summative_max),
            f"{layer.summative_mean:.2f}",
        )
    return grid


def _histogram_table(report: MaskReport, width: int | None) -> Table:
    histogram = report.histogram
    rows = [
        (str(k), count(units), share(units / report.units)) for k, units in enumerate(histogram)
    ]
    numbers = Grid(["tasks", report.entries, "share"])
    for row in rows:
        numbers.add_row(*row)
    # the bars only illustrate the counts: they shrink to the room left
    room = 24 if not width else max(0, min(24, width - numbers.natural_width() - 3))
    table = new_table("tasks", report.entries, "share")
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
            heading(f"Capacity of {report.checkpoint}"),
            Text(f"no masks: nothing is protected ({why}); every parameter is free"),
        ]
    return [
        heading(f"Capacity of {report.checkpoint} after {len(report.tasks)} task(s)"),
        *_usage_grid(report).fitted(width),
        heading("Growth task by task" if by_task else "Per task"),
        *_growth_grid(report, full=by_task).fitted(width),
        *_network_capacity(report),
        *_unlearning(report, width),
    ]


def _unlearning(report: CapacityReport, width: int | None) -> list[RenderableType]:
    if not report.unlearning:
        return []
    grid = Grid(["unlearned task", "units freed", "affected tasks", "compensation units"], text=3)
    for u in report.unlearning:
        shared = ", ".join(f"task {t}: {n:,}" for t, n in u.compensation.items()) or "-"
        grid.add_row(str(u.task), count(u.freed), ", ".join(map(str, u.affected)) or "-", shared)
    return [heading("Unlearning (AmnesiacHAT)"), *grid.fitted(width)]


def _network_capacity(report: CapacityReport) -> list[RenderableType]:
    if report.network_capacity is None:
        return []
    means = report.network_capacity
    return [
        Text(
            f"network capacity (mean adjustment rate of task {report.tasks[-1]}): "
            f"{means['clarena']:.4f} as CLArena's HATNetworkCapacityMetric counts it, "
            f"{means['per_parameter']:.4f} per parameter (CLArena also counts a bias rate for "
            "layers without a bias, and a mode's single rate once per layer)"
        )
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
        count(usage.units),
        count(usage.units_used),
        share(usage.unit_usage),
        count(usage.params),
        count(usage.params_protected),
        share(usage.param_usage),
        share(usage.free),
    ]


def _growth_grid(report: CapacityReport, full: bool) -> Grid:
    if report.covers != "units":  # masks of weights: what each task took of them
        grid = Grid(["task", "new weights", "reused weights", "weights protected", "param usage"])
        for step in report.by_task:
            grid.add_row(str(step.task), count(step.new_params), count(step.reused_params),
                         count(step.params_protected), share(step.param_usage))  # fmt: skip
        return grid
    wide = ("units used", "params protected", "param usage") if full else ()
    grid = Grid(["task", "new units", "reused units", "network sparsity", *wide])
    for step in report.by_task:
        grid.add_row(*_growth_cells(step, full))
    return grid


def _growth_cells(step: TaskGrowth, full: bool) -> list[str]:
    cells = [
        str(step.task),
        count(step.new_units),
        count(step.reused_units),
        share(step.network_sparsity),
    ]
    if full:
        cells += [count(step.units_used), count(step.params_protected), share(step.param_usage)]
    return cells


# measure


@tables.register
def _(result: LayerMeasure, width: int | None = None) -> list[RenderableType | Note]:
    return [
        heading(_measure_title(result)),
        *_adjustment_basis(result),
        *_measure_stats(result).fitted(width),
        heading("Histogram"),
        *_measure_histogram(result).fitted(width),
    ]


def _measure_title(result: LayerMeasure) -> str:
    where = f"layer {result.layer} of {result.checkpoint}"
    if result.adjustment is None:
        return f"Parameter-wise {result.aggregation} of {_unit_wise(result.of)}, {where}"
    title = "FG-AdaHAT" if result.adjustment["mode"] == "fg-adahat" else "AdaHAT"
    return f"{title}'s adjustment rate of task {result.adjustment['task']}, {where}"


def _adjustment_basis(result: LayerMeasure) -> list[RenderableType]:
    basis = result.adjustment
    if basis is None:
        return []
    origin = "given" if basis["sparsity_given"] else "from the stored masks"
    return [
        Text(
            f"mode {basis['mode']}, alpha {basis['alpha']:g}, network sparsity "
            f"{basis['sparsity']:.4g} ({origin}), layer factor k {basis['factor']:.4g} in "
            "alpha / (k I + alpha): the rates at the end of the task's training under that rule"
        )
    ]


def _unit_wise(of: str) -> str:
    kind, _, task = of.partition(":")
    if kind == "importance":
        return f"task {task.strip()}'s importance" if task else "the summed importance"
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
                dims(shape),
                count(stats.count),
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
            count(n),
            share(n / result.weight_stats.count),
            count(biases[value]) if value in biases else "-",
        )
    return grid


# overlap


# each cell of an overlap matrix, the fullest first; a narrower form is used when it fits
OVERLAP_CELLS = {
    "Shared {entries} (Jaccard)": lambda shared, jaccard: f"{shared:,} ({jaccard:.2f})",
    "Jaccard index of the kept {entries}": lambda shared, jaccard: f"{jaccard:.2f}",
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
            renderables += _overlap_summary(report.tasks, scope, width, where, report.entries)
        else:
            renderables += _fitting_overlap(report.tasks, scope, width, where, report.entries)
    if wide:
        renderables.append(
            Note(
                f"{len(report.tasks)} tasks: each task's overlaps are summarised; "
                "the full matrices are in --format json or csv, or a --heatmap"
            )
        )
    return renderables


@tables.register
def _(
    result: ImportanceOverlap, per_layer: bool = False, width: int | None = None
) -> list[RenderableType | Note]:
    pairs = list(zip(result.scopes, result.similarity, strict=True))
    out: list[RenderableType | Note] = []
    for name, matrix in pairs if per_layer else pairs[:1]:
        where = "the network" if name == "network" else f"layer {name}"
        grid = Grid(["task", *map(str, result.tasks)])
        for a, task in enumerate(result.tasks):
            grid.add_row(str(task), *(f"{matrix[a, b]:.2f}" for b in range(len(result.tasks))))
        out += [heading(f"Weighted Jaccard of {result.kind} importances, {where}"),
                *grid.fitted(width)]  # fmt: skip
    return out


def _fitting_overlap(tasks, scope: Overlap, width: int | None, where: str, entries: str) -> list:
    jaccard = scope.jaccard
    grids = {
        title: _overlap_grid(tasks, scope.shared, jaccard, cell)
        for title, cell in OVERLAP_CELLS.items()
    }
    title_line = "{title} between tasks, " + f"{where}: {scope.units:,} {entries}"
    for title, grid in grids.items():
        if not width or grid.natural_width() <= width:
            return [heading(title_line.format(title=title.format(entries=entries))), grid.table()]
    title, grid = next(iter(grids.items()))  # folded, every cell whole
    return [heading(title_line.format(title=title.format(entries=entries))), *grid.fitted(width)]


def _overlap_grid(tasks: tuple[int, ...], shared, jaccard, cell) -> Grid:
    grid = Grid(["task", *map(str, tasks)])
    for a, task in enumerate(tasks):
        grid.add_row(str(task), *[cell(shared[a, b], jaccard[a, b]) for b in range(len(tasks))])
    return grid


def _overlap_summary(tasks, scope: Overlap, width: int | None, where: str, entries: str) -> list:
    others = scope.jaccard.copy()
    np.fill_diagonal(others, np.nan)
    most, least = np.nanargmax(others, axis=1), np.nanargmin(others, axis=1)
    mean = np.nanmean(others, axis=1)
    grid = Grid(
        ["task", f"{entries} kept", "mean Jaccard", "closest", "Jaccard", "farthest", "Jaccard"]
    )
    for a, task in enumerate(tasks):
        grid.add_row(
            str(task),
            count(int(scope.shared[a, a])),
            f"{mean[a]:.2f}",
            str(tasks[most[a]]),
            f"{others[a, most[a]]:.2f}",
            str(tasks[least[a]]),
            f"{others[a, least[a]]:.2f}",
        )
    line = (
        f"Overlap of each task with the {len(tasks) - 1} others, {where}: {scope.units:,} {entries}"
    )
    return [heading(line), *grid.fitted(width)]


# audit


@tables.register
def _(report: AuditReport, width: int | None = None, **_layout) -> list[RenderableType]:
    return [
        heading(f"Audit of {report.after} against the protection of {report.before}"),
        *([] if report.rule == NOTHING_PROTECTED else _audit_grid(report).fitted(width)),
        _verdict(report),
    ]


def _audit_grid(report: AuditReport) -> Grid:
    grid = Grid(["layer", "protected", "changed", "max |change|", "mean |change|"])
    for layer in report.layers:
        grid.add_row(
            layer.name,
            count(layer.protected),
            count(layer.changed),
            f"{layer.max_abs_change:.3g}",
            f"{layer.mean_abs_change:.3g}",
            style="red" if layer.changed else None,
        )
    grid.add_section()
    grid.add_row("total", count(report.protected), count(report.changed), "", "", style="bold")
    return grid


def _verdict(report: AuditReport) -> Text:
    return Text(verdict(report), _VERDICT_STYLES[verdict_tone(report)])


_VERDICT_STYLES = {"pass": "green", "drift": "yellow", "fail": "bold red", "none": ""}


# info


@tables.register
def _(checkpoint: Checkpoint, width: int | None = None, **_layout) -> list[RenderableType]:
    return [
        heading(str(checkpoint.path)),
        _about(checkpoint),
        heading("Layers"),
        *_layers(checkpoint).fitted(width),
        *_updates(checkpoint, width),
        *accuracy_tables(accuracy_view(checkpoint), width),
    ]


def _updates(checkpoint: Checkpoint, width: int | None) -> list[RenderableType]:
    """AmnesiacHAT's stored parameter updates: per task and layer, the L2 norm."""
    norms = update_norms(checkpoint)
    if not norms:
        return []
    grid = Grid(["task", *checkpoint.layer_names], text=1)
    names = checkpoint.layer_names
    for task in checkpoint.task_ids:
        values = norms.get(str(task))
        if isinstance(values, dict):
            grid.add_row(str(task), *(f"{values.get(n, float('nan')):.3g}" for n in names))
        elif task in checkpoint.unlearned:  # unlearning subtracts the update and forgets it
            grid.add_row(f"{task} (unlearned)", *("removed" for _ in names))
    return [heading("Stored parameter updates (L2 norm per task and layer)"), *grid.fitted(width)]


def _about(checkpoint: Checkpoint) -> Table:
    table = Table(show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    facts = [
        ("backbone", checkpoint.backbone),
        ("source", checkpoint.source),
        ("tasks", task_list(checkpoint)),
        ("weighted layers", str(len(checkpoint.layers))),
        ("their parameters", count(checkpoint.params)),
        *algorithm_rows(checkpoint.metadata),
        *other_metadata(checkpoint.metadata),
    ]
    for key, value in facts:
        table.add_row(key, value)
    return table


def _bias(layer) -> str:
    if not layer.weights_known:
        return "-"
    return "yes" if layer.has_bias else "no"


def _layers(checkpoint: Checkpoint) -> Grid:
    grid = Grid(["layer", "preceding", "weight shape", "bias", "units", "params"], text=4)
    for layer in checkpoint.layers:
        grid.add_row(
            layer.name,
            f"{layer.preceding} (inferred)" if layer.preceding_inferred else layer.preceding or "-",
            dims(layer.weight_shape),
            _bias(layer),
            count(layer.units),
            count(layer.params),
        )
    return grid
