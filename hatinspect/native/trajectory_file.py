"""Trajectory files: one task's gates at each recorded epoch or step, as ``train-demo
--record-every N`` and the ``HATMaskTrajectory`` callback write them beside the
checkpoints (``trajectory-task-<t>.safetensors``, ``docs/checkpoint-format.md``).

Pure numpy: ``read_trajectory`` turns a file into a ``model.trajectory.TaskTrajectory``,
``find_trajectories`` lists the files of a run (``read_trajectories`` reads them all),
``is_trajectory_file`` tells one by its header, ``write_trajectory`` writes one atomically.
Every problem with a file is one ``CheckpointError`` naming it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import save_file

from hatinspect.model.errors import CheckpointError, reason, shown
from hatinspect.model.paths import checkpoint_path
from hatinspect.model.progress import writing
from hatinspect.model.trajectory import BEFORE_TRAINING, TaskTrajectory
from hatinspect.native import format as fmt
from hatinspect.native.atomic import write_atomically
from hatinspect.native.reader import existing_file, open_safetensors, reading

TRAJECTORY_VERSION = 1  # the newest version this reader reads
FILE_NAME = "trajectory-task-{task}.safetensors"
FILE_PATTERN = re.compile(r"trajectory-task-(\d+)\.safetensors")
GATE_PREFIX = "gate."  # + "<layer name>": (records, units) float32, the soft mask
GATE_DTYPES = ("F32", "F16")  # F32 is written
UNITS = ("epoch", "step")
MAX_FILE_BYTES = 2**30  # what a reader holds in memory at once: the whole file's gates

# __metadata__ keys (strings; structured values are JSON)
VERSION_KEY = fmt.TRAJECTORY_KEY  # TRAJECTORY_VERSION as a decimal string
TASK_KEY = "hatinspect.task"  # the task's id
UNIT_KEY = "hatinspect.unit"  # what a point counts: "epoch" or "step"
POINTS_KEY = "hatinspect.points"  # JSON list of ints, ascending; row i of a gate tensor
LAYERS_KEY = "hatinspect.layers"  # JSON list of layer names in network order
S_MAX_KEY = "hatinspect.s_max"  # JSON number: the scale of the recorded gates
REQUIRED_KEYS = (VERSION_KEY, TASK_KEY, UNIT_KEY, POINTS_KEY, LAYERS_KEY, S_MAX_KEY)


def file_name(task: int) -> str:
    return FILE_NAME.format(task=task)


def read_trajectory(path: str | os.PathLike) -> TaskTrajectory:
    """The task's recorded gates in ``path``, every one checked (shape, dtype, finite and
    in 0..1); ``CheckpointError`` in one line for a file that is not a trajectory."""
    path = existing_file(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(
            f"{path}: {size:,} bytes, over the {MAX_FILE_BYTES:,} a trajectory file may hold"
        )
    with reading(path), open_safetensors(path) as f:
        try:
            task, unit, points, layers, _ = decode_metadata(f.metadata())
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        expected = {GATE_PREFIX + layer for layer in layers}
        stray = sorted(set(f.keys()) - expected)
        if stray:
            raise CheckpointError(f"{path}: tensor {shown(stray[0])} belongs to no listed layer")
        gates = {layer: _gates(path, f, layer, len(points)) for layer in layers}
    return TaskTrajectory(task=task, points=points, unit=unit, layers=layers, gates=gates)


def is_trajectory_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file whose metadata says it is a trajectory file
    (its header alone is read; a file that cannot be read is none)."""
    try:
        with reading(path), open_safetensors(Path(path)) as f:
            return VERSION_KEY in (f.metadata() or {})
    except CheckpointError:
        return False


def read_trajectories(path: str | os.PathLike) -> tuple[TaskTrajectory, ...]:
    """Every task's trajectory beside ``path`` (``find_trajectories``), by task; a file
    whose name and content name other tasks is refused."""
    trajectories = []
    for file in find_trajectories(path):
        trajectory = read_trajectory(file)
        named = int(FILE_PATTERN.fullmatch(file.name)[1])
        if trajectory.task != named:
            raise CheckpointError(f"{file}: holds task {trajectory.task}, its name says {named}")
        trajectories.append(trajectory)
    return tuple(trajectories)


def find_trajectories(path: str | os.PathLike) -> tuple[Path, ...]:
    """The ``trajectory-task-<t>.safetensors`` files of a run, by task: those in a folder,
    beside a checkpoint, or a trajectory file itself; ``CheckpointError`` when none."""
    path = checkpoint_path(path)
    with reading(path):
        if FILE_PATTERN.fullmatch(path.name) and path.is_file():
            return (path,)
        if not path.exists():
            raise CheckpointError(f"{path}: no such file or folder")
        folder = path if path.is_dir() else path.parent
        numbered = sorted(
            (int(match[1]), entry)
            for entry in folder.iterdir()
            if (match := FILE_PATTERN.fullmatch(entry.name)) and entry.is_file()
        )
    if not numbered:
        raise CheckpointError(
            f"{folder}: no trajectory-task-<t>.safetensors files; record them with "
            "train-demo --record-every N or hatinspect.lightning.HATMaskTrajectory"
        )
    return tuple(entry for _, entry in numbered)


