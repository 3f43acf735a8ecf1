"""One function per command, returning the typed result the command renders.

Each takes a checkpoint path (or an already opened ``Checkpoint``) and the command's
options as keyword arguments; every result has ``to_dict()`` (the command's JSON) and
``to_pandas()`` (its CSV rows). Nothing here prints or imports torch for native files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # the core loads numpy: imported by the functions, so `--help` stays light
    from hatinspect.core.audit import AuditReport
    from hatinspect.core.capacity import CapacityReport
    from hatinspect.core.compare import Comparison
    from hatinspect.core.masks import MaskReport
    from hatinspect.core.measure import LayerMeasure
    from hatinspect.core.overlap import OverlapReport
    from hatinspect.core.report import Report
    from hatinspect.core.runs import Run, RunCapacity
    from hatinspect.core.types import Checkpoint

CheckpointLike: TypeAlias = "str | os.PathLike | Checkpoint"
Many = Iterable | int | str | None  # one value, several, or None for all


def open_any(checkpoint: CheckpointLike, source: str | None = None) -> Checkpoint:
    """An opened checkpoint as is; a path read with ``open_checkpoint``."""
    from hatinspect.core.types import Checkpoint

    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    from hatinspect.core.reader import open_checkpoint

    return open_checkpoint(checkpoint, source=source)


def masks(
    checkpoint: CheckpointLike,
    *,
    task: Many = None,
    layer: Many = None,
    exclude: Many = None,
    source: str | None = None,
) -> MaskReport:
    """Per layer and task: units each mask keeps; cumulative and summative masks."""
    from hatinspect.core.masks import summarise_masks

    return summarise_masks(open_any(checkpoint, source), _many(task), _many(layer), _many(exclude))


def capacity(
    checkpoint: CheckpointLike | Run, *, source: str | None = None
) -> CapacityReport | RunCapacity:
    """Units and parameters used and protected, per layer, in total and task by task;
    for a run folder, also one row a file (a ``RunCapacity``)."""
    from hatinspect.core.runs import Run, run_capacity

    if _is_folder(checkpoint) or isinstance(checkpoint, Run):
        return run_capacity(open_run(checkpoint, source=source))
    from hatinspect.core.capacity import capacity as report_capacity

    return report_capacity(open_any(checkpoint, source))


def measure(
    checkpoint: CheckpointLike,
    layer: str,
    *,
    of: str = "cumulative",
    aggregation: str = "min",
    source: str | None = None,
) -> LayerMeasure:
    """The parameter-wise measure of one layer (``of``: cumulative, summative or task:N)."""
    from hatinspect.core.measure import measure as layer_measure
    from hatinspect.core.measure import parse_unit_wise

    parse_unit_wise(of)
    return layer_measure(open_any(checkpoint, source), layer, of, aggregation)


def overlap(
    checkpoint: CheckpointLike,
    *,
    task: Many = None,
    layer: Many = None,
    exclude: Many = None,
    source: str | None = None,
) -> OverlapReport:
    """Units shared by every pair of tasks (count and Jaccard), network-wide and per layer."""
    from hatinspect.core.overlap import overlap as task_overlap

    return task_overlap(open_any(checkpoint, source), _many(task), _many(layer), _many(exclude))


def audit(
    before: CheckpointLike, after: CheckpointLike, *, source: str | None = None
) -> AuditReport:
    """Every parameter BEFORE protects, checked bit for bit in AFTER (``.ok``)."""
    from hatinspect.core.audit import audit as audit_files

    return audit_files(open_any(before, source), open_any(after, source))


def info(checkpoint: CheckpointLike, *, source: str | None = None) -> Checkpoint:
    """What a checkpoint holds: backbone, layers, tasks, source format and metadata."""
    return open_any(checkpoint, source)


def compare(*runs: CheckpointLike | Run, source: str | None = None) -> Comparison:
    """Runs side by side; a run is a checkpoint or a folder of after-task files."""
    from hatinspect.core.compare import compare as compare_runs

    return compare_runs([open_run(run, source=source) for run in runs])


def report(
    *runs: CheckpointLike | Run,
    output: str | os.PathLike | None = None,
    source: str | None = None,
) -> Report:
    """Everything about one or more runs: what each file is, capacity, masks, overlap,
    measures, the audit between a run's files, and the comparison of several runs.

    Two or more checkpoints of one run (each holding the tasks of the one before) are
    read as that run. With ``output`` (.html, .md or .json) the report is also written.
    """
    from hatinspect.core.report import build_report, one_run_or_many

    result = build_report(one_run_or_many([open_run(run, source=source) for run in runs]))
    if output is not None:
        from hatinspect.render.report import write_report

        write_report(result, Path(output))
    return result


def open_run(run: CheckpointLike | Run, source: str | None = None) -> Run:
    """A checkpoint or a run folder (its files checked to agree), or a ``Run`` as is."""
    from hatinspect.core.runs import Run, read_run
    from hatinspect.core.types import Checkpoint

    if isinstance(run, Run):
        return run
    if isinstance(run, Checkpoint):
        return Run(name=Path(run.path).name, path=run.path, checkpoints=(run,))
    return read_run(run, lambda path: open_any(path, source))


def _is_folder(checkpoint) -> bool:
    return isinstance(checkpoint, str | os.PathLike) and os.path.isdir(checkpoint)


def _many(value: Many) -> tuple:
    if value is None:
        return ()
    if isinstance(value, int | str):
        return (value,)
    return tuple(value)
