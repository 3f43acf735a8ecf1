"""The commands over whole runs: compare (runs side by side) and report (a shareable file)."""

from pathlib import Path
from typing import Annotated

import typer

from hatinspect import api
from hatinspect.cli.options import (
    DpiOption,
    FigsizeOption,
    ForceOption,
    Format,
    FormatOption,
    MaskRuleOption,
    MaskThresholdOption,
    SourceOption,
    TaskIdOption,
    TitleOption,
    WidthOption,
    figure_path,
    usage_check,
)
from hatinspect.cli.output import emit, figure_look, load_run, outputs_free, write_output
from hatinspect.cli.registry import command
from hatinspect.render.files import output_format
from hatinspect.render.stderr import say

_report_path = usage_check(lambda path: output_format(path, ("html", "md", "json")))

RunsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Checkpoints, run folders of after-task-<t>.safetensors files, CLArena output "
        "folders or their acc.csv, the original HAT code's .pkz logs.",
        metavar="RUN",
    ),
]


@command("compare")
def compare(
    runs: RunsArg,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw every run's capacity curves to this .png, .svg or .pdf file.",
            callback=figure_path,
            metavar="FILE",
        ),
    ] = None,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="CSV: final usage per layer and run.")
    ] = False,
    dpi: DpiOption = 100,
    figsize: FigsizeOption = None,
    title: TitleOption = None,
    force: ForceOption = False,
    fmt: FormatOption = Format.table,
    width: WidthOption = None,
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """Runs side by side, task by task: units, protected parameters, accuracy, forgetting.

    A RUN is a checkpoint, a folder of after-task-<t>.safetensors files, a CLArena output
    folder or its acc.csv, or the original HAT code's .pkz logs (units and accuracy; no
    weights, so no parameters). Each run's accuracy matrix follows, where its files hold one.

    Examples:

    hatinspect compare examples/hat-toy
    hatinspect compare examples/hat-toy \\
      examples/hat-toy/after-task-3.safetensors --format csv
    hatinspect compare examples/hat-toy --plot curves.pdf
    """
    outputs_free(force, tuple(runs), plot=plot)
    rules = (source, task_id, mask_rule, mask_threshold)
    result = api.compare(*(load_run(path, *rules) for path in runs))
    if plot:
        from hatinspect.render.drawing import draw_figure

        write_output(draw_figure, result, plot, figure_look(dpi, None, figsize, title))
    emit(result, fmt, result.sources, width, per_layer=per_layer)


@command("report")
def report(
    runs: RunsArg,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="report.html (one self-contained file), report.md (with a folder of SVG "
            "figures beside it) or report.json.",
            callback=_report_path,
            metavar="FILE",
        ),
    ],
    force: ForceOption = False,
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """A file to share: what each run is, its capacity, accuracy, masks, overlap and audit.

    .html is one self-contained file, .md has its SVG figures in a folder beside it, .json
    holds the raw numbers. Several runs are compared; two checkpoints of one run are read
    as that run.

    Examples:

    hatinspect report examples/hat-toy -o report.html
    hatinspect report examples/hat-toy -o report.md
    hatinspect report examples/hat-toy/after-task-2.safetensors \\
      examples/hat-toy/after-task-5.safetensors -o report.json
    """
    from hatinspect.render.report import figure_folder

    extra = [figure_folder(output)] if output.suffix.lower() == ".md" else []
    outputs_free(force, tuple(runs), output=(output, *extra))
    rules = (source, task_id, mask_rule, mask_threshold)
    result = api.report(*(load_run(path, *rules) for path in runs), output=output)
    say(f"wrote {output}: {result.summary}")