def write_trajectory(path: str | os.PathLike, trajectory: TaskTrajectory, s_max: float) -> Path:
    """Write ``trajectory`` to ``path`` (temporary file, read back, rename)."""
    path = Path(path)
    tensors = {
        GATE_PREFIX + layer: np.ascontiguousarray(trajectory.gates[layer], dtype=np.float32)
        for layer in trajectory.layers
    }
    metadata = encode_metadata(trajectory, s_max)

    def verify(temporary: str) -> None:
        back = read_trajectory(temporary)
        if back.points != trajectory.points or any(
            not np.array_equal(back.gates[layer], tensors[GATE_PREFIX + layer])
            for layer in trajectory.layers
        ):
            raise CheckpointError(f"{temporary}: reads back other gates than were written")

    def write(temporary: str) -> None:
        with writing(temporary, f"writing {path.name}"):
            save_file(tensors, temporary, metadata)

    write_atomically(path, write, verify)
    return path


def encode_metadata(trajectory: TaskTrajectory, s_max: float) -> dict[str, str]:
    return {
        fmt.FORMAT_KEY: fmt.FORMAT_VALUE,
        VERSION_KEY: str(TRAJECTORY_VERSION),
        TASK_KEY: str(trajectory.task),
        UNIT_KEY: trajectory.unit,
        POINTS_KEY: json.dumps(list(trajectory.points)),
        LAYERS_KEY: json.dumps(list(trajectory.layers)),
        S_MAX_KEY: json.dumps(float(s_max)),
    }


def decode_metadata(metadata: Mapping[str, str] | None) -> tuple:
    """(task, unit, points, layers, s_max) as ``encode_metadata`` stores them; a
    ``ValueError`` saying what is wrong otherwise."""
    metadata = metadata or {}
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"not a trajectory file (no {missing[0]} in its metadata)")
    if metadata[VERSION_KEY] != str(TRAJECTORY_VERSION):
        raise ValueError(
            f"trajectory format version {shown(metadata[VERSION_KEY])}; this hatinspect"
            f" reads version {TRAJECTORY_VERSION}"
        )
    task = fmt.parse_task_id(metadata[TASK_KEY])
    if task is None:
        raise ValueError(f"task {shown(metadata[TASK_KEY])} is not a task id")
    unit = metadata[UNIT_KEY]
    if unit not in UNITS:
        raise ValueError(f"unit {shown(unit)} is neither {' nor '.join(UNITS)}")
    return task, unit, _points(metadata), _layers(metadata), _s_max(metadata)


def _json(metadata: Mapping[str, str], key: str):
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{key} is not JSON ({reason(exc, 80)})") from None


def _points(metadata: Mapping[str, str]) -> tuple[int, ...]:
    points = _json(metadata, POINTS_KEY)
    if not isinstance(points, list) or not points:
        raise ValueError(f"{POINTS_KEY} must be a non-empty list, got {shown(points)}")
    for point in points:
        if type(point) is not int or not BEFORE_TRAINING <= point <= fmt.MAX_TASK_ID:
            raise ValueError(
                f"record point {shown(point)} is not an integer in"
                f" {BEFORE_TRAINING}..{fmt.MAX_TASK_ID}"
            )
    if points != sorted(set(points)):
        raise ValueError("record points must ascend without repeats")
    return tuple(points)


def _layers(metadata: Mapping[str, str]) -> tuple[str, ...]:
    layers = _json(metadata, LAYERS_KEY)
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{LAYERS_KEY} must be a non-empty list, got {shown(layers)}")
    for layer in layers:
        if not fmt.text(layer):
            raise ValueError(f"layer name {shown(layer)} is not a non-empty string")
    if len(set(layers)) != len(layers):
        raise ValueError("a layer is listed twice")
    return tuple(layers)


def _s_max(metadata: Mapping[str, str]) -> float:
    s_max = _json(metadata, S_MAX_KEY)
    if type(s_max) not in (int, float) or not math.isfinite(s_max) or s_max <= 0:
        raise ValueError(f"{S_MAX_KEY} must be a positive number, got {shown(s_max)}")
    return float(s_max)


def _gates(path: Path, f, layer: str, records: int) -> np.ndarray:
    """The layer's (records, units) gates as read-only float32, checked."""
    key = GATE_PREFIX + layer
    owner = f"{path}: layer {shown(layer)}"
    try:
        view = f.get_slice(key)
    except SafetensorError:
        raise CheckpointError(f"{owner}: no tensor {shown(key)}") from None
    shape, dtype = tuple(view.get_shape()), view.get_dtype()
    if dtype not in GATE_DTYPES:
        raise CheckpointError(
            f"{owner}: gates of dtype {dtype}, expected one of {', '.join(GATE_DTYPES)}"
        )
    if len(shape) != 2 or shape[0] != records or shape[1] < 1:
        raise CheckpointError(f"{owner}: gates of shape {shape}, expected ({records}, units)")
    gates = np.asarray(f.get_tensor(key), dtype=np.float32)
    if not np.isfinite(gates).all():
        raise CheckpointError(f"{owner}: gates hold NaN or infinite values")
    if gates.min() < 0 or gates.max() > 1:
        raise CheckpointError(f"{owner}: gates outside 0..1 (a gate is a sigmoid's value)")
    gates.flags.writeable = False
    return gates
