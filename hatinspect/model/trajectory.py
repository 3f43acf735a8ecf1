"""A task's masks followed through training: the gate values of every layer at each
recorded point (an epoch or a step), as HAT's figures show them settling.

Readers (the original HAT code's ``.pkz`` logs, the files ``train-demo`` and the Lightning
callback record) build these; the analyses and views read nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

# a mask entry whose gate is above this value counts as on, as HAT binarises its gates:
# sigmoid(s_max * e) > 0.5, the same as e > 0 (a gate of exactly 0.5 is off)
BINARY_THRESHOLD = 0.5

# the point of a record taken before the task's first epoch (the original HAT logs' -1)
BEFORE_TRAINING = -1


def binary_mask(gates: np.ndarray) -> np.ndarray:
    """The units on: gates strictly above ``BINARY_THRESHOLD``."""
    return np.asarray(gates) > BINARY_THRESHOLD


@dataclass(frozen=True, repr=False)
class TaskTrajectory:
    """One task's gates: ``gates[layer]`` is ``(len(points), units)`` float32, row i taken
    at ``points[i]`` (epochs or steps, ascending; ``BEFORE_TRAINING`` first if recorded)."""

    task: int
    points: tuple[int, ...]
    unit: Literal["epoch", "step"]
    layers: tuple[str, ...]
    gates: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if list(self.points) != sorted(set(self.points)):
            raise ValueError(f"task {self.task}: record points must ascend without repeats")
        for layer in self.layers:
            shape = self.gates[layer].shape
            if len(shape) != 2 or shape[0] != len(self.points):
                raise ValueError(
                    f"task {self.task}, layer {layer}: gates of shape {shape}, "
                    f"expected ({len(self.points)}, units)"
                )

    def binary(self, layer: str) -> np.ndarray:
        """``(points, units)`` bool: the layer's binary mask at each record."""
        return binary_mask(self.gates[layer])

    def __repr__(self) -> str:
        return (
            f"<TaskTrajectory task {self.task}: {len(self.layers)} layers, "
            f"{len(self.points)} records by {self.unit}>"
        )
