"""One function per command, returning the typed result the command renders.

Each takes a checkpoint path (or an already opened ``Checkpoint``) and the command's
options as keyword arguments; every result has ``to_dict()`` (the command's JSON) and
``to_pandas()`` (its CSV rows). Nothing here prints or imports torch for native files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # the core loads numpy: imported by the functions, so `--help` stays light
    from hatinspect.core.audit import AuditReport
    from hatinspect.core.capacity import CapacityReport
    from hatinspect.core.masks import MaskReport
    from hatinspect.core.measure import LayerMeasure
    from hatinspect.core.overlap import OverlapReport
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


def capacity(checkpoint: CheckpointLike, *, source: str | None = None) -> CapacityReport:
    """Units and parameters used and protected, per layer, in total and task by task."""
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


def _many(value: Many) -> tuple:
    if value is None:
        return ()
    if isinstance(value, int | str):
        return (value,)
    return tuple(value)
