"""The least a Typer command with `capacity`'s options pays: the floor of this stack.

One command taking the same kinds of parameters as `hatinspect capacity` (an argument,
repeatable options, flags, bounded numbers, enums, paths), which reads the file's header
with `safe_open` and prints a three-row rich table. Typer converts every non-flag value
through a pydantic adapter, so this pays for pydantic as hatinspect does.

    python benchmarks/typer_floor.py FILE.safetensors
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy  # noqa: F401  # the inspection floor: numpy and safetensors
import typer
from rich.console import Console
from rich.table import Table
from safetensors import safe_open


class Format(StrEnum):
    table = "table"
    json = "json"


class Source(StrEnum):
    hatinspect = "hatinspect"
    clarena = "clarena"


app = typer.Typer()


@app.command()
def capacity(
    checkpoint: Path,
    task: Annotated[list[int] | None, typer.Option("--task", "-t")] = None,
    layer: Annotated[list[str] | None, typer.Option("--layer", "-l")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-x")] = None,
    by_task: Annotated[bool, typer.Option("--by-task")] = False,
    plot: Annotated[Path | None, typer.Option()] = None,
    fail_above: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    dpi: Annotated[int, typer.Option(min=1)] = 100,
    figsize: Annotated[str | None, typer.Option()] = None,
    title: Annotated[str | None, typer.Option()] = None,
    force: Annotated[bool, typer.Option("--force")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    width: Annotated[int | None, typer.Option(min=20)] = None,
    source: Annotated[Source | None, typer.Option()] = None,
    task_id: Annotated[int | None, typer.Option(min=0)] = None,
) -> None:
    with safe_open(checkpoint, framework="numpy") as f:
        keys = list(f.keys())
    table = Table("layer", "tensors")
    for name in ("fc/0", "fc/1", "fc/2"):
        table.add_row(name, str(sum(key.endswith(name) for key in keys)))
    Console(width=width).print(table)


if __name__ == "__main__":
    app()
