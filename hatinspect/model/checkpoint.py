"""Typed, read-only views of a HAT checkpoint. Plain numpy: no torch needed."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

import numpy as np

from hatinspect.model.bits import PackedMasks, pack_slice, packed_size
from hatinspect.model.names import UNLEARNED_KEY
from hatinspect.model.records import csv_rows, record
from hatinspect.model.result import Result


class Covers(StrEnum):
    """What one entry of a layer's mask stands for."""

    UNITS = "units"  # an output unit (HAT's attention): a mask of shape (units,)
    PARAMETERS = "parameters"  # one element of the weight: a mask of the weight's shape


@dataclass(frozen=True)
class LayerInfo:
    """One weighted layer (a linear or conv) and the mask that gates its output units."""

    name: str  # "/"-separated module path, e.g. "fc/0" or "conv2x/0/conv1"
    units: int  # output features / channels, the length of its mask
    # (out, in) for linear, (out, in, kh, kw) for conv; () where the file holds no weights
    # (a run known from its training logs alone): its parameters are unknown
    weight_shape: tuple[int, ...]
    weight_key: str  # tensor name of the weight in the file it came from
    bias_key: str | None  # tensor name of the bias, None when the layer has none
    preceding: str | None  # layer whose output units feed this one; None for the first
    # True when a foreign file did not record `preceding` and it was inferred from its
    # layer names and weight shapes
    preceding_inferred: bool = False
    # masks of weights only: True when the masks cover the bias too (CLArena's WSN), each
    # unit's row of the mask holding its weights, then its bias
    bias_masked: bool = False

    @property
    def has_bias(self) -> bool:
        return self.bias_key is not None

    @property
    def fan_in(self) -> int:
        return self.weight_shape[1]

    @property
    def kernel_size(self) -> int:
        """Weights per (output unit, input unit) pair: 1 for linear, kh * kw for conv."""
        return math.prod(self.weight_shape[2:])

    @property
    def weights_known(self) -> bool:
        return bool(self.weight_shape)

    @property
    def params(self) -> int | None:
        """Weights and biases; None where the weights are unknown."""
        if not self.weights_known:
            return None
        return math.prod(self.weight_shape) + (self.units if self.has_bias else 0)

    @property
    def weights_per_unit(self) -> int:
        """Weights of one output unit: its row of the weight (inputs x kernel)."""
        return math.prod(self.weight_shape[1:])

    def mask_shape(self, covers: Covers = Covers.UNITS) -> tuple[int, ...]:
        """The shape of this layer's mask when each entry covers ``covers``: (units,), the
        weight's shape, or (units, weights of a unit + 1) where the bias is masked too."""
        if covers == Covers.UNITS:
            return (self.units,)
        if self.bias_masked:
            return (self.units, self.weights_per_unit + 1)
        return self.weight_shape

    def mask_size(self, covers: Covers = Covers.UNITS) -> int:
        """The entries of this layer's mask when each covers ``covers``."""
        return math.prod(self.mask_shape(covers))


