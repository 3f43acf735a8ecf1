"""``HATMaskTrajectory``: a Lightning callback that records every task's gates as it trains.

Before a task's first batch, then every ``every_n_epochs`` epochs (or ``every_n_steps``
optimizer steps) and once more when its training ends, the gates
``sigmoid(s_max * embedding)`` of every layer are recorded; at the task's end they are
written to ``dirpath/trajectory-task-<t>.safetensors`` (``docs/checkpoint-format.md``).
Each record's per-layer scalars (active share, mean gate, units switched on and off since
the last record) go to every logger of the trainer at its ``global_step``; at a task's
end its heatmaps go to the loggers that take images (TensorBoard's; the CSV logger gets
scalars only).

A record's point is the epoch just completed, counted from 0 (Lightning's
``current_epoch``), or the optimizer steps taken (``global_step``); the record before
training is ``-1``. A fit may train one task (a ``Trainer`` per task) or span several:
a record of another task than the one being recorded ends that one's file first.

Under several processes the gates are the same on every rank (the embeddings are
trained as one): global rank zero alone records, writes and logs. A Lightning ``.ckpt``
holds the records of the task in training, so that a fit resumed from it (``ckpt_path=``)
writes the task's whole trajectory.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import Callback

from hatinspect.lightning.checkpoint import fit_task, hat_backbone
from hatinspect.lightning.progress import writes_shown
from hatinspect.model.errors import CheckpointError
from hatinspect.model.trajectory import BEFORE_TRAINING
from hatinspect.training.trajectory import TrajectoryRecorder


class HATMaskTrajectory(Callback):
    """Record each task's gates every ``every_n_epochs`` epochs (1 by default) or every
    ``every_n_steps`` steps into ``dirpath``, logging them to the trainer's loggers
    (``log=False``: files only). ``s_max``: the module's own (its ``s_max`` attribute or
    hyper-parameter) unless given. A task's file that exists already stops the run unless
    ``overwrite=True``. ``progress``: a bar on stderr of each file's writing once it has
    lasted half a second; None: when stderr is a terminal, as Lightning draws its own;
    False: never; True: always (off a terminal, one plain line per file once written)."""

    def __init__(
        self,
        dirpath: str | os.PathLike,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        s_max: float | None = None,
        log: bool = True,
        overwrite: bool = False,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        if every_n_epochs is not None and every_n_steps is not None:
            raise ValueError("give every_n_epochs or every_n_steps, not both")
        self.unit = "step" if every_n_steps is not None else "epoch"
        self.every = every_n_steps if every_n_steps is not None else every_n_epochs
        self.every = 1 if self.every is None else self.every
        if self.every < 1:
            raise ValueError(f"record every 1 or more {self.unit}s, got {self.every}")
        self.dirpath = Path(dirpath)
        self.s_max, self.log, self.overwrite = s_max, log, overwrite
        self.progress = progress
        self.recorder: TrajectoryRecorder | None = None
        self.paths: dict[int, Path] = {}  # task id -> its trajectory file
        self._resumed: dict | None = None  # a .ckpt's recording, taken up at train start

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=str(self.dirpath), unit=self.unit)

    def state_dict(self) -> dict:
        recording = self.recorder.state() if self.recorder is not None else None
        paths = {task: str(path) for task, path in self.paths.items()}
        return {"paths": paths, "recording": recording}

    def load_state_dict(self, state_dict: dict) -> None:
        self.paths = {int(task): Path(path) for task, path in state_dict["paths"].items()}
        self._resumed = state_dict.get("recording")

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            hat_backbone(pl_module)
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.recorder = TrajectoryRecorder(
                hat_backbone(pl_module),
                module_s_max(pl_module) if self.s_max is None else self.s_max,
                self.every,
                self.unit,
                self.dirpath,
                trainer.loggers if self.log else (),
            )
            # a fit resumed from a .ckpt goes on with the task's records taken before it
            self.recorder.restore(self._resumed)
        self._resumed = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        task = training_task(pl_module)
        if recorder.task != task:
            self._finish(trainer)  # a fit that spans tasks has moved on to the next
            path = recorder.path(task)
            if path.exists() and not self.overwrite and task not in self.paths:
                raise CheckpointError(
                    f"{path} exists (an earlier run's?): HATMaskTrajectory(..., "
                    "overwrite=True) replaces it, or use another dirpath"
                )
            recorder.start(task, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.recorder is not None and self.unit == "step":
            if trainer.global_step and self.recorder.due(trainer.global_step):
                self.recorder.record(trainer.global_step, trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.recorder is not None and self.unit == "epoch":
            epoch = trainer.current_epoch  # the epoch just trained, from 0
            if self.recorder.due(epoch + 1):
                self.recorder.record(epoch, trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        self._finish(trainer)

    def _finish(self, trainer) -> None:
        recorder = self.recorder
        if recorder is None or recorder.task is None:
            return
        task = recorder.task
        with writes_shown(self.progress, trainer):
            recorder.finish(self._last_point(trainer), trainer.global_step)
        self.paths[task] = recorder.written[task]

    def _last_point(self, trainer) -> int:
        if self.unit == "step":
            return trainer.global_step
        # at a batch's start or training's end, current_epoch counts the epochs completed
        return max(trainer.current_epoch - 1, BEFORE_TRAINING)


def training_task(pl_module) -> int:
    """The task in training: the module's ``task_id``, else its backbone's, else 0."""
    task = fit_task(pl_module)
    if task is None:
        task = fit_task(hat_backbone(pl_module))
    return 0 if task is None else task


def module_s_max(pl_module) -> float:
    """The module's ``s_max``: an attribute (CLArena's), a hyper-parameter (HATModule's)."""
    for value in (getattr(pl_module, "s_max", None), getattr(pl_module, "hparams", {})):
        if isinstance(value, int | float):
            return float(value)
        if hasattr(value, "get") and isinstance(value.get("s_max"), int | float):
            return float(value["s_max"])
    raise TypeError(
        f"HATMaskTrajectory needs s_max: {type(pl_module).__name__} has no s_max attribute "
        "or hyper-parameter; pass HATMaskTrajectory(..., s_max=...)"
    )
