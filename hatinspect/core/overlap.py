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
    rows = matrix.astype(np.int64)
    shared = rows @ rows.T
    sizes = np.diag(shared)
    union = sizes[:, None] + sizes[None, :] - shared
    return Overlap(name, matrix.shape[1], _frozen(shared), _frozen(union))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
