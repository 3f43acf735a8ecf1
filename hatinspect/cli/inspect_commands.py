"""The inspection commands: masks, capacity, measure, overlap, audit, convert and info.

Each parses its options, calls one library function and renders the result as a table,
JSON or CSV on stdout; notes go to stderr. Figures import matplotlib only when drawn.
"""

import time
from pathlib import Path
from typing import Annotated

import typer

from hatinspect import api
from hatinspect.cli.errors import fail
from hatinspect.cli.heavy import heavy_imports
from hatinspect.cli.options import (
    Aggregation,
    CheckpointArg,
    CmapOption,
    DpiOption,
    ExcludeOption,
    FigsizeOption,
    ForceOption,
    Format,
    FormatOption,
    HeatmapOption,
    LayerOption,
    MaskRuleOption,
    MaskThresholdOption,
    OverlapOf,
    RunArg,
    SourceOption,
    TaskIdOption,
    TaskOption,
    TitleOption,
    WidthOption,
    choices,
    figure_path,
    safetensors_path,
    valid_scale,
    valid_unit_wise,
)
from hatinspect.cli.output import emit, figure_look, load, load_run, outputs_free, write_output
from hatinspect.cli.registry import command
from hatinspect.render.stderr import detail, note, say


@command("masks")
def masks(
    checkpoint: CheckpointArg,
    task: TaskOption = None,
    layer: LayerOption = None,
    exclude: ExcludeOption = None,
    show: Annotated[bool, typer.Option("--show", help="Draw the masks in the terminal.")] = False,
    heatmap: Annotated[
        Path | None,
        typer.Option(
            help="Also draw the masks to this .png, .svg or .pdf file: the whole network "
            "(layers × tasks: share of units each task keeps, and cumulative use; any depth, "
            "grouped by stage and block) unless --layer chooses layers, which are then drawn "
            "unit by unit.",
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
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """Per layer and task: units each mask keeps, and the cumulative and summative masks.

    Examples:

    hatinspect masks examples/hat-toy/after-task-5.safetensors -t 1 -t 2
    hatinspect masks examples/hat-toy/after-task-5.safetensors --show
    hatinspect masks examples/hat-toy/after-task-5.safetensors \\
      -l 'fc/*' --heatmap units.png
    """
    if show and fmt is not Format.table:
        raise typer.BadParameter("--show draws in the terminal; use it with --format table")
    outputs_free(force, (checkpoint,), heatmap=heatmap)
    opened = load(checkpoint, source, task_id, mask_rule, mask_threshold)
    report = api.masks(opened, task=task, layer=layer, exclude=exclude)
    if heatmap:
        from hatinspect.render.drawing import draw_figure

        look = figure_look(dpi, cmap, figsize, title)
        write_output(draw_figure, report, heatmap, look, per_unit=bool(layer))
    emit(report, fmt, (opened,), width)
    if show:
        _show(report, width)


def _show(report, width: int | None) -> None:
    from hatinspect.render.layout import OutputConsole
    from hatinspect.render.terminal_heatmap import mask_lines

    console = OutputConsole(highlight=False, width=width)
    for line in mask_lines(report, console.width):
        console.print(line, no_wrap=True, overflow="crop")


@command("capacity")
def capacity(
    checkpoint: RunArg,
    task: TaskOption = None,
    layer: LayerOption = None,
    exclude: ExcludeOption = None,
    by_task: Annotated[
        bool,
        typer.Option(
            "--by-task", help="Add usage growing task by task (table) / give it alone (CSV)."
        ),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw usage after each task to this .png, .svg or .pdf file.",
            callback=figure_path,
            metavar="FILE",
        ),
    ] = None,
    fail_above: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="X",
            help="Exit 1 when the total param usage is above X (0 to 1).",
        ),
    ] = None,
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
    """How much of the network the stored tasks use, and what is still free.

    Per layer: units in the cumulative mask (used) and parameters whose two units are both
    used (protected: frozen for the next task). Per task: units no earlier task had used
    (new), units shared with earlier tasks (reused), and the network sparsity, AdaHAT's
    share of the still-free units that the task took (new / free before it).
    With --task, only those tasks count; --layer/--exclude choose the layers reported.

    Examples:

    hatinspect capacity examples/hat-toy/after-task-5.safetensors --by-task
    hatinspect capacity examples/hat-toy --fail-above 0.9
    hatinspect capacity examples/hat-toy/after-task-5.safetensors --plot c.pdf
    """
    outputs_free(force, (checkpoint,), plot=plot)
    opened = load_run(checkpoint, source, task_id, mask_rule, mask_threshold)
    result = api.capacity(opened, task=task, layer=layer, exclude=exclude)
    report = getattr(result, "capacity", result)  # a run folder's: its final file's
    if plot:
        from hatinspect.render.drawing import draw_figure

        write_output(draw_figure, report, plot, figure_look(dpi, None, figsize, title))
    emit(result, fmt, result.sources, width, by_task=by_task)
    usage = report.total.param_usage
    if fail_above is not None and usage > fail_above:
        raise fail(
            f"param usage {usage:.2%} is above --fail-above {fail_above:.2%}",
            "see `hatinspect capacity --by-task` for what each task added",
        )


@command("measure")
def measure(
    checkpoint: CheckpointArg,
    layer: Annotated[
        str,
        typer.Option(
            "--layer",
            "-l",
            metavar="NAME",
            help="The layer: its name (conv5x/0/conv2), PyTorch's dotted name "
            "(conv5x.0.conv2) or a glob that matches exactly one layer.",
        ),
    ],
    of: Annotated[
        str,
        typer.Option(
            "--of",
            metavar="cumulative | summative | task:N | adjustment",
            help="The unit-wise measure to spread over the parameters; adjustment: AdaHAT's "
            "rate of the newest task (max of its units' rates).",
            callback=valid_unit_wise,
        ),
    ] = "cumulative",
    aggregation: Annotated[
        Aggregation,
        typer.Option(
            metavar=choices(Aggregation), help="How a weight combines its two units' measures."
        ),
    ] = Aggregation.min,
    sparsity: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="S",
            help="With --of adjustment: the network sparsity of every layer (default: each "
            "layer's, from the stored masks).",
        ),
    ] = None,
    heatmap: HeatmapOption = None,
    save: Annotated[
        Path | None,
        typer.Option(
            help="Save the weight- and bias-shaped measures to a .safetensors file.",
            callback=safetensors_path,
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
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """The parameter-wise measure of one layer: statistics, histogram, heatmap, export.

    Examples:

    hatinspect measure examples/hat-toy/after-task-5.safetensors -l fc/1
    hatinspect measure examples/hat-toy/after-task-5.safetensors \\
      -l fc.2 --of summative --heatmap m.png
    hatinspect measure examples/hat-toy/after-task-5.safetensors \\
      -l fc/0 --save measure.safetensors
    """
    outputs_free(force, (checkpoint,), heatmap=heatmap, save=save)
    opened = load(checkpoint, source, task_id, mask_rule, mask_threshold)
    result = api.measure(opened, layer, of=of, aggregation=aggregation.value, sparsity=sparsity)
    if heatmap:
        from hatinspect.render.drawing import draw_figure

        write_output(draw_figure, result, heatmap, figure_look(dpi, cmap, figsize, title))
    if save:
        from hatinspect.render.files import save_measure

        write_output(save_measure, result, save)
    emit(result, fmt, (opened,), width)


@command("overlap")
def overlap(
    checkpoint: CheckpointArg,
    task: TaskOption = None,
    layer: LayerOption = None,
    exclude: ExcludeOption = None,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="Also show each layer's matrix (table, CSV).")
    ] = False,
    of: Annotated[
        OverlapOf,
        typer.Option(
            metavar=choices(OverlapOf),
            help="masks: shared units and Jaccard; importance: FG-AdaHAT's importances, by "
            "weighted Jaccard (sum of minima over sum of maxima).",
        ),
    ] = OverlapOf.masks,
    heatmap: HeatmapOption = None,
    scale: Annotated[
        str | None,
        typer.Option(
            metavar="LO,HI",
            help="The Jaccard values the heatmap's colours span (default: 0,1).",
            callback=valid_scale,
        ),
    ] = None,
    dpi: DpiOption = 100,
    cmap: CmapOption = None,
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
    """Units shared by every pair of tasks (count and Jaccard), network-wide and per layer.

    Examples:

    hatinspect overlap examples/hat-toy/after-task-5.safetensors --per-layer
    hatinspect overlap examples/hat-toy/after-task-5.safetensors \\
      --heatmap overlap.pdf --format csv
    """
    outputs_free(force, (checkpoint,), heatmap=heatmap)
    opened = load(checkpoint, source, task_id, mask_rule, mask_threshold)
    if of == OverlapOf.importance:
        if heatmap or task or layer or exclude:
            raise fail("--of importance compares every task and layer, and draws no --heatmap",
                       code=2)  # fmt: skip
        emit(api.overlap(opened, of="importance"), fmt, (opened,), width, per_layer=per_layer)
        return
    report = api.overlap(opened, task=task, layer=layer, exclude=exclude)
    if heatmap:
        from hatinspect.render.drawing import draw_figure
        from hatinspect.render.figures import JACCARD_SCALE, parse_scale

        look = figure_look(dpi, cmap, figsize, title)
        chosen = parse_scale(scale) if scale else JACCARD_SCALE
        write_output(draw_figure, report, heatmap, look, scale=chosen)
    emit(report, fmt, (opened,), width, per_layer=per_layer)


@command("audit")
def audit(
    before: Annotated[Path, typer.Argument(help="The checkpoint whose masks protect weights.")],
    after: Annotated[Path, typer.Argument(help="A later checkpoint of the same run.")],
    strict: Annotated[
        bool, typer.Option("--strict", help="AdaHAT too must leave protected parameters intact.")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(min=0.0, metavar="X", help="Pass when no protected parameter moved by > X."),
    ] = None,
    fmt: FormatOption = Format.table,
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """Check that the parameters BEFORE protects are unchanged in AFTER (exit 1 if not).

    HAT (or an unknown algorithm): bit-identical. AdaHAT: the drift is reported and passes
    unless --strict; --tolerance X applies to any. BEFORE's tasks and masks must all be in
    AFTER, and the two files of one run.

    Examples:

    hatinspect audit examples/hat-toy/after-task-2.safetensors \\
      examples/hat-toy/after-task-5.safetensors
    hatinspect audit examples/hat-toy/after-task-1.safetensors \\
      examples/hat-toy/after-task-5.safetensors --format json
    """
    rules = (source, task_id, mask_rule, mask_threshold)
    opened = (load(before, *rules), load(after, *rules))
    report = api.audit(*opened, strict=strict, tolerance=tolerance)
    shown = {caveat for checkpoint in opened for caveat in checkpoint.notes}  # by load()
    for caveat in report.notes:
        if caveat not in shown:
            note(caveat)
    emit(report, fmt, opened)
    if not report.ok:
        raise fail(*_audit_failure(report))


def _audit_failure(report) -> tuple[str, str]:
    from hatinspect.analysis.audit import TOLERANCE, failure

    if report.rule == TOLERANCE:
        hint = "the training between the two checkpoints moved protected parameters"
    elif report.soft:
        hint = (
            "this algorithm moves protected parameters softly by design; without --strict it passes"
        )
    elif report.algorithm != "unknown":
        hint = "the training between the two checkpoints did not respect the masks"
    else:
        hint = "the files name no known algorithm; an AdaHAT run drifts by design"
    return failure(report), hint


@command("convert")
def convert(
    src: Annotated[Path, typer.Argument(help="A checkpoint to convert (.pt, .pth, .ckpt...).")],
    dst: Annotated[
        Path, typer.Argument(help="The .safetensors file to write.", callback=safetensors_path)
    ],
    force: ForceOption = False,
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """Write any checkpoint the reader understands in the native safetensors format.

    Examples:

    hatinspect convert examples/hat-toy-state-dict.pt task5.safetensors \\
      --task-id 5
    hatinspect convert examples/hat-toy-state-dict.pt copy.safetensors \\
      --source clarena
    """
    from hatinspect.analysis.logged_run import refuse_logs
    from hatinspect.native.reader import read_native_header

    outputs_free(force, (src,), DST=dst)  # before importing torch: a usage error comes first
    refuse_logs(src, "nothing to convert")
    with heavy_imports():
        from hatinspect.torch_io.convert import convert as convert_file

    started = time.perf_counter()
    convert_file(
        src, dst, source=source.value if source else None, task_id=task_id,
        mask_rule=mask_rule.value if mask_rule else None, mask_threshold=mask_threshold,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    written = read_native_header(dst)  # convert read the whole file back already
    detail(
        f"{src}: {src.stat().st_size:,} bytes, read by the {written.source} importer; "
        f"{dst}: {dst.stat().st_size:,} bytes, written and checked in {seconds:.2f} s"
    )
    for caveat in written.notes:
        note(caveat)
    say(
        f"wrote {dst}: {written.backbone}, {len(written.layers)} layers, "
        f"{len(written.task_ids)} task(s), from a {written.source} checkpoint"
    )


@command("info")
def info(
    checkpoint: CheckpointArg,
    fmt: FormatOption = Format.table,
    width: WidthOption = None,
    source: SourceOption = None,
    task_id: TaskIdOption = None,
    mask_rule: MaskRuleOption = None,
    mask_threshold: MaskThresholdOption = None,
) -> None:
    """What a checkpoint holds: backbone, layers, tasks, source format and metadata.

    The accuracy matrix too, where the metadata holds one, with each task's forgetting,
    the average accuracy and the backward transfer.

    Examples:

    hatinspect info examples/hat-toy/after-task-5.safetensors
    hatinspect info examples/hat-toy-state-dict.pt --format json
    """
    opened = load(checkpoint, source, task_id, mask_rule, mask_threshold)
    emit(api.info(opened), fmt, (opened,), width)
