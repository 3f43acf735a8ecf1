"""Per-task batch norm: one ``BatchNorm2d`` per task, so normalising never mixes tasks.

A HAT network shares its convolutions between tasks and protects the units earlier tasks
use; a batch norm shared the same way would keep re-estimating those units' statistics and
re-learning their scale and shift on every new task, silently changing what earlier tasks
compute. With one batch norm per task, learning task t touches task t's alone.

Only the current task's batch norm trains. An earlier task's is frozen: its parameters
leave the optimiser (``requires_grad`` off) and it always normalises with its running
statistics, in train mode too, so they never change.
"""

from __future__ import annotations

from torch import Tensor, nn


class TaskBatchNorm2d(nn.Module):
    """``per_task[str(t)]`` is task t's ``BatchNorm2d``; ``task`` picks the one applied."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.per_task = nn.ModuleDict()
        self.current: str | None = None  # the task that trains
        self.task: str | None = None  # the task whose batch norm forward applies
        # a state_dict brings its tasks: create their batch norms before loading into them
        self.register_load_state_dict_pre_hook(self._add_saved_tasks)

    def setup_task(self, task_id: int) -> None:
        """Make ``task_id`` the one that trains (adding its batch norm); freeze the others."""
        key = str(task_id)
        if key not in self.per_task:
            self.per_task[key] = self._new_norm()
        self.current = self.task = key
        for name, norm in self.per_task.items():
            norm.requires_grad_(name == key)
        self.train(self.training)

    def select(self, task_id: int) -> None:
        key = str(task_id)
        if key not in self.per_task:
            known = ", ".join(self.per_task) or "none"
            raise ValueError(f"no batch norm for task {task_id} (tasks with one: {known})")
        self.task = key

    def train(self, mode: bool = True) -> TaskBatchNorm2d:
        super().train(mode)
        for name, norm in self.per_task.items():
            norm.train(mode and name == self.current)
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.task is None:
            raise ValueError("no task selected: call setup_task_id(task_id) first")
        return self.per_task[self.task](x)

    def _new_norm(self) -> nn.BatchNorm2d:
        reference = next(self.parameters(), None)
        norm = nn.BatchNorm2d(self.channels)
        return norm if reference is None else norm.to(reference.device, reference.dtype)

    def _add_saved_tasks(self, module, state_dict, prefix, *args) -> None:
        marker = f"{prefix}per_task."
        for key in state_dict:
            if key.startswith(marker):
                task = key[len(marker) :].split(".", 1)[0]
                if task.isdigit() and task not in self.per_task:
                    self.per_task[task] = self._new_norm()
                    self.per_task[task].requires_grad_(False)
        self.train(self.training)
