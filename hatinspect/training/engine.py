"""Train a HAT backbone and task-incremental heads on one task after another.

HAT and AdaHAT learn a mask per task (annealed masks, the sparsity regulariser,
embedding-gradient compensation and clamping) and differ only in how they protect the
parameters of earlier tasks (``PROTECTIONS``). Fine-tuning, the baseline that forgets,
opens every unit to every task and protects nothing: its stored masks are all ones.

The optimiser is plain SGD with no weight decay, fresh for each task. That is what makes
HAT's protection exact: a parameter whose gradient is exactly zero moves by ``lr * 0``.
Weight decay would shrink it, and momentum or Adam moments carried over from an earlier
task would keep moving it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hatinspect.backbones import annealed_scale
from hatinspect.model.names import ALGORITHMS
from hatinspect.training import hat
from hatinspect.training.adahat import ALPHA, AdaHATAdjustment
from hatinspect.training.heads import TaskHeads
from hatinspect.training.tasks import Task

PROTECTIONS = {
    "hat": lambda backbone, config: hat.HATConditioning(backbone),
    "adahat": lambda backbone, config: AdaHATAdjustment(backbone, config.alpha),
    "finetuning": None,  # learns no mask, protects nothing
}


@dataclass(frozen=True)
class TrainConfig:
    algorithm: str = "hat"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    s_max: float = hat.S_MAX
    sparsity_factor: float = hat.SPARSITY_FACTOR
    alpha: float = ALPHA  # AdaHAT only
    embedding_init: str = "N01"

    def __post_init__(self) -> None:
        if self.algorithm not in PROTECTIONS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose one of {ALGORITHMS}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0")

    @property
    def learns_masks(self) -> bool:
        return PROTECTIONS[self.algorithm] is not None


@dataclass(frozen=True)
class EpochReport:
    task_id: int
    epoch: int  # counted from 1
    epochs: int
    loss: float  # mean over the epoch's batches, regulariser included
    accuracy: float  # training accuracy (under the annealed masks for HAT / AdaHAT)


EpochCallback = Callable[[EpochReport], None]
# task id, accuracy rows so far: row t holds the accuracy on tasks 1..t after learning task t
TaskEndCallback = Callable[[int, list[list[float]]], None]
# task id, once its embeddings are initialised and before its first epoch
TaskStartCallback = Callable[[int], None]


def train_sequence(
    backbone: nn.Module,
    heads: TaskHeads,
    tasks: Sequence[Task],
    config: TrainConfig,
    generator: torch.Generator,
    on_epoch: EpochCallback | None = None,
    on_task_end: TaskEndCallback | None = None,
    on_task_start: TaskStartCallback | None = None,
) -> list[list[float]]:
    """Learn ``tasks`` in order (task ids 1, 2, ...); return the accuracy rows.

    The backbone gets a run id (``hatinspect.torch_io.save.run_id``) that every checkpoint
    saved of it carries."""
    from hatinspect.torch_io.save import run_id

    run_id(backbone)
    accuracy: list[list[float]] = []
    for t, task in enumerate(tasks, start=1):
        train_task(backbone, heads, task, config, generator, on_epoch, on_task_start)
        accuracy.append([evaluate(backbone, heads, earlier) for earlier in tasks[:t]])
        if on_task_end is not None:
            on_task_end(task.task_id, accuracy)
    return accuracy


def train_task(
    backbone: nn.Module,
    heads: TaskHeads,
    task: Task,
    config: TrainConfig,
    generator: torch.Generator,
    on_epoch: EpochCallback | None = None,
    on_task_start: TaskStartCallback | None = None,
) -> None:
    """Learn one task, then store its binary mask in the backbone."""
    backbone.setup_task_id(task.task_id)
    head = heads.add_task(task.task_id, task.num_classes)
    step = make_step(backbone, config)
    if on_task_start is not None:
        on_task_start(task.task_id)
    optimiser = task_optimiser(backbone, head, config.lr)
    backbone.train()
    heads.train()
    for epoch in range(1, config.epochs + 1):
        batches = _batches(task, config.batch_size, generator)
        loss, accuracy = _train_epoch(step, heads, task.task_id, batches, optimiser)
        if on_epoch is not None:
            on_epoch(EpochReport(task.task_id, epoch, config.epochs, loss, accuracy))
    backbone.store_mask()


def make_step(backbone: nn.Module, config: TrainConfig) -> MaskLearningStep | FullStep:
    """The current task's training rules (initialises its embeddings: call once per task)."""
    return MaskLearningStep(backbone, config) if config.learns_masks else FullStep(backbone)


def task_parameters(backbone: nn.Module, head: nn.Module) -> list[nn.Parameter]:
    """What a task trains: the backbone and the task's own head, frozen parts left out."""
    # earlier heads stay out of the optimiser: nothing can move them
    return [p for p in (*backbone.parameters(), *head.parameters()) if p.requires_grad]


def task_optimiser(backbone: nn.Module, head: nn.Module, lr: float) -> PlainSGD:
    """Plain SGD, fresh for the task, over ``task_parameters``."""
    return PlainSGD(task_parameters(backbone, head), lr=lr)


