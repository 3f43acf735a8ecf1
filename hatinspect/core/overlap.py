"""Which units tasks share: task x task counts and Jaccard indices, per layer and network-wide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hatinspect.core.masks import task_matrix
from hatinspect.core.results import Result
from hatinspect.core.select import select_layers, select_tasks
from hatinspect.core.types import Checkpoint


@dataclass(frozen=True)
class Overlap:
    """Task x task matrices over some units; entry (a, b) is about tasks[a] and tasks[b]."""

    name: str  # a layer name, or "network"
    units: int
    shared: np.ndarray  # (tasks, tasks) int64: units both masks keep; the diagonal is each size
    union: np.ndarray  # (tasks, tasks) int64: units either mask keeps

    @property
    def jaccard(self) -> np.ndarray:
        """shared / union; 1 where both masks are empty (two equal, empty sets)."""
        return np.divide(
            self.shared, self.union, out=np.ones(self.shared.shape), where=self.union > 0
        )


@dataclass(frozen=True)
class OverlapReport(Result):
    checkpoint: str
    tasks: tuple[int, ...]
    network: Overlap  # summed over the chosen layers
    layers: tuple[Overlap, ...]


def overlap(
    checkpoint: Checkpoint,
    tasks: Sequence[int] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> OverlapReport:
    """Shared units between every pair of chosen tasks, on the chosen layers (all by default)."""
    chosen = select_tasks(checkpoint, tasks)
    layers = tuple(
        _overlap(layer.name, task_matrix(checkpoint, layer, chosen))
        for layer in select_layers(checkpoint, include, exclude)
    )
    network = Overlap(
        name="network",
        units=sum(layer.units for layer in layers),
        shared=_frozen(sum(layer.shared for layer in layers)),
        union=_frozen(sum(layer.union for layer in layers)),
    )
    return OverlapReport(checkpoint.path, chosen, network, layers)


def _overlap(name: str, matrix: np.ndarray) -> Overlap:
    shared = shared_units(matrix)
    sizes = np.diag(shared)
    union = sizes[:, None] + sizes[None, :] - shared
    return Overlap(name, matrix.shape[1], _frozen(shared), _frozen(union))


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
