"""The options and arguments commands share, and the checks that make a bad value a
usage error (exit 2)."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hatinspect.model.names import MASK_RULES, SOURCES
from hatinspect.render.files import FIGURE_FORMATS, output_format


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class Aggregation(StrEnum):
    min = "min"
    max = "max"


class OverlapOf(StrEnum):
    masks = "masks"
    importance = "importance"


Source = StrEnum("Source", {name: name for name in SOURCES})
MaskRule = StrEnum("MaskRule", {name: name for name in MASK_RULES})


def usage_check(check):
    """A typer callback: ``check(value)`` on a given value, its ValueError a usage error."""

    def callback(value):
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
        return value

    return callback


def _check_finite(value: float) -> None:
    import math

    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")


def _check_cmap(value: str) -> None:
    from hatinspect.render.figures import check_cmap

    check_cmap(value)


def _check_scale(value: str) -> None:
    from hatinspect.render.figures import parse_scale

    parse_scale(value)


def _check_unit_wise(value: str) -> None:
    from hatinspect.analysis.measure import parse_unit_wise

    parse_unit_wise(value)


def _check_figsize(value: str) -> None:
    from hatinspect.render.figures import parse_figsize

    parse_figsize(value)


figure_path = usage_check(lambda path: output_format(path, FIGURE_FORMATS))
safetensors_path = usage_check(lambda path: output_format(path, ("safetensors",)))
known_cmap = usage_check(_check_cmap)
valid_figsize = usage_check(_check_figsize)
valid_scale = usage_check(_check_scale)
valid_unit_wise = usage_check(_check_unit_wise)


CheckpointArg = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint: native .safetensors, .pt/.pth/.ckpt to import, or the original HAT"
        " code's .pkz logs (masks, no weights)."
    ),
]
RunArg = Annotated[
    Path,
    typer.Argument(
        help="A checkpoint, or a run folder of after-task-<t>.safetensors files.",
        metavar="RUN",
        show_default=False,
    ),
]


def choices(options) -> str:
    # spaced, so that a narrow help panel wraps between choices, never inside one
    return " | ".join(options)


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        "-f",
        metavar=choices(Format),
        help="Output: a table, or JSON/CSV for scripts.",
    ),
]
SourceOption = Annotated[
    Source | None,
    typer.Option(
        metavar=choices(SOURCES),
        help="Layout of a foreign checkpoint, when it is not recognised by itself.",
    ),
]
TaskIdOption = Annotated[
    int | None,
    typer.Option(
        "--task-id",
        min=0,
        metavar="N",
        help="The task of a foreign file that holds one task's embedding and does not say which.",
    ),
]
MaskRuleOption = Annotated[
    MaskRule | None,
    typer.Option(
        metavar=choices(MASK_RULES),
        help="How a SupSup file's scores become masks: topk keeps the largest |scores| at the"
        " stored sparsity, sign keeps scores >= 0 (default: the file's module class, else topk).",
    ),
]
MaskThresholdOption = Annotated[
    float | None,
    typer.Option(
        metavar="X",
        callback=usage_check(lambda value: _check_finite(value)),
        help="Piggyback: a weight is used where its mask_real is above X (default: the file's"
        " threshold, 5e-3 in their code).",
    ),
]
TaskOption = Annotated[
    list[int] | None,
    typer.Option("--task", "-t", help="Only this task id (repeatable).", metavar="ID"),
]
LayerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--layer", "-l", help="Only layers matching this glob (repeatable).", metavar="GLOB"
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", "-x", help="Leave out layers matching this glob (repeatable).", metavar="GLOB"
    ),
]
HeatmapOption = Annotated[
    Path | None,
    typer.Option(
        help="Also draw a heatmap to this .png, .svg or .pdf file.",
        callback=figure_path,
        metavar="FILE",
    ),
]
DpiOption = Annotated[int, typer.Option(min=20, max=1200, help="Resolution of PNG figures.")]
CmapOption = Annotated[
    str | None,
    typer.Option(help="A matplotlib colormap for the heatmap.", callback=known_cmap),
]
FigsizeOption = Annotated[
    str | None,
    typer.Option(
        metavar="W,H",
        help="Figure size in inches (default: 3.5 wide, one column of a two-column paper).",
        callback=valid_figsize,
    ),
]
TitleOption = Annotated[
    str | None, typer.Option(metavar="TEXT", help="The figure's title (default: what it shows).")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
WidthOption = Annotated[
    int | None,
    typer.Option(
        "--width",
        min=20,
        metavar="N",
        help="Lay tables out in N columns (default: COLUMNS or the terminal's; "
        "no limit when the output is piped).",
    ),
]
