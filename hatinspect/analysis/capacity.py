"""How much of a network HAT has used up: closed-form counts from the masks alone.

A weight (i, j) is protected (frozen for the next task) when output unit i and input unit j
are both in the cumulative mask; a bias i when unit i is. Counting active units per layer is
enough: a layer protects kernel_size * used_i * used_j weights and used_i biases, so no
weight-sized tensor is ever built.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple

import numpy as np

from hatinspect.analysis.masks import joined_masks
from hatinspect.analysis.packed import layer_growth, per_layer
from hatinspect.analysis.select import select_layers, select_tasks
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import CheckpointError
from hatinspect.model.records import csv_rows, fields_of, record, values_of
from hatinspect.model.result import Result
from hatinspect.native import format as fmt


class Shares:
    """Shares of a count of used units and protected parameters (mixin of the records)."""

    __slots__ = ()

    @property
    def unit_usage(self) -> float:
        return self.units_used / self.units

    @property
    def param_usage(self) -> float | None:
        """None where the parameters are unknown (a run known from its logs alone)."""
        if self.params is None or self.params_protected is None:
            return None
        return self.params_protected / self.params


@dataclass(frozen=True)
class Usage(Shares):
    """Units and parameters of one layer, or of the whole network, and how many are used."""

    name: str
    units: int
    units_used: int  # units in the cumulative mask
    params: int | None  # weights + biases; None where the file holds no weights
    params_protected: int | None

    @property
    def free(self) -> float | None:
        usage = self.param_usage
        return None if usage is None else 1.0 - usage


@dataclass(frozen=True)
class TaskGrowth:
    """What one task added, and the network's usage once it was stored."""

    task: int
    new_units: int  # units no earlier task had used
    reused_units: int  # units this task shares with earlier ones
    free_before: int  # units no earlier task had used, over the network
    units_used: int  # after this task
    params_protected: int | None  # after this task; None where the weights are unknown
    params: int | None
    # masks of parameters: the weights this task owns that no earlier task had, and those
    # it shares with earlier tasks (its units are those with a weight of its own)
    new_params: int | None = None
    reused_params: int | None = None

    @property
    def network_sparsity(self) -> float:
        """AdaHAT's network sparsity: the share of the free units this task claimed
        (0 when none were free)."""
        return self.new_units / self.free_before if self.free_before else 0.0

    @property
    def param_usage(self) -> float | None:
        if self.params is None or self.params_protected is None:
            return None
        return self.params_protected / self.params


@dataclass(frozen=True)
class CapacityReport(Result):
    MARKS_INFERRED: ClassVar[bool] = True  # its JSON says which preceding layers are inferred
    checkpoint: str
    tasks: tuple[int, ...]
    layers: tuple[Usage, ...]
    total: Usage
    by_task: tuple[TaskGrowth, ...]
    # False when the masks protect nothing: none stored, or a fine-tuning run's (its units
    # are still counted as used; no parameter is protected, every one is free)
    protects: bool = True
    # AdaHAT's family: the mean adjustment rate of the newest task, CLArena's way
    # ("clarena") and over the network's parameters ("per_parameter"); None otherwise
    network_capacity: Mapping[str, float] | None = None
    unlearning: tuple[UnlearnedTask, ...] = ()  # AmnesiacHAT's unlearned tasks
    covers: str = "units"  # "parameters": params are the masked weights, units those fed


@dataclass(frozen=True)
class UnlearnedTask:
    """What unlearning a task (AmnesiacHAT) did to the units: those it frees (no task
    still learned uses them), the later tasks it affects, and per affected task the units
    it shares with the unlearned one (the set CLArena's compensation restores from the
    affected task's backup)."""

    task: int
    freed: int  # units only this task (of the stored ones still counted) used
    freed_by_layer: Mapping[str, int]
    affected: tuple[int, ...]  # the tasks still learned that came after it
    compensation: Mapping[int, int]  # affected task -> units shared with the unlearned one


