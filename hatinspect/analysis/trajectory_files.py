"""Files that hold masks followed through training, and the one way to open any of them.

Each kind of file is a ``Reader`` (a test of a file, what of a run folder it reads, the
reading into ``Trajectories``); a new kind is one more entry in ``READERS``: the original
HAT code's ``.pkz`` logs (one file a run), and the ``trajectory-task-<t>.safetensors``
files that training records (one file a task, so their unit is the folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import CheckpointError, HatinspectError
from hatinspect.model.trajectory import TaskTrajectory


@dataclass(frozen=True)
class Trajectories:
    """What a file says of its tasks' masks through training."""

    path: str
    trajectories: tuple[TaskTrajectory, ...]
    kept: dict[int, int] = field(default_factory=dict)  # the point whose model was kept
    notes: tuple[str, ...] = ()
    # row t: test accuracy on tasks[0..t] after learning tasks[t], where the file logs it
    accuracy: tuple[tuple[float, ...], ...] | None = None
    # by task: losses, accuracies... after each epoch, where the file logs them
    curves: dict[int, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    kept_by: str = "the least validation loss"  # how training chose the kept points

    @property
    def tasks(self) -> tuple[int, ...]:
        return tuple(trajectory.task for trajectory in self.trajectories)


@dataclass(frozen=True)
class Reader:
    """One kind of file: whether a file given as is is one (``detects``), what of a run
    folder it reads (``found_in``: its one file, or the folder itself for a kind kept as a
    file a task; None where the folder has none), and the reading (``read``)."""

    name: str
    detects: Callable[[Path], bool]
    found_in: Callable[[Path], Path | None]
    read: Callable[[Path], Trajectories]


def _hat_logs(path: Path) -> Trajectories:
    from hatinspect.analysis.hat_logs import read_hat_logs

    logs = read_hat_logs(path)
    curves = {task: dict(by_name) for task, by_name in logs.curves.items()}
    return Trajectories(
        logs.path, logs.trajectories, dict(logs.best_epochs), logs.notes, logs.accuracy, curves
    )


def _is_hat_log(path: Path) -> bool:
    from hatinspect.analysis.hat_logs import is_hat_log

    return is_hat_log(path)


def _hat_log_in(folder: Path) -> Path | None:
    """The folder's one ``.pkz`` file; HatinspectError when it has several."""
    found = sorted(f for f in _entries(folder) if f.suffix == ".pkz" and f.is_file())
    if len(found) > 1:
        names = ", ".join(f.name for f in found[:4])
        raise HatinspectError(
            f"{folder}: holds {len(found)} files of masks through training ({names}); "
            "a run folder holds one"
        )
    return found[0] if found else None


RECORDED_NOTE = (
    "recorded gates only: no per-epoch losses or accuracies "
    "(the run's loggers keep those, e.g. train-demo --logger csv)"
)


def _recorded(path: Path) -> Trajectories:
    """Every ``trajectory-task-<t>.safetensors`` of the folder (of such a file: its
    folder's); a trajectory file of another name alone."""
    from hatinspect.native import trajectory_file

    if path.is_file() and not trajectory_file.FILE_PATTERN.fullmatch(path.name):
        where, trajectories = path, (trajectory_file.read_trajectory(path),)
    else:
        where = path if path.is_dir() else path.parent
        trajectories = trajectory_file.read_trajectories(where)
    units = sorted({t.unit for t in trajectories})
    if len(units) > 1:
        raise HatinspectError(
            f"{where}: trajectory files by {' and by '.join(units)}; a run records by one"
        )
    kept = {t.task: t.points[-1] for t in trajectories}  # the last record: the checkpoint's
    return Trajectories(str(where), trajectories, kept, (RECORDED_NOTE,), kept_by="the last record")


def _is_recorded(path: Path) -> bool:
    from hatinspect.native.trajectory_file import is_trajectory_file

    return is_trajectory_file(path)


def _recorded_in(folder: Path) -> Path | None:
    """The folder itself where it holds a ``trajectory-task-<t>.safetensors`` file."""
    from hatinspect.native.trajectory_file import FILE_PATTERN

    found = any(FILE_PATTERN.fullmatch(f.name) and f.is_file() for f in _entries(folder))
    return folder if found else None


HAT_LOGS = "original-hat-logs"  # the reader's name, and the source of a run of logs alone
READERS: list[Reader] = [
    Reader(HAT_LOGS, _is_hat_log, _hat_log_in, _hat_logs),
    Reader("recorded trajectory files", _is_recorded, _recorded_in, _recorded),
]
KNOWN = "the original HAT code's .pkz logs, trajectory-task-<t>.safetensors files"


def read_trajectories(path: str | os.PathLike) -> Trajectories:
    """The trajectories of the first reader that knows the file, of a run folder's
    (`trajectory_source`), or of a checkpoint's folder; HatinspectError else."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, f"{path}: a folder without a file of masks through training")
    if not path.is_file():
        raise HatinspectError(f"{path}: no such file")
    for reader in READERS:
        if reader.detects(path):
            return reader.read(path)
    if _is_checkpoint(path):
        return _read_folder(
            path.parent,
            f"{path}: a checkpoint without a file of masks through training beside it "
            "(record them with train-demo --record-every N)",
        )
    raise HatinspectError(f"{path}: holds no masks through training (known: {KNOWN})")


def _read_folder(folder: Path, none: str) -> Trajectories:
    source = trajectory_source(folder)
    if source is None:
        raise HatinspectError(none)
    reader, found = source
    return reader.read(found)


def _is_checkpoint(path: Path) -> bool:
    """Whether the file's first bytes are a safetensors or PyTorch file's."""
    from hatinspect.native.reader import sniff

    try:
        return sniff(path) in ("safetensors", "torch")
    except (CheckpointError, OSError):
        return False


def trajectory_source(folder: Path) -> tuple[Reader, Path] | None:
    """The reader of a run folder's masks through training and what it reads, or None;
    HatinspectError when the folder holds them in more than one form."""
    found = [(reader, path) for reader in READERS if (path := reader.found_in(folder))]
    if len(found) > 1:
        kinds = " and ".join(reader.name for reader, _ in found)
        raise HatinspectError(f"{folder}: holds masks through training as {kinds}; keep one")
    return found[0] if found else None


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise HatinspectError(f"{folder}: cannot list the folder ({exc.strerror})") from None


def disagreement(checkpoint: Checkpoint, found: Trajectories) -> str | None:
    """Why `found` is not the training of `checkpoint`'s masks, or None: its layers differ,
    or a task's mask at the point whose model training kept is not the stored one."""
    logged = found.trajectories[0].layers if found.trajectories else ()
    if set(logged) != set(checkpoint.layer_names):
        return (
            f"{found.path}'s layers ({', '.join(logged[:6])}) are not those of "
            f"{checkpoint.path} ({', '.join(checkpoint.layer_names[:6])})"
        )
    for trajectory in found.trajectories:
        kept = found.kept.get(trajectory.task)
        if trajectory.task not in checkpoint.task_ids or kept not in trajectory.points:
            continue
        row = trajectory.points.index(kept)
        for layer in logged:
            stored = checkpoint.masks[trajectory.task][layer].astype(bool)
            if (
                stored.shape != trajectory.binary(layer)[row].shape
                or (stored != trajectory.binary(layer)[row]).any()
            ):
                return (
                    f"task {trajectory.task}'s mask of layer {layer} at {trajectory.unit} "
                    f"{kept} (the model training kept) in {found.path} differs from that in "
                    f"{checkpoint.path}"
                )
    return None
