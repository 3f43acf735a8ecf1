"""Files that hold masks followed through training, and the one way to open any of them.

Each kind of file is a reader: a test of the file (``detects(path)``) and a function that
reads it (``read(path) -> Trajectories``); a new kind is one more entry in ``READERS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hatinspect.model.errors import HatinspectError
from hatinspect.model.trajectory import TaskTrajectory


@dataclass(frozen=True)
class Trajectories:
    """What a file says of its tasks' masks through training."""

    path: str
    trajectories: tuple[TaskTrajectory, ...]
    kept: dict[int, int] = field(default_factory=dict)  # the point whose model was kept
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reader:
    name: str
    detects: Callable[[Path], bool]
    read: Callable[[Path], Trajectories]


def _hat_logs(path: Path) -> Trajectories:
    from hatinspect.analysis.hat_logs import read_hat_logs

    logs = read_hat_logs(path)
    return Trajectories(logs.path, logs.trajectories, dict(logs.best_epochs), logs.notes)


def _is_hat_log(path: Path) -> bool:
    from hatinspect.analysis.hat_logs import is_hat_log

    return is_hat_log(path)


READERS: list[Reader] = [Reader("original-hat-logs", _is_hat_log, _hat_logs)]


def read_trajectories(path: str | os.PathLike) -> Trajectories:
    """The trajectories of the first reader that knows the file; HatinspectError else."""
    path = Path(path)
    if not path.is_file():
        raise HatinspectError(f"{path}: no such file")
    for reader in READERS:
        if reader.detects(path):
            return reader.read(path)
    raise HatinspectError(
        f"{path}: holds no masks through training (known: the original HAT code's .pkz logs)"
    )
