"""Each result in one line, for its ``repr``: what it is of, and the few numbers that say
most (``<CapacityReport hat-toy/after-task-3.safetensors: 3 tasks, 3 layers, ...>``)."""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path

import numpy as np

from hatinspect.analysis.audit import AuditReport, verdict_tone
from hatinspect.analysis.capacity import CapacityReport
from hatinspect.analysis.compare import Comparison
from hatinspect.analysis.importance import ImportanceOverlap
from hatinspect.analysis.masks import MaskReport
from hatinspect.analysis.measure import LayerMeasure
from hatinspect.analysis.overlap import OverlapReport
from hatinspect.analysis.report import Report
from hatinspect.analysis.runs import RunCapacity
from hatinspect.analysis.trajectory import TrajectoryReport
from hatinspect.model.checkpoint import Checkpoint


@singledispatch
def summary(result) -> str:
    """`result` in one line (no type name: the ``repr`` puts it first)."""
    return ""


def short(path: str) -> str:
    """A path by its last two parts, as a notebook's reader tells files apart."""
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else str(path)


def tasks(n: int) -> str:
    return f"{n} task{'s' * (n != 1)}"


def layers(n: int) -> str:
    return f"{n} layer{'s' * (n != 1)}"


@summary.register
def _(checkpoint: Checkpoint) -> str:
    params = "unknown" if checkpoint.params is None else f"{checkpoint.params:,}"
    return (
        f"{short(checkpoint.path)}: {checkpoint.backbone} ({checkpoint.source}), "
        f"{tasks(len(checkpoint.task_ids))}, {layers(len(checkpoint.layers))}, {params} params"
    )


@summary.register
def _(report: MaskReport) -> str:
    used = sum(layer.cumulative for layer in report.layers)
    return (
        f"{short(report.checkpoint)}: {tasks(len(report.tasks))}, {layers(len(report.layers))}, "
        f"{used:,} of {report.units:,} {report.entries} used ({used / max(report.units, 1):.1%})"
    )


@summary.register
def _(report: CapacityReport) -> str:
    total = report.total
    return (
        f"{short(report.checkpoint)}: {tasks(len(report.tasks))}, {layers(len(report.layers))}, "
        f"{_params(total.param_usage)}, {total.unit_usage:.1%} of units used"
    )


def _params(usage: float | None) -> str:
    return "params unknown" if usage is None else f"{usage:.1%} of params protected"


@summary.register
def _(result: RunCapacity) -> str:
    return f"{summary(result.capacity)}, {len(result.trajectory)} file(s)"


@summary.register
def _(result: LayerMeasure) -> str:
    stats = result.weight_stats
    return (
        f"{short(result.checkpoint)} {result.layer}: {result.aggregation} of {result.of}, "
        f"{stats.count:,} weights, mean {stats.mean:.4g}"
    )


@summary.register
def _(report: OverlapReport) -> str:
    return (
        f"{short(report.checkpoint)}: {tasks(len(report.tasks))}, {layers(len(report.layers))}, "
        f"mean Jaccard between tasks {_mean_off_diagonal(report.network.jaccard)}"
    )


@summary.register
def _(result: ImportanceOverlap) -> str:
    mean = _mean_off_diagonal(result.similarity[0])
    return f"{short(result.checkpoint)}: {tasks(len(result.tasks))}, mean weighted Jaccard {mean}"


def _mean_off_diagonal(matrix: np.ndarray) -> str:
    others = matrix[~np.eye(len(matrix), dtype=bool)]
    return f"{others.mean():.2f}" if others.size else "-"


_OUTCOMES = {"pass": "passed", "drift": "drift, passed", "fail": "FAILED", "none": "no masks"}


@summary.register
def _(report: AuditReport) -> str:
    return (
        f"{short(report.before)} -> {short(report.after)}: {_OUTCOMES[verdict_tone(report)]}, "
        f"{report.changed:,} of {report.protected:,} protected parameters changed"
    )


@summary.register
def _(comparison: Comparison) -> str:
    runs = ", ".join(f"{run.name} ({tasks(len(run.steps))})" for run in comparison.runs)
    return f"{len(comparison.runs)} run(s): {runs}"


@summary.register
def _(report: Report) -> str:
    names = ", ".join(run.run.name for run in report.runs)
    return f"{names}: {report.summary}"


@summary.register
def _(report: TrajectoryReport) -> str:
    settled = max((layer.settled_after for layer in report.layers), default=None)
    records = len(report.trajectories[0].points) if report.trajectories else 0
    return (
        f"{short(report.path)}: {tasks(len(report.tasks))}, {records} records by "
        f"{report.unit}, every mask settled by {report.unit} {settled}"
    )