def step_loss(
    step, heads: TaskHeads, task_id: int, x: Tensor, y: Tensor, batch_idx: int, num_batches: int
) -> tuple[Tensor, Tensor]:
    """The training loss (cross-entropy + the step's regulariser) and the logits."""
    feature, regulariser = step.forward(x, batch_idx, num_batches)
    logits = heads(feature, task_id)
    return regulariser + F.cross_entropy(logits, y), logits


class PlainSGD:
    """SGD without momentum or weight decay, through torch's functional ``sgd``: the very
    update ``torch.optim.SGD(momentum=0, weight_decay=0)`` makes. Building any
    ``torch.optim`` optimiser imports ``torch._dynamo`` (about a second of a demo run);
    the functional form does not."""

    def __init__(self, parameters, lr: float) -> None:
        self.parameters, self.lr = list(parameters), lr

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        stepped = [p for p in self.parameters if p.grad is not None]
        sgd(
            stepped,
            [p.grad for p in stepped],
            [None] * len(stepped),
            weight_decay=0.0,
            momentum=0.0,
            lr=self.lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
            foreach=True,  # one call for all parameters: the same arithmetic, less overhead
        )


def _train_epoch(step, heads: TaskHeads, task_id: int, batches, optimiser) -> tuple[float, float]:
    """One pass over ``batches``; the mean loss and the training accuracy."""
    loss_sum, correct, seen = 0.0, 0, 0
    for batch_idx, (x, y) in enumerate(batches, start=1):
        optimiser.zero_grad()
        loss, logits = step_loss(step, heads, task_id, x, y, batch_idx, len(batches))
        loss.backward()
        step.adjust_gradients()
        optimiser.step()
        step.after_update()
        loss_sum += loss.item()
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return loss_sum / len(batches), correct / seen


class MaskLearningStep:
    """HAT / AdaHAT: annealed mask and sparsity regulariser in, gradient rules out."""

    def __init__(self, backbone: nn.Module, config: TrainConfig) -> None:
        backbone.initialise_task_embedding(config.embedding_init)
        self.backbone, self.config = backbone, config
        self.protect = PROTECTIONS[config.algorithm](backbone, config)
        # the cumulative mask of the tasks before this one: what is no longer free
        self.regulariser = hat.SparsityRegulariser(
            backbone.get_cumulative_mask(), config.sparsity_factor
        )

    def forward(self, x: Tensor, batch_idx: int, num_batches: int) -> tuple[Tensor, Tensor]:
        """The feature, and the regulariser to add to the loss."""
        self.s = annealed_scale(self.config.s_max, batch_idx, num_batches)
        feature, self.mask, _ = self.backbone(x, "train", self.config.s_max, batch_idx, num_batches)
        return feature, self.regulariser(self.mask)

    def adjust_gradients(self) -> None:
        self.protect(self.mask)
        hat.compensate_embedding_gradients(self.backbone, self.s, self.config.s_max)

    def after_update(self) -> None:
        hat.clamp_embeddings(self.backbone)


class FullStep:
    """Fine-tuning: every unit open (a mask of ones), no regulariser, no protection."""

    def __init__(self, backbone: nn.Module) -> None:
        # embeddings pinned positive: store_mask() then stores all ones, as trained;
        # never in a forward pass, they are left out of training altogether
        with torch.no_grad():
            for embedding in backbone.task_embedding_t.values():
                embedding.weight.fill_(hat.EMBEDDING_BOUND)
                embedding.requires_grad_(False)
        self.backbone = backbone
        self.ones = {
            name: torch.ones_like(e.weight[0].detach())
            for name, e in backbone.task_embedding_t.items()
        }

    def forward(self, x: Tensor, batch_idx: int, num_batches: int) -> tuple[Tensor, Tensor]:
        feature, _, _ = self.backbone(x, "test", test_mask=self.ones, task_id=self.backbone.task_id)
        return feature, torch.zeros(())

    def adjust_gradients(self) -> None:
        pass

    def after_update(self) -> None:
        pass


@torch.no_grad()
def evaluate(backbone: nn.Module, heads: TaskHeads, task: Task) -> float:
    """Test accuracy on ``task`` through its stored binary mask and its own head."""
    backbone.eval()
    heads.eval()
    predictions = predict(backbone, heads, task.test_x, task.task_id)
    return (predictions == task.test_y).sum().item() / len(task.test_y)


def predict(backbone: nn.Module, heads: TaskHeads, x: Tensor, task_id: int) -> Tensor:
    """The classes task ``task_id`` predicts for ``x``: its stored mask, its batch norms
    and its head, all chosen by the one task id."""
    mask = backbone.masks[task_id]
    feature, _, _ = backbone(x, "test", test_mask=mask, task_id=task_id)
    return heads(feature, task_id).argmax(1)


def _batches(
    task: Task, batch_size: int, generator: torch.Generator
) -> list[tuple[Tensor, Tensor]]:
    order = torch.randperm(len(task.train_y), generator=generator)
    return [(task.train_x[chunk], task.train_y[chunk]) for chunk in order.split(batch_size)]
