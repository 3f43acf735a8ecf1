"""Avalanche's PackNet (``avalanche.models.packnet.PackNetModel``): a ``state_dict`` whose
wrapped layers keep, beside their weight (``<module>.wrappee.weight``), a ``task_index``
buffer of the weight's shape (uint8).

``task_index`` names the experience that owns each weight: ``k`` for a weight frozen with
experience k, ``_task_count`` (the experiences frozen so far) for a free one, and
``PRUNED_CODE`` (255) for a weight pruned from the experience being trained but not yet
frozen (between ``prune`` and ``freeze_pruned``). Experience t uses the weights with
``task_index <= t``; those are its masks, experiences counted from 0 as Avalanche counts them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from hatinspect.importers.common import Imported, imported_checkpoint, numpy_of
from hatinspect.importers.flow import check_feeds
from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import HPARAMS_KEY, PROTECTION_KEY
from hatinspect.native import format as fmt

NAME = "avalanche-packnet"
INDEX = ".task_index"
PRUNED = 255  # Avalanche's PRUNED_CODE


def detects(state, extra) -> bool:
    return any(k.endswith(INDEX) and k[: -len(INDEX)] + ".wrappee.weight" in state for k in state)


def read(path: Path, state, extra, task_id=None) -> Imported:
    if task_id is not None:
        raise CheckpointError(f"{path}: a PackNet file records its tasks; no task id applies")
    modules = [k[: -len(INDEX)] for k in state if k.endswith(INDEX)]
    lonely = [m for m in modules if f"{m}.wrappee.weight" not in state]
    if lonely:
        raise CheckpointError(f"{path}: {shown(lonely[0] + INDEX)} has no weight beside it")
    names = {m.removeprefix("wrappee.").replace(".", "/"): m for m in modules}
    layers = _chain(path, layers_of_modules(path, state, names))
    count = _task_count(path, state, modules)
    owners = {name: _owners(path, state, m, count) for name, m in names.items()}
    masks = {
        task: {name: (index <= task).astype(np.uint8) for name, index in owners.items()}
        for task in range(count)
    }
    pruned = sum(int((index == PRUNED).sum()) for index in owners.values())
    notes = [
        f"PackNet masks weights: experience t uses those whose task_index is at most t"
        f" ({count} experience{'s' * (count != 1)} frozen, counted from 0); biases are shared"
    ]
    if pruned:
        notes.append(
            f"{pruned:,} weights are pruned from experience {count}, which is not frozen yet"
            " (written between prune and freeze_pruned): they are counted free"
        )
    native = {key: fmt.OTHER_PREFIX + key for key in state}
    imported = imported_checkpoint(
        path, NAME, "PackNetModel", layers, masks, notes, state, native,
        covers=Covers.PARAMETERS,
    )  # fmt: skip
    metadata = {
        fmt.ALGORITHM_KEY: "packnet",
        PROTECTION_KEY: "hard",
        HPARAMS_KEY: json.dumps({"task_count": count}),
    }
    checkpoint = replace(imported.checkpoint, metadata=MappingProxyType(metadata))
    return replace(imported, checkpoint=checkpoint)


def layers_of_modules(path: Path, state, names: dict[str, str]) -> list[LayerInfo]:
    layers = []
    for name, module in names.items():
        weight, bias = f"{module}.wrappee.weight", f"{module}.wrappee.bias"
        shape = tuple(state[weight].shape)
        if len(shape) < 2:
            raise CheckpointError(f"{path}: layer {name!r}: {weight!r} has shape {shape}")
        layers.append(LayerInfo(name, shape[0], shape, weight, bias if bias in state else None,
                                None))  # fmt: skip
    return layers


def _chain(path: Path, layers: list[LayerInfo]) -> tuple[LayerInfo, ...]:
    """The wrapped layers in the state dict's order, each fed by the one before (PackNet
    wraps a network's layers where they are; its file records no data flow)."""
    out = []
    for layer in layers:
        preceding = out[-1] if out else None
        if preceding is not None:
            check_feeds(path, layer, preceding)
        out.append(replace(layer, preceding=preceding and preceding.name,
                           preceding_inferred=preceding is not None))  # fmt: skip
    return tuple(out)


def _task_count(path: Path, state, modules: list[str]) -> int:
    """The experiences frozen so far: every wrapped layer's ``_task_count``, which agree."""
    counts = set()
    for key in ["_task_count", *(f"{m}._task_count" for m in modules)]:
        if key in state:
            values = numpy_of(state[key])
            if values.size != 1 or not float(values.reshape(-1)[0]).is_integer():
                raise CheckpointError(f"{path}: {shown(key)} is not a count of experiences")
            counts.add(int(values.reshape(-1)[0]))
    if len(counts) != 1 or not 0 <= next(iter(counts)) < PRUNED:
        raise CheckpointError(f"{path}: the layers' _task_count disagree or are missing")
    return counts.pop()


def _owners(path: Path, state, module: str, count: int) -> np.ndarray:
    index = numpy_of(state[module + INDEX])
    weight = state[module + ".wrappee.weight"]
    if index.dtype != np.uint8 or index.shape != tuple(weight.shape):
        raise CheckpointError(
            f"{path}: {shown(module + INDEX)} is not a uint8 tensor of its weight's shape"
        )
    bad = (index > count) & (index != PRUNED)
    if bad.any():
        raise CheckpointError(
            f"{path}: {shown(module + INDEX)} names experience {int(index[bad][0])}, past the"
            f" {count} frozen"
        )
    return index
