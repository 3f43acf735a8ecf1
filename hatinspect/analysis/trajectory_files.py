"""Files that hold masks followed through training, and the one way to open any of them.

Each kind of file is a reader: a test of the file (``detects(path)``), a function that
reads it (``read(path) -> Trajectories``) and the file names it has in a run folder
(``suffixes``); a new kind is one more entry in ``READERS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import HatinspectError
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

    @property
    def tasks(self) -> tuple[int, ...]:
        return tuple(trajectory.task for trajectory in self.trajectories)


@dataclass(frozen=True)
class Reader:
    name: str
    detects: Callable[[Path], bool]
    read: Callable[[Path], Trajectories]
    suffixes: tuple[str, ...]  # how its files end in a run folder


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


READERS: list[Reader] = [Reader("original-hat-logs", _is_hat_log, _hat_logs, (".pkz",))]


def read_trajectories(path: str | os.PathLike) -> Trajectories:
    """The trajectories of the first reader that knows the file (or a run folder's one
    file of them); HatinspectError else."""
    path = Path(path)
    if path.is_dir():
        found = trajectory_file(path)
        if found is None:
            raise HatinspectError(f"{path}: a folder without a file of masks through training")
        path = found
    if not path.is_file():
        raise HatinspectError(f"{path}: no such file")
    for reader in READERS:
        if reader.detects(path):
            return reader.read(path)
    raise HatinspectError(
        f"{path}: holds no masks through training (known: the original HAT code's .pkz logs)"
    )


def trajectory_file(folder: Path) -> Path | None:
    """The one file of trajectories in a run folder (not below it), None when it has none;
    HatinspectError when it has several, which the run cannot tell apart."""
    suffixes = tuple(suffix for reader in READERS for suffix in reader.suffixes)
    try:
        found = sorted(f for f in folder.iterdir() if f.name.endswith(suffixes) and f.is_file())
    except OSError as exc:
        raise HatinspectError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    if len(found) > 1:
        names = ", ".join(f.name for f in found[:4])
        raise HatinspectError(
            f"{folder}: holds {len(found)} files of masks through training ({names}); "
            "a run folder holds one"
        )
    return found[0] if found else None


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
