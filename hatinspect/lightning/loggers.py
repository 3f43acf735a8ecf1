"""Lightning's own loggers for ``train-demo --logger``: TensorBoard's or a CSV file, in
``<out>/logs/version_<n>/``. The plain engine calls their ``log_metrics`` and
``experiment.add_image`` itself; the Lightning engine hands them to its ``Trainer``."""

from __future__ import annotations

from pathlib import Path

LOGGERS = ("tensorboard", "csv")
LOG_FOLDER = "logs"  # below the run's folder, beside its checkpoints


def demo_logger(kind: str, out: str | Path):
    """A ``TensorBoardLogger`` or ``CSVLogger`` writing below ``out``; an ``ImportError``
    naming the extra when TensorBoard is not installed."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if kind == "csv":
        return CSVLogger(out, name=LOG_FOLDER)
    if kind != "tensorboard":
        raise ValueError(f"unknown logger {kind!r}; choose one of {', '.join(LOGGERS)}")
    try:
        return TensorBoardLogger(out, name=LOG_FOLDER, default_hp_metric=False)
    except ModuleNotFoundError:
        raise ImportError(
            "--logger tensorboard needs TensorBoard: pip install 'hatinspect[lightning]'"
        ) from None
