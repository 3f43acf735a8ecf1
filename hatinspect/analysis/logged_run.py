"""A run known from its training logs alone (the original HAT code saves its ``.pkz`` logs
and no checkpoint): each task's binary mask at the point whose model training kept, as a
checkpoint of units whose weights, and so parameters, are unknown."""

from __future__ import annotations

import os
from types import MappingProxyType

import numpy as np

from hatinspect.analysis.hat_logs import is_hat_log
from hatinspect.analysis.select import NO_WEIGHTS, READ_BY_LOGS
from hatinspect.analysis.trajectory_files import HAT_LOGS, Trajectories, read_trajectories
from hatinspect.model.checkpoint import Checkpoint, LayerInfo
from hatinspect.model.errors import CheckpointError
from hatinspect.model.trajectory import TaskTrajectory

SOURCE = HAT_LOGS
NO_WEIGHTS_NOTE = (
    f"{NO_WEIGHTS}: parameters, weights and measures are not known; "
    "units are each task's gates above 0.5 at the kept epoch"
)


def open_logs(path: str | os.PathLike) -> Checkpoint:
    """The checkpoint of the original HAT code's ``.pkz`` logs at ``path`` (see
    ``logged_checkpoint``)."""
    return logged_checkpoint(read_trajectories(path))


def refuse_logs(path: str | os.PathLike, why: str) -> None:
    """Refuse, in one line, the ``.pkz`` logs to what reads weights (``why``: what it does
    not do), naming what reads the logs instead."""
    if is_hat_log(path):
        raise CheckpointError(
            f"{path}: the original HAT code's .pkz logs; {NO_WEIGHTS}, {why} ({READ_BY_LOGS})"
        )


def logged_checkpoint(logs: Trajectories) -> Checkpoint:
    """The logs' tasks, each with its mask at the kept point (the last where the logs do not
    tell it), in layers of known units and unknown weights; the accuracy matrix in the
    metadata where the logs hold it."""
    if not logs.trajectories:
        raise CheckpointError(f"{logs.path}: the logs hold no task's masks")
    names = logs.trajectories[0].layers
    widths = {name: logs.trajectories[0].gates[name].shape[1] for name in names}
    layers = tuple(
        # the original networks are sequential: each gated layer feeds the next
        LayerInfo(name, widths[name], (), "", None, names[i - 1] if i else None, bool(i))
        for i, name in enumerate(names)
    )
    masks, notes = {}, [NO_WEIGHTS_NOTE, *logs.notes]
    for trajectory in logs.trajectories:
        row = _kept_row(logs, trajectory, notes)
        masks[trajectory.task] = MappingProxyType(
            {name: _read_only(trajectory.binary(name)[row]) for name in names}
        )
    metadata = {"kept": _kept_text(logs)}
    if logs.accuracy is not None:
        metadata["accuracy"] = _matrix_text(logs.accuracy)
    return Checkpoint(
        path=logs.path,
        backbone="unknown (training logs)",
        source=SOURCE,
        layers=layers,
        task_ids=logs.tasks,
        masks=MappingProxyType(masks),
        metadata=MappingProxyType(metadata),
        notes=tuple(notes),
    )


def _kept_row(logs: Trajectories, trajectory: TaskTrajectory, notes: list[str]) -> int:
    kept = logs.kept.get(trajectory.task)
    if kept in trajectory.points:
        return trajectory.points.index(kept)
    notes.append(
        f"task {trajectory.task}: the logs do not tell the kept {trajectory.unit}; "
        f"its mask is that of the last, {trajectory.points[-1]}"
    )
    return len(trajectory.points) - 1


def _kept_text(logs: Trajectories) -> str:
    """How training chose the point each task's mask is taken at, and the points."""
    unit = logs.trajectories[0].unit
    points = ", ".join(f"task {t}: {p}" for t, p in sorted(logs.kept.items()))
    return f"the {unit} of {logs.kept_by}" + (f" ({points})" if points else "")


def _read_only(mask: np.ndarray) -> np.ndarray:
    out = mask.astype(np.uint8)
    out.flags.writeable = False
    return out


def _matrix_text(rows) -> str:
    import json

    return json.dumps([list(row) for row in rows])