def unlearning_effects(checkpoint: Checkpoint) -> tuple[UnlearnedTask, ...]:
    """Per unlearned task, the units it frees and its compensation sets."""
    retained = checkpoint.retained_task_ids
    out = []
    for task in checkpoint.unlearned:
        freed: dict[str, int] = {}
        shared = dict.fromkeys((t for t in retained if t > task), 0)
        for layer in checkpoint.layers:
            mine = checkpoint.masks[task][layer.name] > 0
            kept = np.zeros_like(mine)
            for other in retained:
                kept |= checkpoint.masks[other][layer.name] > 0
            freed[layer.name] = int((mine & ~kept).sum())
            for other in shared:
                shared[other] += int((mine & (checkpoint.masks[other][layer.name] > 0)).sum())
        out.append(UnlearnedTask(task, sum(freed.values()), freed, tuple(shared), shared))
    return tuple(out)


class _Counts(NamedTuple):
    """Unit counts, each (layers, tasks) int64: layers and tasks in the checkpoint's order."""

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

    `tasks` counts only those tasks' masks (as if no other was stored; an unlearned task
    is never counted); `include` and
    `exclude` globs choose the layers reported, totalled and grown over (a chosen layer's
    protected weights still depend on its preceding layer's units, chosen or not).

    Every layer is counted at once, its masks side by side with the others', so the time
    is linear in layers and tasks."""
    if tasks:
        checkpoint = replace(checkpoint, task_ids=select_tasks(checkpoint, tasks))
    if checkpoint.covers == Covers.PARAMETERS:
        chosen = select_layers(checkpoint, include, exclude) if include or exclude else None
        return parameter_capacity(checkpoint, chosen)
    unlearned = unlearning_effects(checkpoint)
    if checkpoint.unlearned:  # an unlearned task's units are free again
        checkpoint = replace(checkpoint, task_ids=checkpoint.retained_task_ids)
    layers = checkpoint.layers
    chosen = select_layers(checkpoint, include, exclude) if include or exclude else layers
    counts = _counts(checkpoint)
    protects = protects_anything(checkpoint)
    protected, params = _parameters(checkpoint, counts, protects)
    if chosen is not layers:
        wanted = {layer.name for layer in chosen}
        rows = [i for i, layer in enumerate(layers) if layer.name in wanted]
        counts = _Counts(*(part[rows] for part in counts))
        protected = protected[rows]
        params = [params[i] for i in rows]
    last = len(checkpoint.task_ids) - 1
    used_last = counts.used[:, last].tolist() if last >= 0 else [0] * len(chosen)
    protected_last = protected[:, last].tolist() if last >= 0 else [0] * len(chosen)
    usages = tuple(
        Usage(layer.name, layer.units, used, count, kept)
        for layer, used, count, kept in zip(chosen, used_last, params, protected_last, strict=True)
    )
    total = Usage(
        "total",
        sum(layer.units for layer in chosen),
        sum(used_last),
        _sum(params),
        _sum(protected_last),
    )
    return CapacityReport(
        checkpoint=checkpoint.path,
        tasks=checkpoint.task_ids,
        layers=usages,
        total=total,
        by_task=_growth(checkpoint, counts, protected, total),
        protects=protects,
        unlearning=unlearned,
    )


def _parameters(checkpoint: Checkpoint, counts: _Counts, protects: bool):
    """(layers, tasks): parameters protected after each task (none where no mask protects),
    and each layer's parameters; None in both where the file holds no weights."""
    layers = checkpoint.layers
    if not checkpoint.weights_known:  # units alone (training logs): no parameter is counted
        return np.full(counts.used.shape, None, dtype=object), [None] * len(layers)
    columns = _columns(layers)
    protected = _protected(columns, counts.used, _fan_in_used(layers, columns, counts.used))
    if not protects:
        protected = np.zeros_like(protected)
    return protected, columns.params.tolist()


def _sum(counts: list) -> int | None:
    return None if None in counts else sum(counts)


def parameter_capacity(checkpoint: Checkpoint, chosen=None) -> CapacityReport:
    """Capacity of masks that cover weights (WSN, PackNet, ...): a weight is used once a
    task's mask keeps it, and stays protected; a unit is used once a weight of it is.
    ``params`` counts the masked weights (biases are not masked). Counted on packed bits,
    a block at a time (``analysis.packed``)."""
    layers = chosen or checkpoint.layers
    tasks = checkpoint.task_ids
    # (tasks, 4): new and kept weights, new and kept units, over the chosen layers
    steps = np.zeros((len(tasks), 4), dtype=np.int64)
    usages = []
    growths = per_layer(layer_growth, checkpoint, layers, tasks)
    for layer, growth in zip(layers, growths, strict=True):
        steps += np.stack(growth, axis=1)
        usages.append(Usage(layer.name, layer.units, int(growth.new_units.sum()),
                            layer.mask_size(Covers.PARAMETERS), int(growth.new.sum())))  # fmt: skip
    total = Usage(
        "total",
        sum(u.units for u in usages),
        sum(u.units_used for u in usages),
        sum(u.params for u in usages),
        sum(u.params_protected for u in usages),
    )
    used_units, owned = np.cumsum(steps[:, 2]), np.cumsum(steps[:, 0])
    growth = tuple(
        TaskGrowth(
            task=task,
            new_units=int(steps[t, 2]),
            reused_units=int(steps[t, 3] - steps[t, 2]),
            free_before=int(total.units - used_units[t] + steps[t, 2]),
            units_used=int(used_units[t]),
            params_protected=int(owned[t]),
            params=total.params,
            new_params=int(steps[t, 0]),
            reused_params=int(steps[t, 1] - steps[t, 0]),
        )
        for t, task in enumerate(tasks)
    )
    return CapacityReport(
        checkpoint.path, tasks, tuple(usages), total, growth,
        protects=protects_anything(checkpoint), covers=str(Covers.PARAMETERS),
    )  # fmt: skip


def protects_anything(checkpoint: Checkpoint) -> bool:
    """False with no stored task, or for a fine-tuning run: its stored masks are all ones
    by convention, and it protects nothing."""
    return bool(checkpoint.task_ids) and fmt.named_algorithm(checkpoint.metadata) != "finetuning"


def _counts(checkpoint: Checkpoint) -> _Counts:
    """Every layer's counts at once: each task's masks laid side by side in one (units,)
    row, summed per layer with `np.add.reduceat`; memory is one row, time linear."""
    layers, tasks = checkpoint.layers, checkpoint.task_ids
    sizes = np.array([layer.units for layer in layers], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    used = np.zeros((len(layers), len(tasks)), dtype=np.int64)
    active = np.zeros_like(used)
    pick = operator.itemgetter(*(layer.name for layer in layers))
    cumulative = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for t, task in enumerate(tasks):
        row = joined_masks(_as_tuple(pick(checkpoint.masks[task])), cumulative.size)
        active[:, t] = np.add.reduceat(row, starts, dtype=np.int64)
        np.maximum(cumulative, row, out=cumulative)
        used[:, t] = np.add.reduceat(cumulative, starts, dtype=np.int64)
    return _Counts(used, active, np.diff(used, axis=1, prepend=0))


def _as_tuple(picked) -> tuple:
    return picked if isinstance(picked, tuple) else (picked,)  # itemgetter of one name


class _Columns(NamedTuple):
    """What the counts need of each layer, (layers,) int64 columns in network order."""

    units: np.ndarray
    fan_in: np.ndarray
    kernel: np.ndarray  # weights per (output unit, input unit): kh * kw, or 1
    bias: np.ndarray  # 1 with a bias, else 0
    params: np.ndarray  # weights + biases


def _columns(layers: Sequence[LayerInfo]) -> _Columns:
    # one pass over the layers: their properties cost a call each, thousands of times
    rows = [
        (s[0], s[1], math.prod(s[2:]), layer.bias_key is not None)
        for layer in layers
        for s in (layer.weight_shape,)
    ]
    out, fan_in, kernel, bias = np.array(rows, dtype=np.int64).reshape(-1, 4).T
    units = np.array([layer.units for layer in layers], dtype=np.int64)
    return _Columns(units, fan_in, kernel, bias, out * fan_in * kernel + bias * units)


def _fan_in_used(layers, columns: _Columns, used: np.ndarray) -> np.ndarray:
    """(layers, tasks): inputs of each layer in the cumulative mask after each task: the
    preceding layer's used units times the inputs each of them feeds (1, or h*w after a
    flatten); all inputs for a first layer."""
    index = {layer.name: i for i, layer in enumerate(layers)}
    first = np.array([layer.preceding is None for layer in layers], dtype=bool)
    # row of the preceding layer (0, unused, for a first layer)
    source = np.array(
        [0 if layer.preceding is None else index[layer.preceding] for layer in layers],
        dtype=np.intp,
    )
    feeding = columns.units[source]
    uneven = np.flatnonzero(~first & (columns.fan_in % feeding != 0))
    if uneven.size:
        bad = int(uneven[0])
        inputs_per_unit(layers[bad], layers[int(source[bad])])  # raises, naming both
    factor = np.where(first, 0, columns.fan_in // feeding)  # inputs each of its units feeds
    whole = np.where(first, columns.fan_in, 0)  # all inputs, for a first layer
    return used[source] * factor[:, None] + whole[:, None]


def inputs_per_unit(layer: LayerInfo, source: LayerInfo) -> int:
    """How many of `layer`'s inputs each output unit of `source` feeds."""
    if layer.fan_in % source.units:
        raise CheckpointError(
            f"layer {layer.name} has {layer.fan_in} inputs, which {source.units} units "
            f"of its preceding layer {source.name} cannot feed"
        )
    return layer.fan_in // source.units


def _protected(columns: _Columns, used: np.ndarray, fan_in_used: np.ndarray) -> np.ndarray:
    return columns.kernel[:, None] * used * fan_in_used + columns.bias[:, None] * used


def _growth(
    checkpoint: Checkpoint, counts: _Counts, protected, total: Usage
) -> tuple[TaskGrowth, ...]:
    used_after = counts.used.sum(axis=0)
    active = counts.active.sum(axis=0)
    new = counts.new.sum(axis=0)
    units, params = total.units, total.params
    protected_after = protected.sum(axis=0) if params is not None else [None] * len(used_after)
    return tuple(
        TaskGrowth(
            task=task,
            new_units=int(new[t]),
            reused_units=int(active[t] - new[t]),
            free_before=int(units - used_after[t] + new[t]),
            units_used=int(used_after[t]),
            params_protected=None if params is None else int(protected_after[t]),
            params=params,
        )
        for t, task in enumerate(checkpoint.task_ids)
    )


# machine output (JSON record, CSV rows)

# what every usage record holds, in this order (capacity, compare and run trajectories)
USAGE_FIELDS = ["units", "units_used", "unit_usage", "params", "params_protected", "param_usage"]
USAGE_KEYS = ["name", *USAGE_FIELDS, "free"]
GROWTH_KEYS = ["task", "new_units", "reused_units", "network_sparsity", "param_usage"]
GROWTH_CSV_KEYS = [*GROWTH_KEYS, "units_used", "params_protected"]


@record.register
def _(report: CapacityReport) -> dict:
    return {
        "checkpoint": report.checkpoint,
        "tasks": list(report.tasks),
        "layers": [fields_of(layer, USAGE_KEYS) for layer in report.layers],
        "total": fields_of(report.total, USAGE_KEYS),
        "by_task": [fields_of(step, GROWTH_KEYS) for step in report.by_task],
        "protects": report.protects,  # false: no masks protect anything (e.g. fine-tuning)
        **_optional(report),
    }


def _optional(report: CapacityReport) -> dict:
    """The keys only some files have: soft protection's network capacity, unlearning, and
    for masks of parameters what they cover and each task's new and reused weights."""
    out = {}
    if report.covers != "units":
        out["covers"] = report.covers
        out["by_task_params"] = [
            {"task": s.task, "new_params": s.new_params, "reused_params": s.reused_params}
            for s in report.by_task
        ]
    if report.network_capacity is not None:
        out["network_capacity"] = dict(report.network_capacity)
    if report.unlearning:
        out["unlearning"] = [
            {
                "task": u.task,
                "freed_units": u.freed,
                "freed_by_layer": dict(u.freed_by_layer),
                "affected": list(u.affected),
                "compensation_units": {str(t): n for t, n in u.compensation.items()},
            }
            for u in report.unlearning
        ]
    return out


@csv_rows.register
def _(report: CapacityReport, by_task: bool = False) -> tuple[list[str], list[list]]:
    if by_task:
        return GROWTH_CSV_KEYS, [values_of(step, GROWTH_CSV_KEYS) for step in report.by_task]
    usages = [*report.layers, report.total]
    return USAGE_KEYS, [values_of(usage, USAGE_KEYS) for usage in usages]
