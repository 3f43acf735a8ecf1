"""Recording a task's gates while it trains: ``sigmoid(s_max * embedding)`` of every
layer, before training and every N epochs (or steps), into one trajectory file per task
(``native.trajectory_file``), with per-layer scalars and the heatmap sent to loggers.

A logger is anything with Lightning's ``log_metrics(metrics, step)``; one whose
``experiment`` has ``add_image`` (TensorBoard's ``SummaryWriter``) also gets each layer's
heatmap at the task's end. The demo and ``hatinspect.lightning.HATMaskTrajectory`` share
this recorder, so that both write the same files and log the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hatinspect.model.trajectory import BEFORE_TRAINING, TaskTrajectory, binary_mask
from hatinspect.native.trajectory_file import file_name, write_trajectory

UNITS = ("epoch", "step")
METRIC_PREFIX = "trajectory"  # metric names: trajectory/task_<t>/<layer>/<scalar>


def current_gates(backbone: nn.Module, s_max: float) -> dict[str, np.ndarray]:
    """Layer -> ``(units,)`` float32 ``sigmoid(s_max * e)`` of the current task's embedding."""
    with torch.no_grad():
        return {
            name: torch.sigmoid(s_max * embedding.weight[0].detach().float()).cpu().numpy()
            for name, embedding in backbone.task_embedding_t.items()
        }


def record_scalars(
    task: int,
    gates: Mapping[str, np.ndarray],
    previous: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Per layer: the share of units on, the mean gate and, against the ``previous``
    record, the units switched on and off (binary masks: ``model.trajectory.binary_mask``)."""
    scalars = {}
    for layer, now in gates.items():
        name = f"{METRIC_PREFIX}/task_{task}/{layer}"
        on = binary_mask(now)
        scalars[f"{name}/active_share"] = float(on.mean())
        scalars[f"{name}/mean_gate"] = float(now.mean())
        if previous is not None:
            before = binary_mask(previous[layer])
            scalars[f"{name}/switched_on"] = float((on & ~before).sum())
            scalars[f"{name}/switched_off"] = float((before & ~on).sum())
    return scalars


def log_metrics(loggers: Sequence, metrics: Mapping[str, float], step: int) -> None:
    for logger in loggers:
        logger.log_metrics(dict(metrics), step=step)


def log_heatmaps(loggers: Sequence, trajectory: TaskTrajectory, step: int) -> None:
    """Each layer's ``(records, units)`` gates as a grey image, to loggers that take images."""
    for logger in loggers:
        add_image = getattr(getattr(logger, "experiment", None), "add_image", None)
        if add_image is None:  # the CSV logger: scalars only
            continue
        for layer in trajectory.layers:
            tag = f"{METRIC_PREFIX}/task_{trajectory.task}/{layer}"
            add_image(tag, trajectory.gates[layer], global_step=step, dataformats="HW")


class TrajectoryRecorder:
    """One task's gates at a time: ``start`` records the point before training, ``record``
    each later point, ``finish`` the last one (when not recorded yet), then writes
    ``folder/trajectory-task-<t>.safetensors`` and logs the heatmaps."""

    def __init__(
        self,
        backbone: nn.Module,
        s_max: float,
        every: int,
        unit: str = "epoch",
        folder: str | Path | None = None,
        loggers: Sequence = (),
    ) -> None:
        if every < 1:
            raise ValueError(f"record every 1 or more {unit}s, got {every}")
        if unit not in UNITS:
            raise ValueError(f"unit {unit!r}: choose one of {', '.join(UNITS)}")
        self.backbone, self.s_max, self.every, self.unit = backbone, float(s_max), every, unit
        self.folder = None if folder is None else Path(folder)
        self.loggers = tuple(loggers)
        self.task: int | None = None
        self.written: dict[int, Path] = {}  # task id -> its trajectory file
        self._points: list[int] = []
        self._rows: dict[str, list[np.ndarray]] = {}

    def path(self, task: int) -> Path | None:
        return None if self.folder is None else self.folder / file_name(task)

    def due(self, done: int) -> bool:
        """Whether a record is due after ``done`` epochs (or steps)."""
        return done % self.every == 0

    def start(self, task: int, step: int) -> None:
        self.task, self._points, self._rows = task, [], {}
        self.record(BEFORE_TRAINING, step)

    def record(self, point: int, step: int) -> None:
        """The gates now as the record at ``point``; nothing if ``point`` is recorded."""
        if self.task is None or (self._points and point <= self._points[-1]):
            return
        gates = current_gates(self.backbone, self.s_max)
        previous = {layer: rows[-1] for layer, rows in self._rows.items()} or None
        self._points.append(point)
        for layer, row in gates.items():
            self._rows.setdefault(layer, []).append(row)
        log_metrics(self.loggers, record_scalars(self.task, gates, previous), step)

    def state(self) -> dict | None:
        """The task being recorded, its points and rows so far (None between tasks)."""
        if self.task is None:
            return None
        rows = {layer: np.stack(r).tolist() for layer, r in self._rows.items()}
        return {"task": self.task, "points": list(self._points), "rows": rows}

    def restore(self, state: Mapping | None) -> None:
        """Go on recording the task of ``state`` (as ``state()`` gave it)."""
        if state is None:
            return
        self.task, self._points = int(state["task"]), [int(p) for p in state["points"]]
        self._rows = {
            layer: list(np.asarray(rows, dtype=np.float32)) for layer, rows in state["rows"].items()
        }

    def finish(self, point: int, step: int) -> TaskTrajectory | None:
        """Record ``point`` if new; the task's trajectory, written and logged."""
        if self.task is None:
            return None
        self.record(point, step)
        trajectory = TaskTrajectory(
            task=self.task,
            points=tuple(self._points),
            unit=self.unit,
            layers=tuple(self._rows),
            gates={layer: np.stack(rows) for layer, rows in self._rows.items()},
        )
        path = self.path(self.task)
        if path is not None:
            self.written[self.task] = write_trajectory(path, trajectory, self.s_max)
        log_heatmaps(self.loggers, trajectory, step)
        self.task = None
        return trajectory
