"""The training demo's result as a rich table or a JSON document (raw numbers)."""

from __future__ import annotations

from rich.text import Text

from hatinspect.model.records import SCHEMA
from hatinspect.render.layout import Grid, output_width, print_renderables


def record(result) -> dict:
    """The JSON document: raw numbers, ``null`` above the accuracy matrix's diagonal and
    for the mean forgetting of a single task."""
    n = result.tasks
    return {
        "schema": SCHEMA,
        "algorithm": result.algorithm,
        "backbone": result.backbone,
        "dataset": result.dataset,
        "seed": result.seed,
        "epochs": result.epochs,
        "tasks": n,
        "accuracy": [list(row) + [None] * (n - len(row)) for row in result.accuracy],
        "average_accuracy": result.average_accuracy,
        "forgetting": list(result.forgetting),
        "mean_forgetting": result.mean_forgetting,
        "capacity": list(result.capacity),
        "checkpoints": list(result.checkpoints),
        "trajectories": list(getattr(result, "trajectories", ())),
    }


def print_table(result, width: int | None = None) -> None:
    """The accuracy matrix with capacity and forgetting, then the next command to run.

    A matrix wider than the output is folded into tables of fewer task columns."""
    limit = output_width(width)
    title = (
        f"Test accuracy after each task: {result.algorithm}, {result.backbone}, "
        f"{result.dataset}, seed {result.seed}"
    )
    lines = [
        Text(title, "bold"),
        *_accuracy_grid(result).fitted(limit),
        Text(f"average accuracy {result.average_accuracy:.1%}, {_mean_forgetting(result)}"),
    ]
    if result.checkpoints:
        lines.append(
            Text(
                f"next: hatinspect masks {result.checkpoints[-1]}", no_wrap=True, overflow="ignore"
            )
        )
    print_renderables(lines, limit)


def _accuracy_grid(result) -> Grid:
    grid = Grid(["after", *[f"task {task}" for task in range(1, result.tasks + 1)], "capacity"])
    for t, row in enumerate(result.accuracy, start=1):
        cells = [f"{a:.1%}" for a in row] + [""] * (result.tasks - len(row))
        grid.add_row(f"task {t}", *cells, f"{result.capacity[t - 1]:.1%}")
    grid.add_section()
    forgetting = [_points(f) for f in result.forgetting]
    grid.add_row("forgetting", *forgetting, *[""] * (result.tasks + 1 - len(forgetting)))
    return grid


def _mean_forgetting(result) -> str:
    if result.mean_forgetting is None:
        return "mean forgetting n/a (one task: no earlier task to forget)"
    return f"mean forgetting {_points(result.mean_forgetting)} (percentage points)"


def _points(fraction: float) -> str:
    return f"{100 * fraction:.1f}"
