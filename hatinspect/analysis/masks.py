"""Per-layer, per-task summary of a checkpoint's binary masks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np

from hatinspect.analysis.packed import layer_tally, per_layer
from hatinspect.analysis.select import select_layers, select_tasks
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.records import csv_rows, record
from hatinspect.model.result import Result


@dataclass(frozen=True)
class LayerMasks:
    """How the chosen tasks use one layer's units."""

    name: str
    units: int
    active: Mapping[int, int]  # task id -> units its mask keeps
    cumulative: int  # units used by any chosen task
    histogram: tuple[int, ...]  # histogram[k]: units used by exactly k chosen tasks
    # makes the (tasks, units) matrix whose row t is the t-th chosen task's 0/1 mask, for
    # drawing (masks of weights are counted without it, and unpacked only to be drawn)
    rows: Callable[[], np.ndarray] = field(repr=False, compare=False)
    shape: tuple[int, ...] = ()  # one mask's shape: (units,), or a weight's for masks of weights

    @cached_property
    def matrix(self) -> np.ndarray:
        """(tasks, units) uint8, read-only: row t is the t-th chosen task's 0/1 mask."""
        matrix = self.rows()
        matrix.flags.writeable = False
        return matrix

    def fraction(self, task: int) -> float:
        return self.active[task] / self.units

    @property
    def cumulative_fraction(self) -> float:
        return self.cumulative / self.units

    @property
    def summative_max(self) -> int:
        return max((k for k, count in enumerate(self.histogram) if count), default=0)

    @property
    def summative_mean(self) -> float:
        return sum(k * count for k, count in enumerate(self.histogram)) / self.units


@dataclass(frozen=True)
class MaskReport(Result):
    checkpoint: str
    backbone: str
    tasks: tuple[int, ...]
    layers: tuple[LayerMasks, ...]
    entries: str = "units"  # what a mask's entries are: "units", or "weights"

    @property
    def histogram(self) -> tuple[int, ...]:
        """Network-wide: units used by exactly k chosen tasks, for k = 0 .. len(tasks)."""
        return tuple(int(n) for n in np.sum([layer.histogram for layer in self.layers], axis=0))

    @property
    def units(self) -> int:
        return sum(layer.units for layer in self.layers)


