"""One function per command, returning the typed result the command renders.

Each takes a checkpoint path, an already opened ``Checkpoint`` or a live backbone (a
``HATMaskBackbone`` as it is now, e.g. mid-training), and the command's options as keyword
arguments; every result has ``to_dict()`` (the command's JSON), ``to_pandas()`` (its CSV
rows) and shows itself in a notebook. Nothing here prints, or imports torch: a live
backbone is saved through the torch side, which only a live backbone (torch already
loaded) reaches.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from hatinspect.model.paths import checkpoint_path, output_path
from hatinspect.model.result import with_figure, with_sources

if TYPE_CHECKING:  # the core loads numpy: imported by the functions, so `--help` stays light
    from hatinspect.analysis.audit import AuditReport
    from hatinspect.analysis.capacity import CapacityReport
    from hatinspect.analysis.compare import Comparison
    from hatinspect.analysis.importance import ImportanceOverlap
    from hatinspect.analysis.masks import MaskReport
    from hatinspect.analysis.measure import LayerMeasure
    from hatinspect.analysis.overlap import OverlapReport
    from hatinspect.analysis.report import Report
    from hatinspect.analysis.runs import Run, RunCapacity
    from hatinspect.analysis.trajectory import TrajectoryReport
    from hatinspect.model.checkpoint import Checkpoint


class LiveBackbone(Protocol):
    """A torch backbone with hatinspect's layer API (``hatinspect.backbones``), for the
    annotations: the API tells one by its being a torch module (`is_live`)."""

    masks: Mapping
    weighted_layer_names: list

    def state_dict(self) -> Mapping: ...


PathLike: TypeAlias = "str | os.PathLike"
CheckpointLike: TypeAlias = "str | os.PathLike | Checkpoint | LiveBackbone"
Many = Iterable | int | str | None  # one value, several, or None for all
Figsize = tuple[float, float] | None  # inches, as --figsize W,H


def bind_annotations() -> None:
    """Give the names the annotations use their objects, for ``typing.get_type_hints``
    (imported for type checkers only, since they load numpy); the package calls it when
    an API function is taken from it."""
    from hatinspect.analysis import (
        audit,
        capacity,
        compare,
        importance,
        masks,
        measure,
        overlap,
        report,
        runs,
        trajectory,
    )
    from hatinspect.model.checkpoint import Checkpoint

    names = globals()
    names.update(
        AuditReport=audit.AuditReport, CapacityReport=capacity.CapacityReport,
        Comparison=compare.Comparison, ImportanceOverlap=importance.ImportanceOverlap,
        MaskReport=masks.MaskReport, LayerMeasure=measure.LayerMeasure,
        OverlapReport=overlap.OverlapReport, Report=report.Report, Run=runs.Run,
        RunCapacity=runs.RunCapacity, Checkpoint=Checkpoint,
        TrajectoryReport=trajectory.TrajectoryReport,
    )  # fmt: skip
    names["PathLike"] = str | os.PathLike
    names["CheckpointLike"] = str | os.PathLike | Checkpoint | LiveBackbone


def open_any(
    checkpoint: CheckpointLike,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> Checkpoint:
    """An opened checkpoint as is; a live backbone saved as it is now; a path read with
    ``open_checkpoint`` (``mask_rule``: SupSup's "topk" or "sign"; ``mask_threshold``:
    Piggyback's threshold, each replacing what the file implies)."""
    from hatinspect.model.checkpoint import Checkpoint

    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    if is_live(checkpoint):
        from hatinspect.torch_io.live import live_checkpoint

        return live_checkpoint(checkpoint)
    from hatinspect.checkpoints import open_checkpoint

    return open_checkpoint(
        checkpoint,
        source=source,
        task_id=task_id,
        mask_rule=mask_rule,
        mask_threshold=mask_threshold,
    )


def is_live(value) -> bool:
    """A torch module: only where torch is already loaded (this never imports it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def masks(
    checkpoint: CheckpointLike,
    *,
    task: Many = None,
    layer: Many = None,
    exclude: Many = None,
    heatmap: PathLike | None = None,
    dpi: int = 100,
    cmap: str | None = None,
    figsize: Figsize = None,
    title: str | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> MaskReport:
    """Per layer and task: units each mask keeps; cumulative and summative masks.
    ``heatmap``: also draw the masks to this .png, .svg or .pdf file (``figsize`` in
    inches, ``title``: as the command's options; a notebook draws them so too)."""
    from hatinspect.analysis.masks import summarise_masks

    checkpoint = open_any(checkpoint, source, task_id, mask_rule, mask_threshold)
    result = with_sources(
        summarise_masks(checkpoint, _many(task), _many(layer), _many(exclude)), [checkpoint]
    )
    look = dict(dpi=dpi, cmap=cmap, figsize=figsize, title=title)
    return _drawn(result, heatmap, look, per_unit=bool(layer))


def capacity(
    checkpoint: CheckpointLike | Run,
    *,
    task: Many = None,
    layer: Many = None,
    exclude: Many = None,
    plot: PathLike | None = None,
    dpi: int = 100,
    figsize: Figsize = None,
    title: str | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> CapacityReport | RunCapacity:
    """Units and parameters used and protected, per layer, in total and task by task
    (``task`` counts only those tasks; ``layer``/``exclude`` choose the layers); for a run
    folder, also one row a file (a ``RunCapacity``). ``plot``: also draw the usage after
    each task to this .png, .svg or .pdf file."""
    from hatinspect.analysis.capacity import capacity as report_capacity
    from hatinspect.analysis.runs import Run, run_capacity

    chosen = (_many(task), _many(layer), _many(exclude))
    look = dict(dpi=dpi, figsize=figsize, title=title)
    if _is_folder(checkpoint) or _is_acc_csv(checkpoint) or isinstance(checkpoint, Run):
        run = open_run(checkpoint, source, task_id, mask_rule, mask_threshold)
        result = with_sources(run_capacity(run, *chosen), [run.final])
        _drawn(result.capacity, plot, look)
        return result
    from hatinspect.analysis.adjustment import with_network_capacity

    opened = open_any(checkpoint, source, task_id, mask_rule, mask_threshold)
    report = with_network_capacity(report_capacity(opened, *chosen), opened)
    result = with_sources(report, [opened])
    return _drawn(result, plot, look)


def measure(
    checkpoint: CheckpointLike,
    layer: str,
    *,
    of: str = "cumulative",
    aggregation: str = "min",
    heatmap: PathLike | None = None,
    save: PathLike | None = None,
    dpi: int = 100,
    cmap: str | None = None,
    figsize: Figsize = None,
    title: str | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
    sparsity: float | None = None,
) -> LayerMeasure:
    """The parameter-wise measure of one layer (``of``: cumulative, summative, task:N or
    adjustment, AdaHAT's rate, at the network ``sparsity`` given or the stored masks').
    ``heatmap``: also draw it to a figure file; ``save``: write it to a .safetensors file."""
    from hatinspect.analysis.measure import measure as layer_measure
    from hatinspect.analysis.measure import parse_unit_wise

    parse_unit_wise(of)
    opened = open_any(checkpoint, source, task_id, mask_rule, mask_threshold)
    result = with_sources(layer_measure(opened, layer, of, aggregation, sparsity), [opened])
    _drawn(result, heatmap, dict(dpi=dpi, cmap=cmap, figsize=figsize, title=title))
    if save is not None:
        from hatinspect.render.files import save_measure

        save_measure(result, output_path(save))
    return result


def overlap(
    checkpoint: CheckpointLike,
    *,
    task: Many = None,
    layer: Many = None,
    exclude: Many = None,
    heatmap: PathLike | None = None,
    dpi: int = 100,
    cmap: str | None = None,
    scale: tuple[float, float] = (0.0, 1.0),
    figsize: Figsize = None,
    title: str | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
    of: str = "masks",
    progress: bool = False,
) -> OverlapReport | ImportanceOverlap:
    """Units shared by every pair of tasks (count and Jaccard), network-wide and per layer.
    ``heatmap``: also draw the task x task Jaccard matrix to a figure file, its colours
    spanning ``scale`` (0 to 1 unless given). ``of="importance"``: FG-AdaHAT's importances
    compared instead, by weighted Jaccard (network-wide and per layer; no figure).
    ``progress``: a progress bar on stderr."""
    from hatinspect.analysis.overlap import overlap as task_overlap

    checkpoint = open_any(checkpoint, source, task_id, mask_rule, mask_threshold)
    if of == "importance":
        from hatinspect.analysis.importance import importance_overlap

        return with_sources(importance_overlap(checkpoint), [checkpoint])
    if of != "masks":
        raise ValueError(f"of must be masks or importance, not {of!r}")
    with _progress(progress):
        found = task_overlap(checkpoint, _many(task), _many(layer), _many(exclude))
    result = with_sources(found, [checkpoint])
    look = dict(dpi=dpi, cmap=cmap, figsize=figsize, title=title)
    return _drawn(result, heatmap, look, scale=scale)


def audit(
    before: CheckpointLike,
    after: CheckpointLike,
    *,
    strict: bool = False,
    tolerance: float | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
    progress: bool = False,
) -> AuditReport:
    """The parameters BEFORE protects, checked in AFTER (``.ok``): bit for bit for HAT;
    AdaHAT's drift is reported and passes unless ``strict``; ``tolerance`` allows changes
    up to that size. ``progress``: the bytes read, as a progress bar on stderr."""
    from hatinspect.analysis.audit import audit as audit_files
    from hatinspect.checkpoints import read_tensors

    rules = (source, task_id, mask_rule, mask_threshold)
    opened = [open_any(before, *rules), open_any(after, *rules)]
    with _progress(progress):
        report = audit_files(*opened, strict=strict, tolerance=tolerance, read_tensors=read_tensors)
    return with_sources(report, opened)


def info(
    checkpoint: CheckpointLike,
    *,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> Checkpoint:
    """What a checkpoint holds: backbone, layers, tasks, source format and metadata."""
    return open_any(checkpoint, source, task_id, mask_rule, mask_threshold)


def compare(
    *runs: CheckpointLike | Run,
    plot: PathLike | None = None,
    dpi: int = 100,
    figsize: Figsize = None,
    title: str | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
    progress: bool = False,
) -> Comparison:
    """Runs side by side; a run is a checkpoint or a folder of after-task files.
    ``plot``: also draw every run's capacity curves to a figure file. ``progress``: the
    files read, as a progress bar on stderr."""
    from hatinspect.analysis.compare import compare as compare_runs

    with _progress(progress):
        opened = [open_run(run, source, task_id, mask_rule, mask_threshold) for run in runs]
    result = with_sources(compare_runs(opened), [run.final for run in opened])
    return _drawn(result, plot, dict(dpi=dpi, figsize=figsize, title=title))


def report(
    *runs: CheckpointLike | Run,
    output: PathLike | None = None,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
    progress: bool = False,
) -> Report:
    """Everything about one or more runs: what each file is, capacity, masks, overlap,
    measures, the audit between a run's files, and the comparison of several runs.

    Two or more checkpoints of one run (each holding the tasks of the one before) are
    read as that run. With ``output`` (.html, .md or .json) the report is also written.
    ``progress``: the runs and layers done, as progress bars on stderr.
    """
    from hatinspect.analysis.report import build_report, one_run_or_many
    from hatinspect.checkpoints import read_tensors

    with _progress(progress):
        read = [open_run(run, source, task_id, mask_rule, mask_threshold) for run in runs]
        opened = one_run_or_many(read)
        result = with_sources(build_report(opened, read_tensors), [run.final for run in opened])
        if output is not None:
            from hatinspect.render.report import write_report

            write_report(result, output_path(output))
    return result


def trajectory(
    run: PathLike,
    *,
    task: Many = None,
    layer: Many = None,
    figure: PathLike | None = None,
    dpi: int = 100,
    cmap: str | None = None,
    figsize: Figsize = None,
    title: str | None = None,
) -> TrajectoryReport:
    """A run's masks through training (the original HAT code's ``.pkz`` logs, or the
    ``trajectory-task-<t>.safetensors`` files training records; ``run`` is such a file, a
    checkpoint beside them, or the run folder): per task and layer, the record after which
    the binary mask stopped changing, the units switched on and off between records, and
    the active share at each. ``figure``: also draw the gates over the records (units ×
    records, one panel a layer) to this file."""
    from hatinspect.analysis.trajectory import trajectory_report
    from hatinspect.analysis.trajectory_files import read_trajectories

    found = read_trajectories(checkpoint_path(run))
    result = trajectory_report(found, _many(task), _many(layer))
    look = dict(dpi=dpi, cmap=cmap, figsize=figsize, title=title)
    return _drawn(result, figure, look)


def open_run(
    run: CheckpointLike | Run,
    source: str | None = None,
    task_id: int | None = None,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> Run:
    """A checkpoint or a run folder (its files checked to agree), or a ``Run`` as is."""
    from hatinspect.analysis.runs import Run, read_run
    from hatinspect.model.checkpoint import Checkpoint

    if isinstance(run, Run):
        return run
    if isinstance(run, Checkpoint) or is_live(run):
        opened = open_any(run)
        return Run(name=Path(opened.path).name, path=opened.path, checkpoints=(opened,))
    rules = (source, task_id, mask_rule, mask_threshold)
    return read_run(checkpoint_path(run), lambda path: open_any(path, *rules))


def _progress(shown: bool):
    """Progress bars on stderr for the block when asked for; else whatever the caller
    installed (none by default: the API prints nothing)."""
    if not shown:
        return nullcontext()
    from hatinspect.terminal.progress import bars

    return bars(transient=False)


def _drawn(result, path: PathLike | None, look: dict, **options):
    """`result`, after its figure was drawn to `path` (when given) as the command draws
    it; a notebook draws it with the same `look` and `options`."""
    if look.get("figsize") is not None:
        from hatinspect.render.figures import parse_figsize

        look["figsize"] = parse_figsize(",".join(map(str, look["figsize"])))  # as --figsize
    if path is not None:
        from hatinspect.render.drawing import draw_figure
        from hatinspect.render.figures import Look

        chosen = {key: value for key, value in look.items() if value is not None}
        draw_figure(result, output_path(path), Look(**chosen), **options)
    return with_figure(result, **look, **options)


def _is_folder(checkpoint) -> bool:
    return isinstance(checkpoint, str | os.PathLike) and os.path.isdir(checkpoint)


def _is_acc_csv(checkpoint) -> bool:
    """A CLArena acc.csv, which stands for its output folder."""
    return isinstance(checkpoint, str | os.PathLike) and Path(checkpoint).name == "acc.csv"


def _many(value: Many) -> tuple:
    if value is None:
        return ()
    if isinstance(value, int | str):
        return (value,)
    return tuple(value)
