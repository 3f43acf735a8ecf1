"""Task-incremental output heads: one linear classifier per task over the shared feature."""

from __future__ import annotations

from torch import Tensor, nn


class TaskHeads(nn.Module):
    """``heads[str(task_id)]`` maps the backbone's feature to that task's class logits.

    Only the current task's head is trained; earlier heads receive no gradient and are
    left out of the optimiser, so they never change.
    """

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.heads = nn.ModuleDict()

    def add_task(self, task_id: int, num_classes: int) -> nn.Linear:
        if str(task_id) in self.heads:
            raise ValueError(f"task {task_id} already has a head")
        head = nn.Linear(self.input_dim, num_classes)
        for earlier in self.heads.values():
            earlier.requires_grad_(False)  # frozen: out of every optimiser (and of DDP's sync)
        self.heads[str(task_id)] = head
        return head

    def forward(self, feature: Tensor, task_id: int) -> Tensor:
        return self.heads[str(task_id)](feature)
