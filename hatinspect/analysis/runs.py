"""Runs: one checkpoint, a folder of ``after-task-<t>.safetensors`` files of one run, or a
CLArena output folder (its saved models and metrics files: ``analysis.clarena_output``).
A run folder may also hold its masks through training (``analysis.trajectory_files``: the
original HAT code's ``.pkz`` logs, whose accuracy matrix stands in where the checkpoints keep
none, or the ``trajectory-task-<t>.safetensors`` files training records).

The ``.pkz`` logs alone (a file, or a folder with no checkpoint) are a run too: a checkpoint
of units built from them (``analysis.logged_run``), whose parameters are unknown.

A folder is read as a trajectory: each file's tasks must be stored, with the same masks,
in every later file (HAT never changes a stored mask), or the folder is refused, naming
the file that contradicts. Torch-free for native files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hatinspect.analysis.accuracy import accuracy_matrix
from hatinspect.analysis.capacity import USAGE_FIELDS, CapacityReport, Shares, capacity
from hatinspect.analysis.clarena_output import (
    ACCURACY,
    OTHER_METRICS,
    MetricsTable,
    accuracy_rows,
    model_files,
    output_files,
    output_folder,
    read_metrics,
)
from hatinspect.analysis.logged_run import logged_checkpoint
from hatinspect.analysis.trajectory_files import (
    HAT_LOGS,
    Trajectories,
    disagreement,
    read_trajectories,
    trajectory_source,
)
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import CheckpointError, HatinspectError
from hatinspect.model.progress import track
from hatinspect.model.records import csv_rows, fields_of, record
from hatinspect.model.result import Result

RUN_FILE = re.compile(r"after-task-(\d+)\.safetensors")
Opener = Callable[[Path], Checkpoint]


@dataclass(frozen=True)
class Run:
    name: str  # the folder's or file's name, to label columns and curves
    path: str
    checkpoints: tuple[Checkpoint, ...]  # in training order; the last holds every task
    # a CLArena output folder's metrics files (accuracy, unlearning metrics), as read
    metrics: tuple[MetricsTable, ...] = ()
    trajectories: Trajectories | None = None  # the run folder's masks through training

    @property
    def final(self) -> Checkpoint:
        return self.checkpoints[-1]


def read_run(path: str | os.PathLike, open_file: Opener | None = None) -> Run:
    """A checkpoint, or a folder's ``after-task-<t>.safetensors`` files checked to agree."""
    if open_file is None:
        from hatinspect.native.reader import open_native as open_file
    path = Path(path)
    if path.name == ACCURACY and path.is_file():  # a CLArena acc.csv: its output folder
        path = output_folder(path)
    name = path.name or str(path)
    found = output_files(path) if path.is_dir() and not _has_run_files(path) else {}
    if found:
        return with_trajectories(_clarena_run(path, name, found, open_file))
    logs = _logs_alone(path)
    if logs is not None:  # the original HAT code's logs, with no checkpoint beside them
        return Run(name, str(path), (logged_checkpoint(logs),), trajectories=logs)
    files = run_files(path) if path.is_dir() else [path]
    checkpoints = tuple(open_file(file) for file in track(files, f"reading {name}", unit="files"))
    check_trajectory(checkpoints)
    return with_trajectories(Run(name=name, path=str(path), checkpoints=checkpoints))


def with_trajectories(run: Run) -> Run:
    """`run` with its folder's file of masks through training, if it has one; its accuracy
    matrix in each checkpoint that keeps none (where it covers the checkpoint's tasks)."""
    folder = Path(run.path)
    source = trajectory_source(folder) if folder.is_dir() else None
    if source is None:
        return run
    from dataclasses import replace

    reader, found = source
    trajectories = reader.read(found)
    problem = disagreement(run.final, trajectories)
    if problem is not None:  # shown as logged, with no accuracy taken from it
        final = replace(run.final, notes=(*run.final.notes, f"{problem}: not this run's logs?"))
        return replace(run, checkpoints=(*run.checkpoints[:-1], final), trajectories=trajectories)
    checkpoints = tuple(_logged_accuracy(c, trajectories) for c in run.checkpoints)
    return replace(run, checkpoints=checkpoints, trajectories=trajectories)


def _logged_accuracy(checkpoint: Checkpoint, logs: Trajectories) -> Checkpoint:
    from dataclasses import replace
    from types import MappingProxyType

    if logs.accuracy is None or accuracy_matrix(checkpoint) is not None:
        return checkpoint
    tasks = checkpoint.task_ids
    if logs.tasks[: len(tasks)] != tasks:
        note = f"{logs.path} does not log the tasks of {checkpoint.path}: no accuracy shown"
        return replace(checkpoint, notes=(*checkpoint.notes, note))
    rows = [list(row) for row in logs.accuracy[: len(tasks)]]
    metadata = {**checkpoint.metadata, "accuracy": json.dumps(rows)}
    return replace(checkpoint, metadata=MappingProxyType(metadata))


def _logs_alone(path: Path) -> Trajectories | None:
    """The `.pkz` logs of the original HAT code given as a file, or as the one file of
    masks through training of a folder that has no checkpoint; None otherwise."""
    from hatinspect.analysis.hat_logs import is_hat_log

    if path.is_dir():
        source = None if _has_run_files(path) else trajectory_source(path)
        if source is None or source[0].name != HAT_LOGS:
            return None
        path = source[1]
    elif not (path.is_file() and is_hat_log(path)):
        return None
    return read_trajectories(path)


def _has_run_files(folder: Path) -> bool:
    return any(RUN_FILE.fullmatch(entry.name) for entry in folder.iterdir())


