"""Masks followed through training: per task and layer, when the binary mask settled, how
many units it switched on and off between records, and its active share at each.

Reads ``model.trajectory.TaskTrajectory`` objects, whichever file they came from (the
original HAT code's ``.pkz`` logs, or the files training records).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hatinspect.analysis.trajectory_files import Trajectories
from hatinspect.model.errors import HatinspectError
from hatinspect.model.records import csv_rows, record
from hatinspect.model.result import Result
from hatinspect.model.trajectory import TaskTrajectory


@dataclass(frozen=True)
class LayerTrajectory:
    """One task's mask of one layer, record by record."""

    task: int
    layer: str
    units: int
    points: tuple[int, ...]
    active: tuple[int, ...]  # units on at each record
    # between record i and i + 1: units switched on, and off (one fewer than the records)
    switched_on: tuple[int, ...]
    switched_off: tuple[int, ...]
    settled_after: int  # the first record after which the binary mask never changes

    @property
    def active_share(self) -> tuple[float, ...]:
        return tuple(a / self.units for a in self.active)

    @property
    def switched(self) -> int:
        return sum(self.switched_on) + sum(self.switched_off)


@dataclass(frozen=True)
class TrajectoryReport(Result):
    """`trajectory` of a run: each chosen task's layers, and the gates they came from."""

    path: str
    unit: str  # "epoch" or "step": what the record points count
    tasks: tuple[int, ...]
    layers: tuple[LayerTrajectory, ...]  # by task, then layer in network order
    trajectories: tuple[TaskTrajectory, ...]  # the chosen tasks, chosen layers only
    # the point whose model training kept, by task, where the files tell it, and how
    # training chose it ("the least validation loss", "the last record")
    kept: tuple[tuple[int, int], ...] = ()
    kept_by: str = "the least validation loss"
    notes: tuple[str, ...] = ()  # caveats of the file, e.g. how its layers were named
    # by task: per-epoch losses, accuracies and regulariser, where the file logs them
    # (recorded trajectory files log none: empty)
    curves: Mapping[int, Mapping[str, tuple[float, ...]]] = field(default_factory=dict)

    def of_task(self, task: int) -> tuple[LayerTrajectory, ...]:
        return tuple(layer for layer in self.layers if layer.task == task)


def layer_trajectory(trajectory: TaskTrajectory, layer: str) -> LayerTrajectory:
    binary = trajectory.binary(layer)
    changes = binary[1:] != binary[:-1]  # (records - 1, units)
    on = changes & binary[1:]
    changed = np.flatnonzero(changes.any(axis=1))
    last = int(changed[-1]) + 1 if changed.size else 0  # the record after the last change
    return LayerTrajectory(
        task=trajectory.task,
        layer=layer,
        units=int(binary.shape[1]),
        points=trajectory.points,
        active=tuple(int(n) for n in binary.sum(axis=1)),
        switched_on=tuple(int(n) for n in on.sum(axis=1)),
        switched_off=tuple(int(n) for n in (changes & ~binary[1:]).sum(axis=1)),
        settled_after=trajectory.points[last],
    )


def trajectory_report(
    found: Trajectories, tasks: Sequence[int] = (), include: Sequence[str] = ()
) -> TrajectoryReport:
    """The chosen tasks (all by default) and layers (names or globs; all by default)."""
    path, trajectories = found.path, found.trajectories
    by_task = {t.task: t for t in trajectories}
    missing = [t for t in tasks if t not in by_task]
    if missing:
        raise HatinspectError(
            f"{path}: no trajectory of task {missing[0]}; it holds tasks {sorted(by_task)}"
        )
    chosen = [by_task[t] for t in (tasks or sorted(by_task))]
    names = _layers(path, chosen[0].layers if chosen else (), include)
    for t in chosen:
        if not set(names) <= set(t.layers):
            lacking = sorted(set(names) - set(t.layers))[0]
            raise HatinspectError(f"{path}: task {t.task} has no record of layer {lacking}")
    narrowed = tuple(
        TaskTrajectory(t.task, t.points, t.unit, names, {n: t.gates[n] for n in names})
        for t in chosen
    )
    return TrajectoryReport(
        path=path,
        unit=chosen[0].unit if chosen else "epoch",
        tasks=tuple(t.task for t in narrowed),
        layers=tuple(layer_trajectory(t, name) for t in narrowed for name in names),
        trajectories=narrowed,
        kept=tuple(sorted((t, e) for t, e in found.kept.items() if t in tasks or not tasks)),
        kept_by=found.kept_by,
        notes=found.notes,
        curves={t: found.curves[t] for t in (tasks or sorted(by_task)) if t in found.curves},
    )


def _layers(path: str, layers: tuple[str, ...], include: Sequence[str]) -> tuple[str, ...]:
    if not include:
        return layers
    chosen = tuple(n for n in layers if any(fnmatch.fnmatchcase(n, g) for g in include))
    if not chosen:
        raise HatinspectError(
            f"{path}: no layer matches {', '.join(include)}; its layers are {', '.join(layers)}"
        )
    return chosen


# machine output (JSON record, CSV rows)

LAYER_KEYS = ["task", "layer", "units", "settled_after", "points", "active", "switched_on",
              "switched_off"]  # fmt: skip
CSV_HEADER = ["task", "layer", "point", "units", "active", "active_share", "switched_on",
              "switched_off", "settled_after"]  # fmt: skip


@record.register
def _(report: TrajectoryReport) -> dict:
    return {
        "run": report.path,
        "unit": report.unit,
        "tasks": list(report.tasks),
        "kept": {str(task): point for task, point in report.kept},
        "kept_by": report.kept_by,
        "notes": list(report.notes),
        "curves": {
            str(task): {name: list(values) for name, values in curves.items()}
            for task, curves in report.curves.items()
        },
        "layers": [
            {key: _listed(getattr(layer, key)) for key in LAYER_KEYS}
            | {"active_share": list(layer.active_share)}
            for layer in report.layers
        ],
    }


def _listed(value):
    return list(value) if isinstance(value, tuple) else value


@csv_rows.register
def _(report: TrajectoryReport) -> tuple[list[str], list[list]]:
    """One row a task, layer and record; the switches are those into that record."""
    rows = []
    for layer in report.layers:
        for i, point in enumerate(layer.points):
            on = layer.switched_on[i - 1] if i else 0
            off = layer.switched_off[i - 1] if i else 0
            rows.append([layer.task, layer.layer, point, layer.units, layer.active[i],
                         layer.active_share[i], on, off, layer.settled_after])  # fmt: skip
    return CSV_HEADER, rows
