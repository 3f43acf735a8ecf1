"""The ``train-demo`` run: one algorithm on a task sequence, a checkpoint after every task,
and the numbers that show what was, or was not, forgotten."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hatinspect.analysis.accuracy import forgetting as forgetting_after
from hatinspect.analysis.capacity import capacity
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.native.format import ALGORITHM_KEY
from hatinspect.training.engine import ALGORITHMS, EpochCallback, TrainConfig, train_sequence
from hatinspect.training.heads import TaskHeads
from hatinspect.training.tasks import (
    DATASETS,
    DIGITS_CLASSES,
    DIGITS_CLASSES_PER_TASK,
    Task,
    make_tasks,
    max_tasks,
)

MLP_WIDTH = 100  # both hidden layers and the feature
# Training settings per backbone. The ResNet keeps one batch norm per task after every
# masked conv: without normalisation its 20 masked layers pass almost no signal.
BACKBONE_SETTINGS = {
    "mlp": {"lr": 0.1, "embedding_init": "N01"},
    "resnet18": {"lr": 0.1, "embedding_init": "N01"},
}
BACKBONES = tuple(BACKBONE_SETTINGS)
# torch's intra-op threads per backbone (None: torch's default, every core). The MLP's
# products are too small to split: one thread is as fast on a quiet machine, and many
# times faster when the cores are busy (threads waiting on each other at every op).
BACKBONE_THREADS = {"mlp": 1, "resnet18": None}
# digits has 270 training images per task, the toy tasks 768: smaller batches give it
# about as many steps (and as many mask annealing cycles) per epoch
DATASET_SETTINGS = {"toy": {"batch_size": 64}, "digits": {"batch_size": 16}}
DEFAULT_EPOCHS = 15
CHECKPOINT_NAME = "after-task-{task}.safetensors"

CheckpointCallback = Callable[[Path], None]


@dataclass(frozen=True)
class DemoConfig:
    algorithm: str = "hat"
    tasks: int = 5
    epochs: int = DEFAULT_EPOCHS
    seed: int = 0
    backbone: str = "mlp"
    dataset: str = "toy"

    def __post_init__(self) -> None:
        for name, value, options in (
            ("algorithm", self.algorithm, ALGORITHMS),
            ("backbone", self.backbone, BACKBONES),
            ("dataset", self.dataset, DATASETS),
        ):
            if value not in options:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")
        limit = max_tasks(self.dataset)
        if self.tasks < 1 or (limit is not None and self.tasks > limit):
            bound = (
                f"1..{limit} for dataset {self.dataset} ({DIGITS_CLASSES} classes,"
                f" {DIGITS_CLASSES_PER_TASK} a task)"
                if limit
                else "at least 1"
            )
            raise ValueError(f"the number of tasks must be {bound}, got {self.tasks}")
        if self.epochs < 0:
            raise ValueError(f"the number of epochs must be 0 or more, got {self.epochs}")

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig(
            algorithm=self.algorithm,
            epochs=self.epochs,
            **BACKBONE_SETTINGS[self.backbone],
            **DATASET_SETTINGS[self.dataset],
        )


@dataclass(frozen=True)
class DemoResult:
    algorithm: str
    backbone: str
    dataset: str
    seed: int
    epochs: int
    # row t: test accuracy on tasks 1..t+1 right after learning task t+1 (lower triangle)
    accuracy: tuple[tuple[float, ...], ...]
    forgetting: tuple[float, ...]  # per task but the last: best earlier accuracy - final
    capacity: tuple[float, ...]  # share of the backbone's parameters protected after each task
    checkpoints: tuple[str, ...]
    seconds: float
    trajectories: tuple[str, ...] = ()  # trajectory-task-<t>.safetensors, when recorded

    @classmethod
    def of_run(
        cls, config: DemoConfig, accuracy, capacity, checkpoints, start: float, trajectories=()
    ):
        """The result of a run of `config` begun at `start` (``time.perf_counter()``)."""
        return cls(
            algorithm=config.algorithm,
            backbone=config.backbone,
            dataset=config.dataset,
            seed=config.seed,
            epochs=config.epochs,
            accuracy=tuple(tuple(row) for row in accuracy),
            forgetting=tuple(forgetting(accuracy)),
            capacity=tuple(capacity),
            checkpoints=tuple(checkpoints),
            seconds=time.perf_counter() - start,
            trajectories=tuple(trajectories),
        )

    @property
    def tasks(self) -> int:
        return len(self.accuracy)

    @property
    def average_accuracy(self) -> float:
        return float(np.mean(self.accuracy[-1]))

    @property
    def mean_forgetting(self) -> float | None:
        """None for a single task: with no earlier task, nothing can be forgotten."""
        return float(np.mean(self.forgetting)) if self.forgetting else None


def run_demo(
    config: DemoConfig,
    out: Path | None = None,
    on_epoch: EpochCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    record_every: int = 0,
    loggers: Sequence = (),
) -> DemoResult:
    """Train ``config.tasks`` tasks; write ``out/after-task-<t>.safetensors`` after each when
    ``out`` is given. The same config gives the same masks and accuracies.

    ``record_every`` N > 0 records every task's gates before training and every N epochs
    (the last always) into ``out/trajectory-task-<t>.safetensors``. ``loggers`` (Lightning's
    ``TensorBoardLogger``, ``CSVLogger``, ...) get the epochs' loss and accuracy and the
    records' scalars and heatmaps, at a step that counts the run's epochs."""
    start = time.perf_counter()
    checkpoints: list[str] = []
    with torch.random.fork_rng(devices=[]), _threads(BACKBONE_THREADS[config.backbone]):
        # seeded here: the caller's RNG and thread count are left as they were
        torch.manual_seed(config.seed)
        tasks = make_tasks(config.dataset, config.tasks, config.seed, config.backbone != "mlp")
        backbone = demo_backbone(config.backbone, tasks[0])
        heads = TaskHeads(backbone.output_dim)

        def save(task_id: int, accuracy: list[list[float]]) -> None:
            if out is not None:
                path = Path(out) / CHECKPOINT_NAME.format(task=task_id)
                save_demo_checkpoint(path, backbone, heads, config, accuracy)
                checkpoints.append(str(path))
                if on_checkpoint is not None:
                    on_checkpoint(path)

        recording = _Recording(config, backbone, out, record_every, loggers, on_epoch)

        def task_end(task_id: int, accuracy: list[list[float]]) -> None:
            save(task_id, accuracy)
            recording.task_done(task_id)

        generator = torch.Generator().manual_seed(config.seed)
        status = "failed"
        try:
            accuracy = train_sequence(
                backbone,
                heads,
                tasks,
                config.train_config,
                generator,
                recording.epoch_done,
                task_end,
                recording.task_started,
            )
            status = "success"
        finally:
            for logger in loggers:  # written out, as a Trainer does at the end of a fit
                logger.finalize(status)
    capacity = capacity_after_each_task(backbone, config.algorithm)
    return DemoResult.of_run(config, accuracy, capacity, checkpoints, start, recording.trajectories)


class _Recording:
    """The demo's epochs and tasks told to the loggers and the trajectory recorder; the
    step of a record or an epoch's metrics is the number of epochs the run has trained."""

    def __init__(self, config, backbone, out, record_every, loggers, on_epoch) -> None:
        from hatinspect.training.trajectory import TrajectoryRecorder

        self.epochs, self.loggers, self.on_epoch = config.epochs, tuple(loggers), on_epoch
        self.recorder = None
        if record_every:
            s_max = config.train_config.s_max
            self.recorder = TrajectoryRecorder(
                backbone, s_max, record_every, "epoch", out, self.loggers
            )

    @property
    def trajectories(self) -> list[str]:
        written = self.recorder.written if self.recorder is not None else {}
        return [str(written[task]) for task in sorted(written)]

    def task_started(self, task_id: int) -> None:
        if self.recorder is not None:
            self.recorder.start(task_id, step=(task_id - 1) * self.epochs)

    def epoch_done(self, report) -> None:
        from hatinspect.training.trajectory import log_metrics

        step = (report.task_id - 1) * self.epochs + report.epoch
        metrics = {"train/loss": report.loss, "train/accuracy": report.accuracy}
        log_metrics(self.loggers, metrics, step)
        if self.recorder is not None and self.recorder.due(report.epoch):
            self.recorder.record(report.epoch - 1, step)  # points count epochs from 0
        if self.on_epoch is not None:
            self.on_epoch(report)

    def task_done(self, task_id: int) -> None:
        if self.recorder is not None:
            self.recorder.finish(self.epochs - 1, step=task_id * self.epochs)


