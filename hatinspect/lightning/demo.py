"""The ``train-demo`` run on Lightning: ``HATModule``, one ``Trainer.fit`` per task,
``HATMaskCheckpoint`` writing the files, on one process or several (``devices``,
``strategy``, ``num_nodes``: Lightning's own)."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, TensorDataset

from hatinspect.lightning.checkpoint import HATMaskCheckpoint
from hatinspect.lightning.module import HATModule
from hatinspect.lightning.trajectory import HATMaskTrajectory
from hatinspect.training.demo import (
    CHECKPOINT_NAME,
    DemoConfig,
    DemoResult,
    demo_backbone,
)
from hatinspect.training.engine import EpochCallback, EpochReport
from hatinspect.training.tasks import make_tasks

TEST_BATCH_SIZE = 512
STRATEGIES = ("auto", "ddp")


def run_lightning_demo(
    config: DemoConfig,
    out: Path | None = None,
    on_epoch: EpochCallback | None = None,
    devices: int = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    record_every: int = 0,
    logger=None,
) -> DemoResult | None:
    """Train ``config``'s tasks with ``HATModule``; with ``out``, ``HATMaskCheckpoint``
    writes ``out/after-task-<t>.safetensors`` after each, and with ``record_every`` N > 0
    ``HATMaskTrajectory`` records every N epochs into ``out/trajectory-task-<t>.safetensors``.
    ``logger`` (Lightning's) is every task's ``Trainer``'s. The result on global rank zero,
    ``None`` on the other processes."""
    start = time.perf_counter()
    _quiet()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        tasks = make_tasks(config.dataset, config.tasks, config.seed, config.backbone != "mlp")
        train = config.train_config
        module = HATModule(
            demo_backbone(config.backbone, tasks[0]),
            config.algorithm,
            lr=train.lr,
            s_max=train.s_max,
            sparsity_factor=train.sparsity_factor,
            alpha=train.alpha,
            embedding_init=train.embedding_init,
        )
        callbacks: list[Callback] = [_EpochReports(on_epoch)] if on_epoch else []
        checkpoint = None
        if out is not None:
            metadata = {"dataset": config.dataset, "seed": config.seed, "epochs": config.epochs}
            name = CHECKPOINT_NAME.removesuffix(".safetensors")
            # the demo's folder is rewritten by each run, as the plain engine's is; its
            # progress is the command's own bars, which another one would scramble
            checkpoint = HATMaskCheckpoint(
                out, filename=name, metadata=metadata, overwrite=True, progress=False
            )
            callbacks.append(checkpoint)
        trajectory = None
        if record_every and out is not None:
            trajectory = HATMaskTrajectory(
                out, every_n_epochs=record_every, overwrite=True, progress=False
            )
            callbacks.append(trajectory)
        for task in tasks:
            module.start_task(task.task_id, task.num_classes)
            trainer = Trainer(
                devices=devices,
                num_nodes=num_nodes,
                strategy=strategy,
                max_epochs=config.epochs,
                callbacks=list(callbacks),
                logger=logger if logger is not None else False,
                enable_checkpointing=checkpoint is not None,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            generator = torch.Generator().manual_seed(config.seed + task.task_id)
            data = TensorDataset(task.train_x, task.train_y)
            trainer.fit(
                module, DataLoader(data, train.batch_size, shuffle=True, generator=generator)
            )
            module.test_tasks(trainer, {t.task_id: _test_loader(t) for t in tasks[: task.task_id]})
    if not trainer.is_global_zero:
        return None
    written = checkpoint.paths if checkpoint is not None else {}
    paths = [str(written[task]) for task in sorted(written)]
    recorded = trajectory.paths if trajectory is not None else {}
    trajectories = [str(recorded[task]) for task in sorted(recorded)]
    capacity = module.capacity_by_task
    return DemoResult.of_run(config, module.accuracy, capacity, paths, start, trajectories)


def _test_loader(task) -> DataLoader:
    return DataLoader(TensorDataset(task.test_x, task.test_y), TEST_BATCH_SIZE)


class _EpochReports(Callback):
    """Lightning's epoch-end metrics as the demo's ``EpochReport``s, on rank zero."""

    def __init__(self, on_epoch: EpochCallback) -> None:
        self.on_epoch = on_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            metrics = trainer.callback_metrics
            report = EpochReport(
                pl_module.task_id,
                trainer.current_epoch + 1,
                trainer.max_epochs,
                float(metrics["train/loss"]),
                float(metrics["train/accuracy"]),
            )
            self.on_epoch(report)


def _quiet() -> None:
    """Keep the demo's stderr to its progress: Lightning's start-up notes and its advice
    for large datasets (workers, logging intervals) do not apply to a few toy tasks."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
