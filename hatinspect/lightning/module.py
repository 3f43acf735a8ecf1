"""``HATModule``: HAT, AdaHAT and fine-tuning as a LightningModule.

The training rules are ``hatinspect.training``'s own (``make_step``: annealed masks, the
sparsity regulariser, gradient conditioning or AdaHAT's adjustment, embedding-gradient
compensation and clamping; ``task_parameters``: what a task trains, under a fresh plain
SGD per task); this module only places them in Lightning's hooks:

- ``training_step``: the step's forward and ``step_loss``;
- ``on_before_optimizer_step``: HAT / AdaHAT's gradient rules, after backward (under DDP
  after the gradients are averaged, so every process applies the same update);
- ``on_train_batch_end``: the embedding clamp, after the update;
- ``on_train_end``: store the task's binary mask (as CLArena does; ``HATMaskCheckpoint``
  writes it in the next hook, ``on_fit_end``).

One ``trainer.fit`` per task: ``start_task(t, classes)``, ``fit``, then ``test_tasks`` for
the accuracy matrix row. A Lightning ``.ckpt`` also holds what its ``state_dict`` does not:
the stored masks, the task in training, the heads' sizes and the accuracy matrix, so that
``fit(..., ckpt_path=...)`` resumes a fresh module (``start_task`` not needed).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from hatinspect.training import hat
from hatinspect.training.adahat import ALPHA
from hatinspect.training.demo import capacity_after_each_task, forgetting, in_memory_checkpoint
from hatinspect.training.engine import (
    TrainConfig,
    make_step,
    predict,
    step_loss,
    task_parameters,
)
from hatinspect.training.heads import TaskHeads

RESUME_KEY = "hatinspect"  # the .ckpt entry with what a resumed fit needs beyond the weights


class HATModule(LightningModule):
    """Train a hatinspect HAT backbone with one head per task, task after task."""

    def __init__(
        self,
        backbone: nn.Module,
        algorithm: str = "hat",
        lr: float = 0.1,
        s_max: float = hat.S_MAX,
        sparsity_factor: float = hat.SPARSITY_FACTOR,
        alpha: float = ALPHA,
        embedding_init: str = "N01",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone"])
        self.config = TrainConfig(
            algorithm=algorithm,
            lr=lr,
            s_max=s_max,
            sparsity_factor=sparsity_factor,
            alpha=alpha,
            embedding_init=embedding_init,
        )
        self.algorithm = algorithm
        self.backbone = backbone
        self.heads = TaskHeads(backbone.output_dim)
        self.task_id: int | None = None
        # row t: accuracy on tasks 1..t after learning task t (filled by test_tasks)
        self.accuracy: list[list[float]] = []
        self._step = None
        self._test_tasks: list[int] = []
        self._counts: dict[int, Tensor] = {}

    def start_task(self, task_id: int, num_classes: int) -> None:
        """Set up task ``task_id`` (its head, embeddings, batch norms); call before its fit."""
        self.backbone.setup_task_id(task_id)
        self.heads.add_task(task_id, num_classes)
        self.task_id = task_id
        self._step = make_step(self.backbone, self.config)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        self._require_task()
        # torch's SGD with the plain engine's settings: the same update on the same parameters
        parameters = task_parameters(self.backbone, self.heads.heads[str(self.task_id)])
        return torch.optim.SGD(parameters, lr=self.config.lr, momentum=0.0, weight_decay=0.0)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y = batch
        num_batches = int(self.trainer.num_training_batches)
        loss, logits = step_loss(
            self._step, self.heads, self.task_id, x, y, batch_idx + 1, num_batches
        )
        accuracy = (logits.argmax(1) == y).float().mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/accuracy", accuracy, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self._step.adjust_gradients()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._step.after_update()

    def on_train_epoch_end(self) -> None:
        current = {**self.backbone.masks, self.task_id: self.backbone.te_to_binary_mask()}
        self.log("train/capacity", self.capacity(current), sync_dist=False)

    def on_train_end(self) -> None:
        self.backbone.store_mask()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[RESUME_KEY] = {
            "task_id": self.task_id,
            # task id -> layer -> (units,) binary mask
            "masks": {
                task: {layer: m.detach().cpu() for layer, m in mask.items()}
                for task, mask in self.backbone.masks.items()
            },
            "head_classes": {int(t): head.out_features for t, head in self.heads.heads.items()},
            "accuracy": self.accuracy,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get(RESUME_KEY)
        if state is None:
            return
        task_id = state["task_id"]
        if self.task_id not in (None, task_id):
            raise ValueError(
                f"the .ckpt was saved while training task {task_id}, "
                f"but start_task({self.task_id}) was called"
            )
        self.backbone.restore_masks(state["masks"])
        self._restore_heads(state["head_classes"], task_id)
        self.accuracy = [list(row) for row in state["accuracy"]]
        if task_id is not None:
            self.backbone.setup_task_id(task_id)
            self.task_id = task_id
            # the step's regulariser and protection follow the masks restored above
            self._step = make_step(self.backbone, self.config)

    def _restore_heads(self, head_classes: Mapping[int, int], task_id: int | None) -> None:
        """The heads the .ckpt's weights go into; only the task in training's trains."""
        for task, classes in sorted(head_classes.items()):
            if str(task) not in self.heads.heads:
                self.heads.add_task(task, classes)
        for task, head in self.heads.heads.items():
            head.requires_grad_(task == str(task_id))

    def capacity(self, masks: Mapping | None = None) -> float:
        """Share of the weighted layers' parameters protected by ``masks`` (stored ones)."""
        from hatinspect.analysis.capacity import capacity

        checkpoint = in_memory_checkpoint(self.backbone, masks, self.algorithm)
        return capacity(checkpoint).total.param_usage

    def test_tasks(self, trainer, loaders: Mapping[int, object]) -> list[float]:
        """Test every task in ``loaders`` (task id -> DataLoader) through its stored mask,
        batch norm and head; append the accuracies as a row of ``self.accuracy``."""
        self._test_tasks = list(loaders)
        trainer.test(self, dataloaders=list(loaders.values()), verbose=False)
        return self.accuracy[-1]

    def on_test_epoch_start(self) -> None:
        self._counts = {task: torch.zeros(2, device=self.device) for task in self._test_tasks}

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        task_id = self._test_tasks[dataloader_idx]
        x, y = batch
        correct = (predict(self.backbone, self.heads, x, task_id) == y).sum()
        self._counts[task_id] += torch.stack([correct.float(), correct.new_tensor(len(y)).float()])

    def on_test_epoch_end(self) -> None:
        row = []
        for task_id, counts in self._counts.items():
            correct, seen = self.all_gather(counts).reshape(-1, 2).sum(0).tolist()
            row.append(correct / seen)
            self.log(f"test/accuracy/task_{task_id}", correct / seen, rank_zero_only=True)
        self.accuracy.append(row)

    @property
    def forgetting(self) -> list[float]:
        """Per task but the last: best earlier accuracy minus the final one."""
        return forgetting(self.accuracy) if self.accuracy else []

    @property
    def capacity_by_task(self) -> list[float]:
        return capacity_after_each_task(self.backbone, self.algorithm)

    def _require_task(self) -> None:
        if self.task_id is None:
            raise RuntimeError("no task to train: call start_task(task_id, num_classes) first")
