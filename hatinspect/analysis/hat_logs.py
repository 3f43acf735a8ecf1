"""The original HAT code's training logs (``src/run.py`` with ``--approach hat-test`` and a
log path in ``--parameter``): a gzipped pickle, ``.pkz``, of ``approaches/hat_test.py``'s
``logs`` dict, read torch-free through ``analysis.numpy_pickle``.

What the dict holds, by task ``t`` (counted from 0):

- ``mask[t][i][e]``: layer ``i``'s gates at ``s_max``, ``(1, units)`` float32, after epoch
  ``e`` (from 0), and at ``-1`` before the task's first epoch;
- ``mask_pre[t][i]``: the cumulative mask of the tasks before ``t``, zeros for the first,
  built from each task's best-validation epoch (the model training restores), not its last;
- ``train_loss``, ``valid_loss`` (and ``_acc``, ``_reg``) ``[t]``: one value an epoch;
- ``test_acc[t]`` (and ``test_loss``): accuracy on every task after learning ``t``, 0 for
  tasks not learned yet; ``task_name[t]``.

The logs keep layers by index. They are named as the original networks name them, and as
``importers.original_hat`` names their checkpoints' layers: ``networks/alexnet_hat*.py``
gates five layers, ``c1, c2, c3, fc1, fc2``; ``networks/mlp_hat.py`` one to three,
``fc1..fc3``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hatinspect.analysis.numpy_pickle import load_gzip_pickle
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.trajectory import BEFORE_TRAINING, TaskTrajectory

GZIP_MAGIC = b"\x1f\x8b"
# what the logs keep of each epoch, by task: one value an epoch
CURVES = ("train_loss", "train_acc", "train_reg", "valid_loss", "valid_acc", "valid_reg")
ALEXNET_LAYERS = ("c1", "c2", "c3", "fc1", "fc2")
MAX_UNITS = 2**24
LAYER_NAMES_NOTE = (
    "the logs keep layers by index; named as the original HAT networks name them"
    " (alexnet_hat: c1, c2, c3, fc1, fc2; mlp_hat: fc1, fc2, ...)"
)


class LogFileError(CheckpointError):
    """A .pkz file that is not what the original HAT code logs."""


@dataclass(frozen=True)
class HatLogs:
    """A run of the original HAT code as its logs tell it."""

    path: str
    layers: tuple[str, ...]
    trajectories: tuple[TaskTrajectory, ...]  # by task, in training order
    # row t: test accuracy on tasks 0..t right after learning task t; None when not logged
    accuracy: tuple[tuple[float, ...], ...] | None
    task_names: Mapping[int, str] = field(default_factory=dict)
    # the epoch whose model training kept (the least validation loss), by task
    best_epochs: Mapping[int, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # by task, each of CURVES the logs hold: its value after each epoch (from 0)
    curves: Mapping[int, Mapping[str, tuple[float, ...]]] = field(default_factory=dict)

    @property
    def task_ids(self) -> tuple[int, ...]:
        return tuple(trajectory.task for trajectory in self.trajectories)


def is_hat_log(path: str | os.PathLike) -> bool:
    """A gzip file: the only kind of file hatinspect reads that is (a .pkz)."""
    try:
        with open(path, "rb") as file:
            return file.read(2) == GZIP_MAGIC
    except OSError:
        return False


def read_hat_logs(path: str | os.PathLike) -> HatLogs:
    """The logs of a ``.pkz`` file, checked; LogFileError (one line) otherwise."""
    path = Path(path)
    logs = load_gzip_pickle(path)
    if not isinstance(logs, dict) or not isinstance(logs.get("mask"), dict):
        raise LogFileError(f"{path}: no 'mask' dict, not the original HAT code's logs")
    masks = logs["mask"]
    tasks = _int_keys(masks, f"{path}: mask")
    if not tasks:
        raise LogFileError(f"{path}: the logs hold no task's masks")
    count = len(masks[tasks[0]]) if isinstance(masks[tasks[0]], dict) else 0
    layers = layer_names(count)
    trajectories = tuple(_trajectory(path, t, masks[t], layers) for t in tasks)
    _check_widths(path, trajectories)
    return HatLogs(
        path=str(path),
        layers=layers,
        trajectories=trajectories,
        accuracy=_accuracy(path, logs.get("test_acc"), tasks),
        task_names=_names(logs.get("task_name"), tasks),
        best_epochs=_best_epochs(logs.get("valid_loss"), tasks),
        notes=(LAYER_NAMES_NOTE,),
        curves={t: _curves(logs, t) for t in tasks},
    )


def layer_names(count: int) -> tuple[str, ...]:
    if count == len(ALEXNET_LAYERS):
        return ALEXNET_LAYERS
    return tuple(f"fc{i + 1}" for i in range(count))


def _trajectory(path: Path, task: int, by_layer, layers: tuple[str, ...]) -> TaskTrajectory:
    where = f"{path}: mask[{task}]"
    if not isinstance(by_layer, dict) or _int_keys(by_layer, where) != list(range(len(layers))):
        raise LogFileError(f"{where}: layers are not indexed 0..{len(layers) - 1} as in task 0")
    points = None
    gates = {}
    for i, name in enumerate(layers):
        by_epoch = by_layer[i]
        if not isinstance(by_epoch, dict):
            raise LogFileError(f"{where}[{i}]: not a dict of epochs")
        epochs = _int_keys(by_epoch, f"{where}[{i}]")
        if points is None:
            points = epochs
        if epochs != points or not epochs or epochs[0] < BEFORE_TRAINING:
            raise LogFileError(f"{where}[{i}]: epochs {epochs[:8]} differ from layer 0's")
        rows = [_gates(f"{where}[{i}][{e}]", by_epoch[e]) for e in epochs]
        if len({row.shape for row in rows}) != 1:
            raise LogFileError(f"{where}[{i}]: the mask's width changes between epochs")
        gates[name] = np.stack(rows)
    return TaskTrajectory(task, tuple(points), "epoch", layers, gates)


def _gates(where: str, value) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.ndim not in (1, 2):
        raise LogFileError(f"{where}: {shown(value)} is not a logged mask (1, units) of floats")
    if value.ndim == 2 and value.shape[0] != 1 or not 0 < value.size <= MAX_UNITS:
        raise LogFileError(f"{where}: shape {value.shape} is not a logged mask (1, units)")
    row = value.reshape(-1).astype(np.float32)
    if not np.all(np.isfinite(row)) or row.min() < 0 or row.max() > 1:
        raise LogFileError(f"{where}: gates outside 0..1, not a logged mask")
    return row


def _check_widths(path: Path, trajectories: tuple[TaskTrajectory, ...]) -> None:
    first = trajectories[0]
    for trajectory in trajectories[1:]:
        for layer in first.layers:
            if trajectory.gates[layer].shape[1] != first.gates[layer].shape[1]:
                raise LogFileError(
                    f"{path}: layer {layer} has {first.gates[layer].shape[1]} units in task "
                    f"{first.task}'s masks but {trajectory.gates[layer].shape[1]} in task "
                    f"{trajectory.task}'s"
                )


def _accuracy(path: Path, rows, tasks: list[int]) -> tuple[tuple[float, ...], ...] | None:
    """The lower triangle of ``test_acc``, over the tasks in order; None when absent."""
    if not isinstance(rows, dict) or not all(t in rows for t in tasks):
        return None
    matrix = []
    for row_number, t in enumerate(tasks):
        row = rows[t]
        if not isinstance(row, np.ndarray) or row.ndim != 1 or row.dtype.kind not in "fiu":
            raise LogFileError(f"{path}: test_acc[{t}] is {shown(row)}, not a row of accuracies")
        if row.shape[0] < len(tasks):
            raise LogFileError(
                f"{path}: test_acc[{t}] has {row.shape[0]} columns, not {len(tasks)}"
            )
        values = tuple(float(a) for a in row[: row_number + 1])
        if not all(np.isfinite(values)):
            raise LogFileError(f"{path}: test_acc[{t}] holds a value that is not finite")
        matrix.append(values)
    return tuple(matrix)


def _names(names, tasks: list[int]) -> dict[int, str]:
    if not isinstance(names, dict):
        return {}
    return {t: names[t][:200] for t in tasks if isinstance(names.get(t), str)}


def _best_epochs(losses, tasks: list[int]) -> dict[int, int]:
    """Training keeps the model of the first epoch with the least validation loss."""
    if not isinstance(losses, dict):
        return {}
    best = {}
    for t in tasks:
        values = losses.get(t)
        if isinstance(values, np.ndarray) and values.ndim == 1 and values.size:
            if values.dtype.kind == "f" and np.all(np.isfinite(values)):
                best[t] = int(np.argmin(values))
    return best


def _curves(logs: dict, task: int) -> dict[str, tuple[float, ...]]:
    """The task's per-epoch values that the logs hold as 1-D arrays of finite numbers."""
    curves = {}
    for name in CURVES:
        values = logs.get(name).get(task) if isinstance(logs.get(name), dict) else None
        if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "fiu":
            if np.all(np.isfinite(values)):
                curves[name] = tuple(float(v) for v in values)
    return curves


def _int_keys(mapping: dict, where: str) -> list[int]:
    keys = list(mapping)
    if not all(type(k) is int for k in keys):
        bad = next(k for k in keys if type(k) is not int)
        raise LogFileError(f"{where}: key {shown(bad)} is not an index")
    return sorted(keys)
