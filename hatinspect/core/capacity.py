"""How much of a network HAT has used up: closed-form counts from the masks alone.

A weight (i, j) is protected (frozen for the next task) when output unit i and input unit j
are both in the cumulative mask; a bias i when unit i is. Counting active units per layer is
enough: a layer protects kernel_size * used_i * used_j weights and used_i biases, so no
weight-sized tensor is ever built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from hatinspect.core.errors import CheckpointError
from hatinspect.core.masks import task_matrix
from hatinspect.core.select import select_layers, select_tasks
from hatinspect.core.types import Checkpoint, LayerInfo


@dataclass(frozen=True)
class Usage:
    """Units and parameters of one layer, or of the whole network, and how many are used."""

    name: str
    units: int
    units_used: int  # units in the cumulative mask
    params: int  # weights + biases
    params_protected: int

    @property
    def unit_usage(self) -> float:
        return self.units_used / self.units

    @property
    def param_usage(self) -> float:
        return self.params_protected / self.params

    @property
    def free(self) -> float:
        return 1.0 - self.param_usage


@dataclass(frozen=True)
class TaskGrowth:
    """What one task added, and the network's usage once it was stored."""

    task: int
    new_units: int  # units no earlier task had used
    reused_units: int  # units this task shares with earlier ones
    free_before: int  # units no earlier task had used, over the network
    units_used: int  # after this task
    params_protected: int  # after this task
    params: int

    @property
    def network_sparsity(self) -> float:
        """AdaHAT's network sparsity: the share of the free units this task claimed
        (0 when none were free)."""
        return self.new_units / self.free_before if self.free_before else 0.0

    @property
    def param_usage(self) -> float:
        return self.params_protected / self.params


@dataclass(frozen=True)
class CapacityReport:
    checkpoint: str
    tasks: tuple[int, ...]
    layers: tuple[Usage, ...]
    total: Usage
    by_task: tuple[TaskGrowth, ...]
    # False when the masks protect nothing: none stored, or a fine-tuning run's
    protects: bool = True


class _Counts(NamedTuple):
    """One layer's unit counts, each (tasks,) int64 in the checkpoint's task order."""

    used: np.ndarray  # units in the cumulative mask after each task
    active: np.ndarray  # units each task's own mask keeps
    new: np.ndarray  # units each task claimed that no earlier task had used


def capacity(
    checkpoint: Checkpoint,
    tasks: Sequence[int] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> CapacityReport:
    """Usage per layer and in total after the stored tasks, and how it grew task by task.

    `tasks` counts only those tasks' masks (as if no other was stored); `include` and
    `exclude` globs choose the layers reported, totalled and grown over (a chosen layer's
    protected weights still depend on its preceding layer's units, chosen or not)."""
    if tasks:
        checkpoint = replace(checkpoint, task_ids=select_tasks(checkpoint, tasks))
    chosen = select_layers(checkpoint, include, exclude) if include or exclude else None
    counts = {layer.name: _counts(checkpoint, layer) for layer in checkpoint.layers}
    # layer name -> (tasks,) parameters protected after each task
    protected = {
        layer.name: _protected(
            layer, counts[layer.name].used, _fan_in_used(checkpoint, layer, counts)
        )
        for layer in checkpoint.layers
    }
    chosen = chosen or checkpoint.layers
    layers = tuple(
        _usage(layer, counts[layer.name].used, protected[layer.name]) for layer in chosen
    )
    names = [layer.name for layer in chosen]
    return CapacityReport(
        checkpoint=checkpoint.path,
        tasks=checkpoint.task_ids,
        layers=layers,
        total=_total(layers),
        by_task=_growth(
            checkpoint,
            chosen,
            {name: counts[name] for name in names},
            {name: protected[name] for name in names},
        ),
        protects=protects_anything(checkpoint),
    )


def protects_anything(checkpoint: Checkpoint) -> bool:
    """False with no stored task, or for a fine-tuning run: its stored masks are all ones
    by convention, and it protects nothing."""
    return bool(checkpoint.task_ids) and checkpoint.metadata.get("algorithm") != "finetuning"


def _counts(checkpoint: Checkpoint, layer: LayerInfo) -> _Counts:
    matrix = task_matrix(checkpoint, layer, checkpoint.task_ids)
    cumulative = np.maximum.accumulate(matrix, axis=0) if len(matrix) else matrix
    used = cumulative.sum(axis=1, dtype=np.int64)
    active = matrix.sum(axis=1, dtype=np.int64)
    return _Counts(used, active, np.diff(used, prepend=0))


def _fan_in_used(checkpoint: Checkpoint, layer: LayerInfo, counts) -> np.ndarray | int:
    """Inputs of `layer` in the cumulative mask after each task: the preceding layer's
    used units times the inputs each of them feeds (1, or h*w after a flatten)."""
    if layer.preceding is None:
        return layer.fan_in
    source = checkpoint.layer(layer.preceding)
    return counts[source.name].used * inputs_per_unit(layer, source)


def inputs_per_unit(layer: LayerInfo, source: LayerInfo) -> int:
    """How many of `layer`'s inputs each output unit of `source` feeds."""
    if layer.fan_in % source.units:
        raise CheckpointError(
            f"layer {layer.name} has {layer.fan_in} inputs, which {source.units} units "
            f"of its preceding layer {source.name} cannot feed"
        )
    return layer.fan_in // source.units


def _protected(layer: LayerInfo, used: np.ndarray, fan_in_used) -> np.ndarray:
    biases = used if layer.has_bias else 0
    return layer.kernel_size * used * fan_in_used + biases


def _usage(layer: LayerInfo, used: np.ndarray, protected: np.ndarray) -> Usage:
    return Usage(
        name=layer.name,
        units=layer.units,
        units_used=int(used[-1]) if len(used) else 0,
        params=layer.params,
        params_protected=int(protected[-1]) if len(used) else 0,
    )


def _total(layers: tuple[Usage, ...]) -> Usage:
    def total(key: str) -> int:
        return sum(getattr(layer, key) for layer in layers)

    return Usage(
        "total", total("units"), total("units_used"), total("params"), total("params_protected")
    )


def _growth(checkpoint: Checkpoint, layers, counts, protected) -> tuple[TaskGrowth, ...]:
    used_after = sum(layer.used for layer in counts.values())
    active = sum(layer.active for layer in counts.values())
    new = sum(layer.new for layer in counts.values())
    units = sum(layer.units for layer in layers)
    params = sum(layer.params for layer in layers)
    protected_after = sum(protected.values())
    return tuple(
        TaskGrowth(
            task=task,
            new_units=int(new[t]),
            reused_units=int(active[t] - new[t]),
            free_before=int(units - used_after[t] + new[t]),
            units_used=int(used_after[t]),
            params_protected=int(protected_after[t]),
            params=params,
        )
        for t, task in enumerate(checkpoint.task_ids)
    )