def _clarena_run(path: Path, name: str, found: dict, open_file: Opener) -> Run:
    """A CLArena output folder: its saved models, with acc.csv's accuracy matrix in the
    metadata of each (where it covers the file's tasks), and its metrics tables."""
    checkpoints = [open_file(file) for file in model_files(found)]
    check_trajectory(checkpoints)
    tables = [read_metrics(found[n]) for n in (ACCURACY, *OTHER_METRICS) if n in found]
    if ACCURACY in found:
        checkpoints = [_with_accuracy(c, tables[0]) for c in checkpoints]
    return Run(name, str(path), tuple(checkpoints), tuple(tables))


def _with_accuracy(checkpoint: Checkpoint, table: MetricsTable) -> Checkpoint:
    from dataclasses import replace
    from types import MappingProxyType

    rows = accuracy_rows(table, checkpoint.task_ids)
    if rows is None:
        note = f"{table.path} does not cover the tasks of {checkpoint.path}: no accuracy shown"
        return replace(checkpoint, notes=(*checkpoint.notes, note))
    metadata = {**checkpoint.metadata, "accuracy": json.dumps(rows)}
    return replace(checkpoint, metadata=MappingProxyType(metadata))


def run_files(folder: Path) -> list[Path]:
    """The folder's after-task files, ordered by task number."""
    numbered = []
    for file in folder.iterdir():
        match = RUN_FILE.fullmatch(file.name)
        if match:
            numbered.append((int(match[1]), file))
    if not numbered:
        raise HatinspectError(
            f"{folder}: is a directory with no after-task-<t>.safetensors files, not a run"
        )
    return [file for _, file in sorted(numbered)]


def check_trajectory(checkpoints: Sequence[Checkpoint]) -> None:
    """CheckpointError naming a file whose network, tasks or masks the run contradicts.

    Where files disagree, most of them (the latest, on a tie) give what the run holds,
    so that the one odd file is the one named.
    """
    _odd_one_out(checkpoints, _network, "its layers differ from those of")
    for t, earlier in enumerate(checkpoints):
        for later in checkpoints[t + 1 :]:
            missing = sorted(set(earlier.task_ids) - set(later.task_ids))
            if missing:
                raise CheckpointError(
                    f"{later.path} lacks task {missing[0]}, which the earlier "
                    f"{earlier.path} stores; the folder's files are not one run"
                )
    layers = checkpoints[-1].layer_names if checkpoints else []
    for task in dict.fromkeys(t for checkpoint in checkpoints for t in checkpoint.task_ids):
        holders = [c for c in checkpoints if task in c.task_ids]
        for layer in layers:
            _odd_one_out(
                holders,
                lambda c, task=task, layer=layer: c.masks[task][layer].tobytes(),
                f"task {task}'s mask of layer {layer} differs from that in",
            )


def _network(checkpoint: Checkpoint) -> tuple:
    return tuple((layer.name, layer.units) for layer in checkpoint.layers)


def _odd_one_out(checkpoints: Sequence[Checkpoint], key, problem: str) -> None:
    groups: dict = {}
    for index, checkpoint in enumerate(checkpoints):
        groups.setdefault(key(checkpoint), []).append(index)
    if len(groups) < 2:
        return
    majority = max(groups.values(), key=lambda indices: (len(indices), indices[-1]))
    odd = next(i for i in range(len(checkpoints)) if i not in majority)
    raise CheckpointError(
        f"{checkpoints[odd].path}: {problem} {checkpoints[majority[-1]].path}; "
        "the folder's files are not one run"
    )


# capacity of a run: the final file's report, and one row a file


@dataclass(frozen=True)
class FileUsage(Shares):
    """Network usage once a file of the run was written."""

    file: str
    tasks: int
    last_task: int | None
    units: int
    units_used: int
    params: int
    params_protected: int


@dataclass(frozen=True)
class RunCapacity(Result):
    """`capacity` of a run folder: the final file's report and the trajectory."""

    MARKS_INFERRED: ClassVar[bool] = True  # its JSON says which preceding layers are inferred
    capacity: CapacityReport
    trajectory: tuple[FileUsage, ...]


def run_capacity(
    run: Run,
    tasks: Sequence[int] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> RunCapacity:
    """The final file's capacity (of the chosen tasks and layers), and one row a file
    (all of its tasks, the chosen layers)."""
    return RunCapacity(
        capacity=capacity(run.final, tasks, include, exclude),
        trajectory=tuple(_file_usage(c, include, exclude) for c in run.checkpoints),
    )


def _file_usage(checkpoint: Checkpoint, include=(), exclude=()) -> FileUsage:
    total = capacity(checkpoint, (), include, exclude).total
    return FileUsage(
        file=checkpoint.path,
        tasks=len(checkpoint.task_ids),
        last_task=checkpoint.task_ids[-1] if checkpoint.task_ids else None,
        units=total.units,
        units_used=total.units_used,
        params=total.params,
        params_protected=total.params_protected,
    )


# accuracy from the metadata (train-demo writes the matrix so far under "accuracy")


# machine output (JSON record, CSV rows)

FILE_KEYS = ["file", "tasks", "last_task", *USAGE_FIELDS]


@record.register
def _(result: RunCapacity) -> dict:
    return {
        **record(result.capacity),
        "trajectory": [fields_of(step, FILE_KEYS) for step in result.trajectory],
    }


@csv_rows.register
def _(result: RunCapacity, by_task: bool = False) -> tuple[list[str], list[list]]:
    return csv_rows(result.capacity, by_task=by_task)