@contextmanager
def _threads(count: int | None):
    """torch's intra-op thread count set to ``count`` (unchanged with None), then restored."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def demo_backbone(name: str, task: Task) -> nn.Module:
    """The demo's backbone ``name`` for the inputs of ``task``."""
    from hatinspect.backbones import HATMaskMLP, HATMaskResNet18

    if name == "mlp":
        features = int(np.prod(task.input_shape))
        return HATMaskMLP(features, [MLP_WIDTH, MLP_WIDTH], MLP_WIDTH, gate="sigmoid")
    if name == "resnet18":
        return HATMaskResNet18(task.input_shape[0], 512, gate="sigmoid", batch_normalisation="task")
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def forgetting(accuracy: Sequence[Sequence[float]]) -> list[float]:
    """For each task but the last: its best accuracy before the final row, minus the final."""
    return forgetting_after(accuracy, len(accuracy) - 1)


def capacity_after_each_task(backbone: nn.Module, algorithm: str) -> list[float]:
    """Share of the weighted layers' parameters the stored masks protect, task by task
    (none for fine-tuning, whose all-ones masks protect nothing)."""
    checkpoint = in_memory_checkpoint(backbone, algorithm=algorithm)
    return [growth.param_usage for growth in capacity(checkpoint).by_task]