@dataclass(frozen=True)
class Checkpoint(Result):
    """What an inspection needs from a checkpoint: layers in network order and binary masks."""

    path: str
    backbone: str  # class name, e.g. "HATMaskMLP"
    source: str  # "hatinspect", "original-hat", "hat-cl" or "clarena"
    layers: tuple[LayerInfo, ...]
    task_ids: tuple[int, ...]
    # task id -> layer name -> uint8 array of 0/1 of the layer's mask_shape(covers), read-only
    masks: Mapping[int, Mapping[str, np.ndarray]]
    metadata: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # caveats to show the user, e.g. what could not be recovered
    # task id -> tensor keys of that task's own batch norms (per-task batch norm), if any
    task_norms: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    covers: Covers = Covers.UNITS  # what one entry of a mask stands for

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def weights_known(self) -> bool:
        """False where the file holds no weights (training logs): no parameter is known."""
        return all(layer.weights_known for layer in self.layers)

    @property
    def params(self) -> int | None:
        """Every layer's weights and biases; None where the weights are unknown."""
        if not self.weights_known:
            return None
        return sum(layer.params for layer in self.layers)

    def layer(self, name: str) -> LayerInfo:
        """The layer called `name` (KeyError when there is none); a dictionary look-up."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> Mapping[str, LayerInfo]:
        return {layer.name: layer for layer in self.layers}

    @cached_property
    def unlearned(self) -> tuple[int, ...]:
        """Stored tasks whose learning was undone (AmnesiacHAT): their masks are kept to
        be shown, and they count in no cumulative or summative mask."""
        try:
            tasks = json.loads(self.metadata.get(UNLEARNED_KEY, "[]"))
        except (TypeError, ValueError):
            return ()
        if not isinstance(tasks, list):
            return ()
        return tuple(task for task in self.task_ids if task in tasks)

    @property
    def retained_task_ids(self) -> tuple[int, ...]:
        """The stored tasks still learned: all of them unless some were unlearned."""
        unlearned = set(self.unlearned)
        return tuple(task for task in self.task_ids if task not in unlearned)

    def packed_rows(
        self, tasks, layer: str, start: int, stop: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """(tasks, stop - start) uint8: bytes ``start .. stop`` of each task's mask of
        ``layer`` as packed bits (``model.bits``): read as stored from a native file of
        masks of weights, packed from the dense masks otherwise; into ``out`` where given
        (an array of that shape whose rows are each contiguous)."""
        if isinstance(self.masks, PackedMasks):
            return self.masks.rows(tasks, layer, start, stop, out)
        rows = np.zeros((len(tasks), stop - start), dtype=np.uint8) if out is None else out
        for row, task in zip(rows, tasks, strict=True):
            row[:] = pack_slice(self.masks[task][layer], start, stop)
        return rows

    def packed_mask(self, task: int, layer: str) -> np.ndarray:
        """A task's whole mask of ``layer`` as packed bits."""
        size = packed_size(self.layer(layer).mask_size(self.covers))
        return self.packed_rows([task], layer, 0, size)[0]

    def cumulative_mask(self) -> dict[str, np.ndarray]:
        """Per layer, 1 where any retained task uses the entry (element-wise max); uint8."""
        return {layer.name: _reduce(self, layer, np.maximum, np.uint8) for layer in self.layers}

    def summative_mask(self) -> dict[str, np.ndarray]:
        """Per layer, how many retained tasks use each entry (element-wise sum); int64."""
        return {layer.name: _reduce(self, layer, np.add, np.int64) for layer in self.layers}


def _reduce(checkpoint: Checkpoint, layer: LayerInfo, op, dtype) -> np.ndarray:
    out = np.zeros(layer.mask_shape(checkpoint.covers), dtype=dtype)
    for task in checkpoint.retained_task_ids:
        op(out, checkpoint.masks[task][layer.name], out=out, casting="unsafe")
    return out


# machine output (JSON record, CSV rows)


@record.register
def _(checkpoint: Checkpoint) -> dict:
    out = {
        "checkpoint": checkpoint.path,
        "backbone": checkpoint.backbone,
        "source": checkpoint.source,
        "tasks": list(checkpoint.task_ids),
        "unlearned_tasks": list(checkpoint.unlearned),
        "layers": [
            {
                "name": layer.name,
                "units": layer.units,
                "weight_shape": list(layer.weight_shape) if layer.weights_known else None,
                "has_bias": layer.has_bias if layer.weights_known else None,
                "preceding": layer.preceding,
                "preceding_inferred": layer.preceding_inferred,
                "params": layer.params,
            }
            for layer in checkpoint.layers
        ],
        "metadata": _metadata(checkpoint.metadata),
        "notes": list(checkpoint.notes),
    }
    if checkpoint.covers == Covers.PARAMETERS:  # masks of weights: whether they cover biases
        for layer, entry in zip(checkpoint.layers, out["layers"], strict=True):
            entry["bias_masked"] = layer.bias_masked
    return out


def _metadata(metadata) -> dict:
    """User metadata with its values' types back, keys sorted (the file keeps no order).

    The file stores a string as is and anything else as JSON text, so text that parses
    as a JSON number, boolean, null, list or object is shown as that value."""
    return {key: _typed(metadata[key]) for key in sorted(metadata)}


def _typed(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, str) or (isinstance(value, float) and not math.isfinite(value)):
        return text  # a string stored as is stays as it was written
    return value


@csv_rows.register
def _(checkpoint: Checkpoint) -> tuple[list[str], list[list]]:
    rows = [
        [
            layer.name,
            layer.units,
            "x".join(map(str, layer.weight_shape)) if layer.weights_known else "",
            layer.has_bias,
            layer.preceding or "",
            "" if layer.params is None else layer.params,
        ]
        for layer in checkpoint.layers
    ]
    return ["name", "units", "weight_shape", "has_bias", "preceding", "params"], rows
