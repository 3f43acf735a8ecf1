"""Which units tasks share: task x task counts and Jaccard indices, per layer and network-wide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, cycle, repeat

import numpy as np

from hatinspect.analysis.masks import entry_word, joined_masks
from hatinspect.analysis.select import select_layers, select_tasks
from hatinspect.analysis.shared_weights import shared_weights
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.progress import track
from hatinspect.model.records import csv_line, csv_rows, csv_text, record
from hatinspect.model.result import Result


@dataclass(frozen=True)
class Overlap:
    """Task x task matrices over some units; entry (a, b) is about tasks[a] and tasks[b].

    The matrices are counted when first asked for: a command that shows only the network
    never counts its layers one by one."""

    name: str  # a layer name, or "network"
    units: int
    # (tasks, units): row t is the t-th chosen task's 0/1 mask over these units; None
    # where the counts were taken on packed bits (masks of weights)
    matrix: np.ndarray | None = field(repr=False, compare=False)
    counts: np.ndarray | None = field(default=None, repr=False, compare=False)  # shared

    @cached_property
    def shared(self) -> np.ndarray:
        """(tasks, tasks) int64: units both masks keep; the diagonal is each mask's size."""
        return _frozen(shared_units(self.matrix) if self.counts is None else self.counts)

    @cached_property
    def union(self) -> np.ndarray:
        """(tasks, tasks) int64: units either mask keeps."""
        sizes = np.diag(self.shared)
        return _frozen(sizes[:, None] + sizes[None, :] - self.shared)

    @cached_property
    def jaccard(self) -> np.ndarray:
        """shared / union; 1 where both masks are empty (two equal, empty sets)."""
        ones = np.ones(self.shared.shape)
        return _frozen(np.divide(self.shared, self.union, out=ones, where=self.union > 0))


@dataclass(frozen=True)
class OverlapReport(Result):
    checkpoint: str
    tasks: tuple[int, ...]
    network: Overlap  # over the units of all chosen layers
    layers: tuple[Overlap, ...]
    entries: str = "units"  # what a mask's entries are: "units", or "weights"


