"""HAT's promise checked on files: parameters protected before a task are untouched after it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hatinspect.core.capacity import inputs_per_unit
from hatinspect.core.errors import CheckpointError
from hatinspect.core.types import Checkpoint, LayerInfo

Reader = Callable[[str, Sequence[str]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class LayerAudit:
    name: str
    protected: int  # parameters BEFORE's cumulative mask protects
    changed: int  # of those, not bit-identical in AFTER
    max_abs_change: float  # over the changed ones; 0 when none changed
    mean_abs_change: float  # over the changed ones; 0 when none changed


@dataclass(frozen=True)
class AuditReport:
    before: str
    after: str
    tasks: tuple[int, ...]  # BEFORE's tasks, whose units are protected
    layers: tuple[LayerAudit, ...]

    @property
    def protected(self) -> int:
        return sum(layer.protected for layer in self.layers)

    @property
    def changed(self) -> int:
        return sum(layer.changed for layer in self.layers)

    @property
    def ok(self) -> bool:
        return self.changed == 0


def audit(before: Checkpoint, after: Checkpoint, read: Reader | None = None) -> AuditReport:
    """Compare every protected weight and bias of BEFORE with AFTER, bit for bit.

    `read(path, keys)` returns the named tensors of a file as numpy arrays.
    """
    if read is None:
        from hatinspect.checkpoints import read_tensors as read
    pairs = [(layer, _counterpart(layer, after)) for layer in before.layers]
    old = read(before.path, _keys(layer for layer, _ in pairs))
    new = read(after.path, _keys(twin for _, twin in pairs))
    cumulative = before.cumulative_mask()
    layers = tuple(
        _audit_layer(layer, twin, _protection(before, layer, cumulative), old, new)
        for layer, twin in pairs
    )
    norms = tuple(
        _audit_task_norms(before, after, task, read)
        for task in before.task_ids
        if task in before.task_norms  # the stored tasks: not one still training
    )
    return AuditReport(before.path, after.path, before.task_ids, layers + norms)


def _audit_task_norms(before: Checkpoint, after: Checkpoint, task: int, read) -> LayerAudit:
    """A task's own batch norms (parameters and running statistics) never change again."""
    keys = before.task_norms[task]
    missing = sorted(set(keys) - set(after.task_norms.get(task, ())))
    if missing:
        raise CheckpointError(
            f"{after.path} has no {missing[0]!r}: task {task}'s batch norm, in the earlier file"
        )
    old, new = read(before.path, keys), read(after.path, keys)
    changes = np.concatenate(
        [_changes(key, old[key], new[key], np.ones(old[key].shape, bool)).ravel() for key in keys]
    )
    return LayerAudit(
        name=f"batch norm of task {task}",
        protected=sum(int(old[key].size) for key in keys),
        changed=int(changes.size),
        max_abs_change=float(changes.max()) if changes.size else 0.0,
        mean_abs_change=float(changes.mean()) if changes.size else 0.0,
    )


def _counterpart(layer: LayerInfo, after: Checkpoint) -> LayerInfo:
    try:
        twin = after.layer(layer.name)
    except KeyError:
        raise CheckpointError(
            f"{after.path} has no layer {layer.name}, which the "
            "earlier checkpoint has: not the same network"
        ) from None
    if (twin.weight_shape, twin.has_bias) != (layer.weight_shape, layer.has_bias):
        raise CheckpointError(
            f"layer {layer.name} differs in shape between the checkpoints: "
            f"{layer.weight_shape} and {twin.weight_shape}"
        )
    return twin


def _keys(layers) -> list[str]:
    return [key for layer in layers for key in (layer.weight_key, layer.bias_key) if key]


def _protection(checkpoint: Checkpoint, layer: LayerInfo, cumulative) -> tuple[np.ndarray, ...]:
    """(rows, columns) bool: the protected output units, and inputs (all for a first layer)."""
    rows = cumulative[layer.name].astype(bool)
    if layer.preceding is None:
        return rows, np.ones(layer.fan_in, dtype=bool)
    source = checkpoint.layer(layer.preceding)
    return rows, np.repeat(cumulative[source.name].astype(bool), inputs_per_unit(layer, source))


def _audit_layer(layer, twin, protection, old, new) -> LayerAudit:
    rows, columns = protection
    spatial = (1,) * (len(layer.weight_shape) - 2)
    weight_mask = (rows[:, None] & columns[None, :]).reshape(rows.size, columns.size, *spatial)
    pairs = [(old[layer.weight_key], new[twin.weight_key], weight_mask)]
    if layer.has_bias:
        pairs.append((old[layer.bias_key], new[twin.bias_key], rows))
    changes = np.concatenate([_changes(layer.name, *pair) for pair in pairs])
    return LayerAudit(
        name=layer.name,
        protected=sum(int(np.broadcast_to(mask, a.shape).sum()) for a, _, mask in pairs),
        changed=int(changes.size),
        max_abs_change=float(changes.max()) if changes.size else 0.0,
        mean_abs_change=float(changes.mean()) if changes.size else 0.0,
    )


def _changes(name: str, old: np.ndarray, new: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|new - old| (float64) of the protected entries whose bits differ."""
    if old.shape != new.shape or old.dtype != new.dtype:
        raise CheckpointError(
            f"layer {name}: a tensor is {old.dtype}{list(old.shape)} in one "
            f"checkpoint and {new.dtype}{list(new.shape)} in the other"
        )
    differs = _bits_differ(old, new) & mask
    return np.abs(new[differs].astype(np.float64) - old[differs].astype(np.float64))


def _bits_differ(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Entry-wise, whether the stored bytes differ (so -0.0 vs 0.0 and NaN payloads count)."""

    def as_bytes(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a).view(np.uint8).reshape(*a.shape, a.dtype.itemsize)

    return (as_bytes(old) != as_bytes(new)).any(axis=-1)
