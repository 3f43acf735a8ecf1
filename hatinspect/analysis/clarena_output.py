"""A CLArena output folder as a run: its saved models and its metrics files.

CLArena's metric callbacks write CSV files, each rewritten in full after every task with
the widest header so far, so earlier rows are shorter (ragged):

- ``acc.csv``: ``after_training_task, average_accuracy, test_on_task_1..t`` (fractions);
  ``loss_cls.csv`` alike with losses;
- the unlearning metrics ``ag.csv`` (accuracy gain), ``dd.csv`` (distribution distance),
  and 1.1.0's ``ad.csv`` (accuracy difference): one ``average_...`` column and
  ``unlearning_test_on_task_<k>`` columns, one row per unlearning step.

The models are ``cl_model.pth`` (the last) or ``model_after_task_<t>.pth`` (one a task),
in the folder or a folder below it. Torch-free: opening the models is the caller's.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from hatinspect.model.errors import HatinspectError, shown

ACCURACY = "acc.csv"
OTHER_METRICS = ("loss_cls.csv", "ag.csv", "dd.csv", "ad.csv")
MODEL_AFTER = re.compile(r"model_after_task_(\d+)\.pth")
FINAL_MODEL = "cl_model.pth"
TESTED = re.compile(r"(?:unlearning_)?test_on_task_(\d+)")
MAX_CSV_BYTES = 16 * 2**20  # thousands of tasks' rows; a metrics file is kilobytes
MAX_DEPTH = 2  # the folders below the output folder searched (results/, saved_models/)


class MetricsFileError(HatinspectError, ValueError):
    """A metrics file that is not what CLArena writes."""


@dataclass(frozen=True)
class MetricsTable:
    """One CSV's rows: per row, its label (the task after which it was written, or the
    unlearning step's number), its average column, and the value per tested task."""

    path: str
    average: str  # the average column's name
    rows: tuple[tuple[int, float, dict[int, float]], ...]

    @property
    def tested(self) -> tuple[int, ...]:
        return tuple(sorted({task for _, _, values in self.rows for task in values}))


def output_files(folder: Path) -> dict[str, Path]:
    """The metrics files and models of a CLArena output folder, by name; {} when the
    folder has neither an acc.csv nor a saved model."""
    found: dict[str, Path] = {}
    for path in _walk(folder, MAX_DEPTH):
        name = path.name
        if name in (ACCURACY, *OTHER_METRICS, FINAL_MODEL) or MODEL_AFTER.fullmatch(name):
            found.setdefault(name, path)
    return found if ACCURACY in found or FINAL_MODEL in found or _after_files(found) else {}


def output_folder(metrics_file: Path) -> Path:
    """The output folder of a metrics file: the nearest folder above it (two at most)
    that holds a saved model."""
    folder = metrics_file.parent
    for candidate in (folder, folder.parent, folder.parent.parent)[: MAX_DEPTH + 1]:
        found = output_files(candidate)
        if _after_files(found) or FINAL_MODEL in found:
            return candidate
    raise HatinspectError(
        f"{metrics_file}: no saved model ({FINAL_MODEL} or model_after_task_<t>.pth) beside"
        " it or in the folders above it"
    )


def model_files(found: dict[str, Path]) -> list[Path]:
    """The run's models in training order: every ``model_after_task_<t>.pth``, or the
    final ``cl_model.pth`` alone."""
    after = _after_files(found)
    if after:
        return [path for _, path in sorted(after)]
    if FINAL_MODEL in found:
        return [found[FINAL_MODEL]]
    raise HatinspectError(f"no saved model ({FINAL_MODEL} or model_after_task_<t>.pth) found")


def read_metrics(path: Path) -> MetricsTable:
    """A CLArena metrics CSV, checked: one average column, ``test_on_task_<k>`` columns,
    finite numbers; MetricsFileError (one line) otherwise."""
    try:
        lines = list(csv.reader(io.StringIO(_text(path), newline="")))
    except csv.Error as exc:
        raise MetricsFileError(f"{path}: not CSV as CLArena writes it ({exc})") from None
    header, reader = (lines[0], lines[1:]) if lines else (None, [])
    if not header:
        raise MetricsFileError(f"{path}: empty, not a CLArena metrics file")
    label = "after_training_task" if header[0] == "after_training_task" else None
    averages = [i for i, name in enumerate(header) if name.startswith("average")]
    tested = {i: int(m[1]) for i, name in enumerate(header) if (m := TESTED.fullmatch(name))}
    if len(averages) != 1 or not tested or len(tested) + len(averages) + bool(label) != len(header):
        raise MetricsFileError(
            f"{path}: header {shown(','.join(header)[:120])} is not that of a CLArena metrics file"
        )
    rows = []
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) > len(header):
            raise MetricsFileError(f"{path}: row {number} has more fields than the header")
        cells = dict(enumerate(row))
        step = _task(path, number, cells.get(0)) if label else number
        average = _number(path, number, cells.get(averages[0]))
        values = {task: _number(path, number, cells[i]) for i, task in tested.items()
                  if cells.get(i, "") != ""}  # fmt: skip
        rows.append((step, average, values))
    return MetricsTable(str(path), header[averages[0]], tuple(rows))


def accuracy_rows(table: MetricsTable, tasks: tuple[int, ...]) -> list[list[float]] | None:
    """The lower-triangular accuracy matrix of acc.csv over the stored `tasks` (row t:
    after learning tasks[t], on tasks[0..t]); None when the file does not cover them."""
    by_step = {step: values for step, _, values in table.rows}
    matrix = []
    for t, task in enumerate(tasks):
        values = by_step.get(task)
        if values is None or any(earlier not in values for earlier in tasks[: t + 1]):
            return None
        matrix.append([values[earlier] for earlier in tasks[: t + 1]])
    return matrix


def _after_files(found: dict[str, Path]) -> list[tuple[int, Path]]:
    return [(int(m[1]), path) for name, path in found.items() if (m := MODEL_AFTER.fullmatch(name))]


def _walk(folder: Path, depth: int):
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise HatinspectError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    for entry in entries:
        if entry.is_file():
            yield entry
        elif entry.is_dir() and not entry.is_symlink() and depth > 0:
            yield from _walk(entry, depth - 1)


def _text(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise MetricsFileError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_CSV_BYTES:
        raise MetricsFileError(f"{path}: over {MAX_CSV_BYTES // 2**20} MiB, not a metrics file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MetricsFileError(f"{path}: not UTF-8 text, not a CLArena metrics file") from None


def _task(path: Path, number: int, cell) -> int:
    if cell is None or not cell.isdigit() or len(cell) > 9:
        raise MetricsFileError(f"{path}: row {number}: {shown(cell)} is not a task id")
    return int(cell)


def _number(path: Path, number: int, cell) -> float:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        raise MetricsFileError(f"{path}: row {number}: {shown(cell)} is not a number") from None
    if not math.isfinite(value):
        raise MetricsFileError(f"{path}: row {number}: {shown(cell)} is not a finite number")
    return value
