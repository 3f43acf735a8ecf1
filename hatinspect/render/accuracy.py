"""The accuracy view as tables: the matrix (after task × tested task) with each task's
forgetting under it, then average accuracy, mean forgetting and backward transfer, for
`info` and `compare` alike (`analysis.accuracy` defines each figure)."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text

from hatinspect.analysis.accuracy import AccuracyView
from hatinspect.render.cells import heading, share
from hatinspect.render.layout import Grid


def points(fraction: float | None, sign: bool = False) -> str:
    """A difference of accuracies in percentage points; "-" where there is none."""
    if fraction is None:
        return "-"
    return f"{100 * fraction:+.1f} pt" if sign else f"{100 * fraction:.1f} pt"


def accuracy_tables(view: AccuracyView | None, width: int | None, name: str = "") -> list:
    """Heading, matrix and summary line of `view` (nothing without one), folded to `width`."""
    if view is None:
        return []
    title = "Accuracy after each task (rows) on each task (columns)"
    return [
        heading(f"{name}: {title[0].lower()}{title[1:]}" if name else title),
        *accuracy_grid(view).fitted(width),
        summary_line(view),
    ]


def accuracy_grid(view: AccuracyView) -> Grid:
    tasks = view.tasks
    grid = Grid(["after", *(f"task {t}" for t in tasks)])
    for t, row in enumerate(view.rows):
        grid.add_row(f"task {tasks[t]}", *map(share, row), *("" for _ in tasks[t + 1 :]))
    if len(tasks) > 1:
        grid.add_section()
        drops = [points(f) for f in view.forgetting]
        grid.add_row("forgetting", *drops, *("" for _ in tasks[len(drops) :]))
    return grid


def summary_line(view: AccuracyView) -> RenderableType:
    last = view.tasks[-1]
    parts = [f"after task {last}: average accuracy {share(view.average_accuracy)}"]
    if view.mean_forgetting is not None:
        parts.append(f"mean forgetting {points(view.mean_forgetting)}")
        parts.append(f"backward transfer {points(view.backward_transfer, sign=True)}")
    return Text(", ".join(parts))
