"""The accuracy view: one definition of each figure read from an accuracy matrix, for
`train-demo`, `info`, `compare` and the report alike, whichever file fed the matrix (the
metadata train-demo writes, a CLArena ``acc.csv``, an original-HAT ``.pkz``).

The matrix is lower-triangular: row t holds the test accuracy on tasks 0..t right after
learning task t (counted from 0 here, whatever the tasks' ids).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from hatinspect.model.checkpoint import Checkpoint

Matrix = Sequence[Sequence[float]]


def average_accuracy(accuracy: Matrix, t: int) -> float:
    """After task t: the mean accuracy over the tasks learned so far."""
    return sum(accuracy[t]) / len(accuracy[t])


def forgetting(accuracy: Matrix, t: int) -> list[float]:
    """After task t, for each earlier task j: its best accuracy before t minus its
    accuracy after t (what `train-demo` prints under the matrix)."""
    return [max(row[j] for row in accuracy[j:t]) - accuracy[t][j] for j in range(t)]


def mean_forgetting(accuracy: Matrix, t: int) -> float | None:
    """`forgetting` averaged over the earlier tasks; None for the first task."""
    return sum(forgetting(accuracy, t)) / t if t else None


def backward_transfer(accuracy: Matrix, t: int) -> float | None:
    """After task t, Lopez-Paz & Ranzato's (2017) backward transfer: over each earlier
    task j, its accuracy after t minus its accuracy right after it was learned, averaged;
    None for the first task."""
    if t == 0:
        return None
    return sum(accuracy[t][j] - accuracy[j][j] for j in range(t)) / t


@dataclass(frozen=True)
class AccuracyView:
    """An accuracy matrix with the tasks its rows and columns stand for."""

    tasks: tuple[int, ...]
    rows: tuple[tuple[float, ...], ...]

    @property
    def last(self) -> int:
        return len(self.rows) - 1

    @property
    def average_accuracy(self) -> float:
        return average_accuracy(self.rows, self.last)

    @property
    def forgetting(self) -> list[float]:
        return forgetting(self.rows, self.last)

    @property
    def mean_forgetting(self) -> float | None:
        return mean_forgetting(self.rows, self.last)

    @property
    def backward_transfer(self) -> float | None:
        return backward_transfer(self.rows, self.last)


def accuracy_matrix(checkpoint: Checkpoint) -> list[list[float]] | None:
    """Row t: test accuracy on tasks 1..t+1 after learning task t+1; None when the
    metadata holds no such lower-triangular matrix, one row per stored task."""
    text = checkpoint.metadata.get("accuracy")
    try:
        rows = json.loads(text) if text is not None else None
    except ValueError:
        return None
    if not isinstance(rows, list) or len(rows) != len(checkpoint.task_ids):
        return None
    for t, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != t + 1:
            return None
        if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in row):
            return None
    return [[float(a) for a in row] for row in rows]


def accuracy_view(checkpoint: Checkpoint) -> AccuracyView | None:
    matrix = accuracy_matrix(checkpoint)
    if not matrix:
        return None
    return AccuracyView(tuple(checkpoint.task_ids), tuple(map(tuple, matrix)))