def overlap(
    checkpoint: Checkpoint,
    tasks: Sequence[int] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> OverlapReport:
    """Shared units between every pair of chosen tasks, on the chosen layers (all by default)."""
    chosen = select_tasks(checkpoint, tasks)
    layers = select_layers(checkpoint, include, exclude)
    if checkpoint.covers == Covers.PARAMETERS:
        return _weight_overlap(checkpoint, chosen, layers)
    # the network's counts are the layers' summed: one product over all their units
    matrix = _frozen(network_matrix(checkpoint, layers, chosen))
    ends = np.cumsum([0, *(layer.mask_size(checkpoint.covers) for layer in layers)])
    return OverlapReport(
        checkpoint.path,
        chosen,
        Overlap("network", matrix.shape[1], matrix),
        tuple(
            Overlap(layer.name, int(end - start), matrix[:, start:end])
            for layer, start, end in zip(layers, ends[:-1], ends[1:], strict=True)
        ),
        entry_word(checkpoint),
    )


def _weight_overlap(checkpoint: Checkpoint, tasks, layers) -> OverlapReport:
    """Masks of weights: each layer's shared weights popcounted on packed bits, a block at
    a time (``shared_weights``); the network's are the layers' summed."""
    counts = shared_weights(checkpoint, layers, tasks)
    scopes = [
        Overlap(layer.name, layer.mask_size(checkpoint.covers), None, _frozen(shared))
        for layer, shared in zip(layers, counts, strict=True)
    ]
    network = _frozen(sum((scope.counts for scope in scopes), np.zeros((len(tasks),) * 2, int)))
    total = sum(scope.units for scope in scopes)
    return OverlapReport(
        checkpoint.path, tasks, Overlap("network", total, None, network), tuple(scopes),
        entry_word(checkpoint),
    )  # fmt: skip


def network_matrix(
    checkpoint: Checkpoint, layers: Sequence[LayerInfo], tasks: Sequence[int]
) -> np.ndarray:
    """(tasks, mask entries of all `layers`) uint8: row t is tasks[t]'s masks (flattened),
    layer after layer."""
    size = sum(layer.mask_size(checkpoint.covers) for layer in layers)
    matrix = np.empty((len(tasks), size), dtype=np.uint8)
    for row, task in track(
        zip(matrix, tasks, strict=True), "overlap", total=len(tasks), unit="tasks"
    ):
        masks = checkpoint.masks[task]
        row[:] = joined_masks([masks[layer.name] for layer in layers], row.size)
    return matrix


EXACT_TERMS = 2**24  # a float32 sum of 0/1 products is exact while it stays <= 2**24
BLOCK_BYTES = 16 * 2**20  # the float32 copy of one block of units


def shared_units(matrix: np.ndarray) -> np.ndarray:
    """(tasks, tasks) int64 counts of units both masks keep, from the (tasks, units) 0/1
    matrix: float32 matrix products (BLAS) over blocks of units few enough that every
    partial sum is an integer float32 holds exactly, added up in int64."""
    tasks, units = matrix.shape
    shared = np.zeros((tasks, tasks), dtype=np.int64)
    step = min(EXACT_TERMS, max(1, BLOCK_BYTES // (4 * max(tasks, 1))))
    for start in range(0, units, step):
        block = matrix[:, start : start + step].astype(np.float32)
        shared += (block @ block.T).astype(np.int64)
    return shared


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# machine output (JSON record, CSV rows)


@record.register
def _(report: OverlapReport) -> dict:
    return {
        "checkpoint": report.checkpoint,
        "tasks": list(report.tasks),
        "network": _matrices(report.network),
        "layers": [{"name": layer.name, **_matrices(layer)} for layer in report.layers],
    }


OVERLAP_KEYS = ["scope", "task_a", "task_b", "shared", "union", "jaccard"]


@csv_rows.register
def _(report: OverlapReport, per_layer: bool = False) -> tuple[list[str], list[list]]:
    rows = [
        [scope.name, a, b, shared, union, jaccard]
        for scope in _overlap_scopes(report, per_layer)
        for (a, b), shared, union, jaccard in zip(
            _task_pairs(report.tasks), *_flat_matrices(scope), strict=True
        )
    ]
    return OVERLAP_KEYS, rows


@csv_text.register
def _(report: OverlapReport, per_layer: bool = False) -> str:
    # tasks x tasks rows per scope, written as text
    """What `to_csv` would write of `csv_rows`, formatted a line at a time: the csv module
    takes about twice as long over the 409,600 rows of a network at 640 tasks."""
    tasks, count = report.tasks, len(report.tasks)
    lines = [csv_line(OVERLAP_KEYS)]
    for scope in _overlap_scopes(report, per_layer):
        name = csv_line([scope.name]).removesuffix("\n")  # quoted where csv quotes
        firsts = chain.from_iterable(map(repeat, tasks, repeat(count)))  # row-major pairs
        columns = (repeat(name), firsts, cycle(tasks), *_flat_matrices(scope))
        lines += map("{},{},{},{},{},{!r}\n".format, *columns)
    return "".join(lines)


def _overlap_scopes(report: OverlapReport, per_layer: bool) -> tuple[Overlap, ...]:
    return (report.network, *(report.layers if per_layer else ()))


def _task_pairs(tasks: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(a, b) for a in tasks for b in tasks]  # row-major, as the matrices


def _flat_matrices(scope: Overlap) -> tuple[list[int], list[int], list[float]]:
    return (
        scope.shared.ravel().tolist(),
        scope.union.ravel().tolist(),
        scope.jaccard.ravel().tolist(),
    )


def _matrices(scope: Overlap) -> dict:
    return {
        "units": scope.units,
        "shared": scope.shared.tolist(),
        "union": scope.union.tolist(),
        "jaccard": scope.jaccard.tolist(),
    }