def summarise_masks(
    checkpoint: Checkpoint,
    tasks: Sequence[int] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> MaskReport:
    """Masks of the chosen tasks and layers (all by default); cumulative and summative
    views are taken over the chosen tasks only."""
    chosen = select_tasks(checkpoint, tasks)
    layers = select_layers(checkpoint, include, exclude)
    if checkpoint.covers == Covers.PARAMETERS:
        tallies = per_layer(layer_tally, checkpoint, layers, chosen)
        layers = tuple(map(partial(_weight_masks, checkpoint, chosen), layers, tallies))
        return MaskReport(checkpoint.path, checkpoint.backbone, chosen, layers, "weights")
    return MaskReport(
        checkpoint=checkpoint.path,
        backbone=checkpoint.backbone,
        tasks=chosen,
        layers=tuple(
            _layer_masks(
                task_matrix(checkpoint, layer, chosen),
                layer.name,
                chosen,
                layer.mask_shape(checkpoint.covers),
            )  # fmt: skip
            for layer in layers
        ),
        entries=entry_word(checkpoint),
    )


def entry_word(checkpoint: Checkpoint) -> str:
    """What one entry of the checkpoint's masks is, in words: "units" or "weights"."""
    return "units" if checkpoint.covers == Covers.UNITS else "weights"


def task_matrix(checkpoint: Checkpoint, layer: LayerInfo, tasks: Sequence[int]) -> np.ndarray:
    """(tasks, mask entries) uint8: row t is the mask of tasks[t] on `layer`, flattened."""
    rows = [checkpoint.masks[task][layer.name] for task in tasks]
    return np.array(rows, dtype=np.uint8).reshape(len(tasks), layer.mask_size(checkpoint.covers))


def joined_masks(masks: Sequence[np.ndarray], size: int) -> np.ndarray:
    """The masks end to end, one (size,) row (`size`: their units in all).
    Joined as bytes when each is a byte per unit: ``np.concatenate`` costs several times
    as much per array, and a network has thousands."""
    try:
        joined = b"".join(masks)
    except (TypeError, BufferError):  # lists, strided views: numpy's way
        joined = b""
    if len(joined) == size:
        return np.frombuffer(joined, np.uint8)
    return np.concatenate(masks)


def summative_counts(matrix: np.ndarray) -> np.ndarray:
    """(units,): how many rows of the (tasks, units) 0/1 matrix keep each unit. Summed in
    uint8 while the count cannot pass 255 (numpy then adds without casting, ~10x faster)."""
    return matrix.sum(axis=0, dtype=np.uint8 if len(matrix) <= 255 else np.int64)


def _layer_masks(matrix: np.ndarray, name: str, tasks: tuple[int, ...], shape=()) -> LayerMasks:
    summative = summative_counts(matrix)
    return LayerMasks(
        name=name,
        units=matrix.shape[1],
        active={task: int(np.count_nonzero(row)) for task, row in zip(tasks, matrix, strict=True)},
        cumulative=int(np.count_nonzero(summative)),
        histogram=tuple(int(n) for n in np.bincount(summative, minlength=len(tasks) + 1)),
        rows=lambda: matrix,
        shape=tuple(shape) or (matrix.shape[1],),
    )


def _weight_masks(checkpoint: Checkpoint, tasks: tuple[int, ...], layer, tally) -> LayerMasks:
    """Masks of weights, counted on packed bits (``analysis.packed``)."""
    return LayerMasks(
        name=layer.name,
        units=layer.mask_size(checkpoint.covers),
        active=dict(zip(tasks, tally.active.tolist(), strict=True)),
        cumulative=int(tally.histogram[1:].sum()),
        histogram=tuple(tally.histogram.tolist()),
        rows=lambda: task_matrix(checkpoint, layer, tasks),
        shape=layer.mask_shape(checkpoint.covers),
    )


def owners(layer: LayerMasks) -> np.ndarray:
    """(out, in * kernel) int: for masks of weights, the position among the chosen tasks of
    the first that keeps each weight (PackNet's owner), -1 where none does."""
    kept = layer.matrix.astype(bool)
    first = np.where(kept.any(axis=0), kept.argmax(axis=0), -1)
    return first.reshape(layer.shape[0], -1)


# machine output (JSON record, CSV rows)


@record.register
def _(report: MaskReport) -> dict:
    return {
        "checkpoint": report.checkpoint,
        "backbone": report.backbone,
        "tasks": list(report.tasks),
        "layers": [
            {
                "name": layer.name,
                "units": layer.units,
                "tasks": {
                    str(task): {"active": layer.active[task], "fraction": layer.fraction(task)}
                    for task in report.tasks
                },
                "cumulative": {"active": layer.cumulative, "fraction": layer.cumulative_fraction},
                "summative": {"max": layer.summative_max, "mean": layer.summative_mean},
            }
            for layer in report.layers
        ],
    }


@csv_rows.register
def _(report: MaskReport) -> tuple[list[str], list[list]]:
    per_task = [f"task_{task}_{key}" for task in report.tasks for key in ("active", "fraction")]
    header = [
        "layer",
        "units",
        *per_task,
        "cumulative_active",
        "cumulative_fraction",
        "summative_max",
        "summative_mean",
    ]
    rows = [
        [
            layer.name,
            layer.units,
            *[v for task in report.tasks for v in (layer.active[task], layer.fraction(task))],
            layer.cumulative,
            layer.cumulative_fraction,
            layer.summative_max,
            layer.summative_mean,
        ]
        for layer in report.layers
    ]
    return header, rows
