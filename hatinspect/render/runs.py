"""Runs rendered: the comparison and a run folder's capacity as tables, and the capacity
curves of every run on one figure. Registers with tables."""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType

from hatinspect.analysis.compare import Comparison, RunStep
from hatinspect.analysis.report import Report
from hatinspect.analysis.runs import FileUsage, RunCapacity
from hatinspect.model.errors import HatinspectError
from hatinspect.render.accuracy import accuracy_tables, points
from hatinspect.render.cells import count, heading, of, share
from hatinspect.render.layout import Grid, tables

# compare


@tables.register
def _(comparison: Comparison, per_layer: bool = False, width: int | None = None, **_layout):
    out = [heading(f"{len(comparison.runs)} run(s), task by task")]
    out += _steps(comparison).fitted(width, lead=2)
    out += [heading("Final usage per layer"), *_layers(comparison).fitted(width)]
    for run in comparison.runs:
        out += accuracy_tables(run.accuracy_view, width, run.name)
        for table in run.metrics:
            out += [heading(f"{run.name}: {Path(table.path).name}"), *_metrics(table).fitted(width)]
    return out


def _metrics(table) -> Grid:
    tested = table.tested
    grid = Grid(["step", table.average, *(f"task {t}" for t in tested)])
    for step, average, values in table.rows:
        grid.add_row(str(step), f"{average:.4g}", *(f"{values[t]:.4g}" if t in values else "-"
                                                    for t in tested))  # fmt: skip
    return grid


# two-line headers: a table of ten columns fits in 120 columns, and folds in two at 80
STEP_COLUMNS = (
    "after",
    "run",
    "units\nused",
    "params\nprotected",
    "new\nunits",
    "reused\nunits",
    "network\nsparsity",
    "accuracy",
    "forgetting",
    "backward\ntransfer",
)
# runs whose masks cover weights count what each task took in weights
WEIGHT_COLUMNS = ("new\nweights", "reused\nweights")


def step_columns(comparison: Comparison) -> list[str]:
    """The columns of the steps table: runs of unit masks count units, runs of weight
    masks weights; a comparison of both kinds has both columns, "-" where a run has none."""
    kinds = {run.covers_weights for run in comparison.runs}
    columns = list(STEP_COLUMNS)
    if kinds == {True}:
        columns[3:6] = ["weights\nprotected", *WEIGHT_COLUMNS]
    elif kinds == {True, False}:
        columns[6:6] = WEIGHT_COLUMNS
    return columns


def _steps(comparison: Comparison) -> Grid:
    columns = step_columns(comparison)
    grid = Grid(columns, text=2)
    for t in range(comparison.task_count):
        for run in comparison.runs:
            if t < len(run.steps):
                cells = _step_cells(run.steps[t], columns)
                grid.add_row(f"task {run.steps[t].task}", run.name, *cells)
        if t + 1 < comparison.task_count:
            grid.add_section()
    return grid


def _step_cells(step: RunStep, columns: list[str]) -> list[str]:
    def maybe(value: int | None) -> str:
        return "-" if value is None else count(value)

    counted = {
        "new\nunits": count(step.new_units),
        "reused\nunits": count(step.reused_units),
        "new\nweights": maybe(step.new_params),
        "reused\nweights": maybe(step.reused_params),
    }
    if step.new_params is not None and "new\nweights" in columns and "new\nunits" in columns:
        counted["new\nunits"] = counted["reused\nunits"] = "-"  # a run of weights: weights
    elif step.new_params is None:
        counted["new\nweights"] = counted["reused\nweights"] = "-"
    return [
        of(step.units_used, step.unit_usage),
        of(step.params_protected, step.param_usage),
        *(counted[column] for column in columns if column in counted),
        share(step.network_sparsity),
        "-" if step.accuracy is None else share(step.accuracy),
        points(step.forgetting),
        points(step.backward_transfer, sign=True),
    ]


def _layers(comparison: Comparison) -> Grid:
    grid = Grid(["layer", *(f"{run.name}:\nunits / {_entries(run)}" for run in comparison.runs)])
    usage = [{layer.name: layer for layer in run.layers} for run in comparison.runs]
    for layer in comparison.layer_names:
        cells = [
            f"{u[layer].unit_usage:.0%} / {_percent(u[layer].param_usage)}" if layer in u else "-"
            for u in usage
        ]
        grid.add_row(layer, *cells)
    return grid


def _percent(usage: float | None) -> str:
    return "-" if usage is None else f"{usage:.0%}"


def _entries(run) -> str:
    """What a run's parameter counts are: the weights its masks cover, or every param."""
    return "weights" if run.covers_weights else "params"


# capacity of a run folder


@tables.register
def _(result: RunCapacity, width: int | None = None, **options) -> list[RenderableType]:
    """The last file's capacity, then each file's, where the run has more than one."""
    if len(result.trajectory) < 2:
        return tables(result.capacity, width=width, **options)
    return [
        *tables(result.capacity, width=width, **options),
        heading("File by file"),
        *_trajectory(result.trajectory).fitted(width),
    ]


def _trajectory(trajectory: tuple[FileUsage, ...]) -> Grid:
    grid = Grid(["file", "tasks", "units used", "params protected"])
    for step in trajectory:
        grid.add_row(
            Path(step.file).name,
            str(step.tasks),
            of(step.units_used, step.unit_usage),
            of(step.params_protected, step.param_usage),
        )
    return grid


# a report


@tables.register
def _(report: Report, width: int | None = None, **_layout) -> list[RenderableType]:
    """Each run's parts in the report's order (what the file is, capacity, masks, overlap,
    audits), then the comparison of several runs."""
    out: list[RenderableType] = []
    for run in report.runs:
        out.append(heading(f"{run.run.name}: {run.summary}"))
        parts = (run.checkpoint, run.capacity, run.masks, run.overlap, *run.audits)
        for part in (*parts, *([run.importance] if run.importance else [])):
            out += tables(part, width=width)
    if report.comparison is not None:
        out += tables(report.comparison)
    return out


# the figure


def curves_figure(comparison: Comparison, look=None):
    """Parameter usage (solid) and unit usage (dashed) after each task, one colour a run."""
    from hatinspect.render.figures import COLUMN_WIDTH, Look, new_figure

    look = look or Look()
    if not any(run.steps for run in comparison.runs):
        raise HatinspectError("no run stores task masks: there is nothing to draw")
    fig = new_figure(look, (COLUMN_WIDTH, 2.6))
    ax = fig.subplots()
    for index, run in enumerate(comparison.runs):
        colour = f"C{index % 10}"
        x = range(1, len(run.steps) + 1)
        known = all(s.param_usage is not None for s in run.steps)  # logs alone: units only
        if known:
            ax.plot(x, [s.param_usage for s in run.steps], "-o", color=colour, label=run.name,
                    markersize=3)  # fmt: skip
        ax.plot(x, [s.unit_usage for s in run.steps], "--", color=colour, alpha=0.7,
                label=None if known else run.name)  # fmt: skip
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("params protected (solid)\nunits used (dashed)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(look.title or "Capacity used, task by task")
    return fig


def capacity_curves(comparison: Comparison, path: Path, look=None) -> None:
    """Draw `curves_figure` to a .png, .svg or .pdf file."""
    from hatinspect.render.figures import Look, save_figure, styled

    look = look or Look()
    with styled():
        save_figure(curves_figure(comparison, look), path, look.dpi)