def in_memory_checkpoint(backbone: nn.Module, masks=None, algorithm: str = "") -> Checkpoint:
    """The backbone's layers and stored masks (or ``masks``) as the inspection core sees a
    file written by a run of ``algorithm`` (its metadata names it, as a written file's)."""
    from hatinspect.backbones.layers import describe_layers

    masks = {
        task: {name: mask.cpu().numpy().astype(np.uint8) for name, mask in layer_masks.items()}
        for task, layer_masks in (backbone.masks if masks is None else masks).items()
    }
    return Checkpoint(
        path="<memory>",
        backbone=type(backbone).__name__,
        source="hatinspect",
        layers=describe_layers(backbone),
        task_ids=tuple(sorted(masks)),
        masks=masks,
        metadata={ALGORITHM_KEY: algorithm} if algorithm else {},
    )


def save_demo_checkpoint(
    path: Path, backbone: nn.Module, heads: TaskHeads, config: DemoConfig, accuracy
) -> None:
    """Save the backbone and heads after a task, the run's settings and accuracy in the metadata."""
    from hatinspect.torch_io.save import save_checkpoint

    train = config.train_config
    metadata = {
        "algorithm": config.algorithm,
        "dataset": config.dataset,
        "seed": config.seed,
        "epochs": config.epochs,
        "lr": train.lr,
        "s_max": train.s_max,
        "sparsity_factor": train.sparsity_factor,
        "accuracy": accuracy,  # rows so far, as in DemoResult.accuracy
    }
    if config.algorithm == "adahat":
        metadata["alpha"] = train.alpha
    save_checkpoint(path, backbone, heads=heads, metadata=metadata)
