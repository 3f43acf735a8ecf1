"""The trajectory command: a run's masks through training, from the files that record them
(the original HAT code's .pkz logs, the trajectory-task-<t>.safetensors files of training)."""

from pathlib import Path
from typing import Annotated

import typer

from hatinspect import api
from hatinspect.cli.options import (
    CmapOption,
    DpiOption,
    FigsizeOption,
    ForceOption,
    Format,
    FormatOption,
    LayerOption,
    TaskOption,
    TitleOption,
    WidthOption,
    figure_path,
)
from hatinspect.cli.output import emit, figure_look, outputs_free, write_output
from hatinspect.cli.registry import command


@command("trajectory")
def trajectory(
    run: Annotated[
        Path,
        typer.Argument(
            help="A file of masks through training (the original HAT code's .pkz logs, or "
            "a trajectory-task-<t>.safetensors file that train-demo --record-every N "
            "records, read with its siblings), a checkpoint beside such files, or the run "
            "folder that holds them.",
            metavar="RUN",
        ),
    ],
    task: TaskOption = None,
    layer: LayerOption = None,
    figure: Annotated[
        Path | None,
        typer.Option(
            help="Also draw the gates over the records to this .png, .svg or .pdf file "
            "(units × records, one panel a layer, a row of panels a task).",
            callback=figure_path,
            metavar="FILE",
        ),
    ] = None,
    dpi: DpiOption = 100,
    cmap: CmapOption = None,
    figsize: FigsizeOption = None,
    title: TitleOption = None,
    force: ForceOption = False,
    fmt: FormatOption = Format.table,
    width: WidthOption = None,
) -> None:
    """Masks through training: per task and layer, when each settled, and what it switched.

    The settle point is the first record (an epoch or a step; -1 before training) after
    which the binary mask (gate above 0.5) never changes again; the switches are the units
    turned on and off between consecutive records.

    Examples:

    hatinspect trajectory examples/hat-logs.pkz
    hatinspect trajectory examples/hat-logs.pkz -t 1 -l fc1 --format csv
    hatinspect trajectory examples/hat-logs.pkz --figure masks.pdf
    """
    outputs_free(force, (run,), figure=figure)
    result = api.trajectory(run, task=task, layer=layer)
    if figure:
        from hatinspect.render.drawing import draw_figure

        write_output(draw_figure, result, figure, figure_look(dpi, cmap, figsize, title))
    emit(result, fmt, (), width)
