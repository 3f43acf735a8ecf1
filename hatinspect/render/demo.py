"""The training demo's result as a rich table or a JSON document (raw numbers)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hatinspect.render.records import SCHEMA


def record(result) -> dict:
    """The JSON document: raw numbers, ``null`` above the accuracy matrix's diagonal."""
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
    }


def print_table(result) -> None:
    """The accuracy matrix with capacity and forgetting, then the next command to run."""
    console = Console(highlight=False)
    title = (
        f"Test accuracy after each task: {result.algorithm}, {result.backbone}, "
        f"{result.dataset}, seed {result.seed}"
    )
    console.print(Text(title, "bold"))
    table = Table()
    table.add_column("after", no_wrap=True)
    for task in range(1, result.tasks + 1):
        table.add_column(f"task {task}", justify="right")
    table.add_column("capacity", justify="right")
    for t, row in enumerate(result.accuracy, start=1):
        cells = [f"{a:.1%}" for a in row] + [""] * (result.tasks - len(row))
        table.add_row(f"task {t}", *cells, f"{result.capacity[t - 1]:.1%}")
    table.add_section()
    table.add_row("forgetting", *[_points(f) for f in result.forgetting], "", "")
    console.print(table)
    console.print(
        f"average accuracy {result.average_accuracy:.1%}, "
        f"mean forgetting {_points(result.mean_forgetting)} (percentage points)"
    )
    if result.checkpoints:
        console.print(f"next: hatinspect masks {result.checkpoints[-1]}", soft_wrap=True)


def _points(fraction: float) -> str:
    return f"{100 * fraction:.1f}"
