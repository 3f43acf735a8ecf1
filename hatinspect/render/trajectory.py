"""How a trajectory shows itself: a table of each task's layers (when each settled, what
it switched), and the figure of the gates over the records, units × records, one panel a
layer and a row of panels a task, as HAT's paper draws masks settling."""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType

from hatinspect.analysis.trajectory import LayerTrajectory, TrajectoryReport
from hatinspect.model.errors import HatinspectError
from hatinspect.render.cells import count, heading, share
from hatinspect.render.figures import (
    COLUMN_WIDTH,
    MAX_HEIGHT,
    MAX_PANELS,
    Look,
    new_figure,
    save_figure,
    styled,
)
from hatinspect.render.layout import Grid, Note, tables

DEFAULT_LOOK = Look()
SHOWN_SWITCHES = 12  # records whose switches a table cell lists; more are summed


@tables.register
def _(report: TrajectoryReport, width: int | None = None, **_layout) -> list:
    out: list[RenderableType | Note] = [
        heading(f"Masks through training, by {report.unit}: {report.path}")
    ]
    out += _grid(report).fitted(width, lead=2)
    out += [Note(note) for note in report.notes]
    if report.kept:
        kept = ", ".join(f"task {t}: {report.unit} {e}" for t, e in report.kept)
        out.append(Note(f"training kept the model of {report.kept_by} ({kept})"))
    if any(_after_kept(layer, dict(report.kept).get(layer.task)) for layer in report.layers):
        out.append(Note(f"*: settled after the {report.unit} whose model training kept"))
    return out


def _after_kept(layer: LayerTrajectory, kept: int | None) -> bool:
    return kept is not None and layer.settled_after > kept


def _grid(report: TrajectoryReport) -> Grid:
    kept = dict(report.kept)
    grid = Grid(
        ["task", "layer", "units", f"settled\nafter {report.unit}", "switched\non",
         "switched\noff", "active\nfirst", "active\nlast", "switches by record"],
        text=2,
    )  # fmt: skip
    for task in report.tasks:
        for layer in report.of_task(task):
            grid.add_row(*_cells(layer, kept.get(task)))
        grid.add_section()
    return grid


def _cells(layer: LayerTrajectory, kept: int | None) -> list[str]:
    settled = str(layer.settled_after) + ("*" if _after_kept(layer, kept) else "")
    return [
        str(layer.task),
        layer.layer,
        count(layer.units),
        settled,
        count(sum(layer.switched_on)),
        count(sum(layer.switched_off)),
        share(layer.active_share[0]),
        share(layer.active_share[-1]),
        _switches(layer),
    ]


def _switches(layer: LayerTrajectory) -> str:
    steps = [on + off for on, off in zip(layer.switched_on, layer.switched_off, strict=True)]
    if len(steps) <= SHOWN_SWITCHES:
        return " ".join(map(str, steps)) or "-"
    head = " ".join(map(str, steps[: SHOWN_SWITCHES - 1]))
    return f"{head} … (+{sum(steps[SHOWN_SWITCHES - 1 :])})"


# the figure


def trajectory_figure(report: TrajectoryReport, look: Look = DEFAULT_LOOK):
    """Per task (a row) and layer (a column): the gates, units down, records across, in
    grey (black: on); a line at the record after which the binary mask stayed."""
    if not report.trajectories or not report.trajectories[0].layers:
        raise HatinspectError(f"{report.path}: no trajectory to draw")
    rows, columns = len(report.trajectories), len(report.trajectories[0].layers)
    if rows * columns > MAX_PANELS:
        raise HatinspectError(
            f"{rows} tasks × {columns} layers are too many panels to draw (at most "
            f"{MAX_PANELS}); choose fewer with --task or --layer"
        )
    panel = min(1.4, (MAX_HEIGHT - 0.8) / rows)
    fig = new_figure(look, (max(COLUMN_WIDTH, 1.2 * columns), panel * rows + 0.8))
    axes = fig.subplots(rows, columns, squeeze=False)
    from matplotlib import colormaps

    cmap = colormaps[look.cmap or "Greys"]
    settled = {(layer.task, layer.layer): layer.settled_after for layer in report.layers}
    for row, trajectory in zip(axes, report.trajectories, strict=True):
        for ax, name in zip(row, trajectory.layers, strict=True):
            _panel(ax, trajectory, name, cmap, settled[(trajectory.task, name)])
        row[0].set_ylabel(f"task {trajectory.task}\nunit")
    fig.supxlabel(report.unit)
    fig.suptitle(look.title or f"Masks through training\n{Path(report.path).name}")
    return fig


def _panel(ax, trajectory, name: str, cmap, settled: int) -> None:
    gates = trajectory.gates[name].T  # (units, records)
    points = trajectory.points
    ax.imshow(gates, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    if len(points) > 1:
        ax.axvline(points.index(settled) - 0.5, color="tab:red", linewidth=0.8)
    every = max(1, -(-len(points) // 8))
    ticks = list(range(0, len(points), every))
    ax.set_xticks(ticks, [str(points[i]) for i in ticks])
    ax.set_title(f"{name} ({gates.shape[0]:,})", loc="left")


def draw_trajectory(report: TrajectoryReport, path: Path, look: Look = DEFAULT_LOOK) -> None:
    with styled():
        save_figure(trajectory_figure(report, look), path, look.dpi)
