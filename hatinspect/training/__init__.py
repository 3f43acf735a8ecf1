"""Training HAT, AdaHAT and fine-tuning task after task (uses the backbones).

``tasks`` makes the task sequences, ``heads`` the per-task classifiers, ``hat`` and
``adahat`` hold the training rules, ``engine`` trains task after task and ``demo`` is
the ``hatinspect train-demo`` run.
"""

from hatinspect.training.demo import DemoConfig, DemoResult, run_demo
from hatinspect.training.engine import (
    ALGORITHMS,
    EpochReport,
    TrainConfig,
    evaluate,
    train_sequence,
    train_task,
)
from hatinspect.training.heads import TaskHeads
from hatinspect.training.tasks import Task, make_tasks

__all__ = [
    "ALGORITHMS",
    "DemoConfig",
    "DemoResult",
    "EpochReport",
    "Task",
    "TaskHeads",
    "TrainConfig",
    "evaluate",
    "make_tasks",
    "run_demo",
    "train_sequence",
    "train_task",
]
