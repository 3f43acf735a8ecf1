"""CLArena's WSN (Winning SubNetworks): ``torch.save`` of the ``WSN`` Lightning module on a
``WSNMaskMLP``, read from the unpickler's placeholders.

WSN masks weights and biases, not units. The module keeps each task's binary masks in
``weight_masks[t][layer]`` (the weight's shape) and ``bias_masks[t][layer]`` ((units,) or
None), taken at the end of the task's training as the scores ``weight_score_t`` /
``bias_score_t`` at or above their ``1 - mask_percentage`` quantile;
``cumulative_weight_mask_for_previous_tasks`` is the weights' union, which freezes those
weights for later tasks. The masks are read as stored (tensors that may require grad: their
values are taken) and the union cross-checked. A layer whose bias every task masks gets
masks of shape (units, weights of a unit + 1): each unit's row holds its weights, then its
bias (``LayerInfo.bias_masked``), so that every count covers the biases too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import Tensor

from hatinspect.importers.common import binary_mask, imported_checkpoint, layers_of
from hatinspect.importers.pickled_modules import (
    attributes,
    class_name,
    layer_names,
    modules_or_empty,
    saved_model_state,
    task_key,
    with_metadata,
)
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.checkpoint import Covers
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import HPARAMS_KEY, PROTECTION_KEY
from hatinspect.native import format as fmt

NAME = "clarena"


def is_wsn(obj) -> bool:
    """A pickled algorithm with per-task ``weight_masks`` over a backbone of scores."""
    if not isinstance(obj, Placeholder) or not isinstance(obj.__dict__.get("state"), Mapping):
        return False
    backbone = modules_or_empty(obj).get("backbone")
    return "weight_masks" in obj.__dict__["state"] and "weight_score_t" in modules_or_empty(
        backbone
    )


def import_wsn(path: Path, obj: Placeholder, source: str | None, task_id: int | None):
    if source not in (None, NAME):
        raise CheckpointError(
            f"{path}: a CLArena WSN saved model; source={shown(source)} does not apply"
        )
    if task_id is not None:
        raise CheckpointError(f"{path}: a saved model stores its tasks' masks; no task id applies")
    attrs = attributes(path, obj)
    backbone = modules_or_empty(obj)["backbone"]
    names = layer_names(path, attributes(path, backbone))
    state = saved_model_state(path, obj)
    layers = layers_of(path, state, {n: "backbone." + n.replace("/", ".") for n in names})
    shapes = {layer.name: layer.weight_shape for layer in layers}
    masks = _weight_masks(path, attrs.get("weight_masks"), shapes)
    biases = _bias_masks(path, attrs.get("bias_masks"), layers, tuple(masks))
    layers = tuple(replace(layer, bias_masked=layer.name in biases) for layer in layers)
    cross_check = _cross_check(path, attrs, masks)
    for task, by_layer in masks.items():  # each unit's row: its weights, then its bias
        for name, bias in biases.items():
            rows = by_layer[name].reshape(len(bias[task]), -1)
            by_layer[name] = np.concatenate([rows, bias[task][:, None]], axis=1)
    percentage = attrs.get("mask_percentage")
    if type(percentage) not in (int, float) or not 0 < percentage <= 1:
        raise CheckpointError(
            f"{path}: WSN's mask_percentage is {shown(percentage)}, not in (0, 1]"
        )
    notes = [
        f"WSN masks weights and biases: each task's mask keeps the scores at or above their"
        f" {1 - percentage:g} quantile (mask_percentage {percentage:g}); " + _bias_words(layers),
        *cross_check,
    ]
    native = {k: k if k.startswith((fmt.BACKBONE_PREFIX, fmt.HEADS_PREFIX)) else
              fmt.OTHER_PREFIX + k for k in state}  # fmt: skip
    imported = imported_checkpoint(
        path, NAME, class_name(backbone), layers, masks, notes, state, native,
        covers=Covers.PARAMETERS,
    )  # fmt: skip
    return with_metadata(imported, {
        "clarena.saved": obj.global_name,
        "clarena.algorithm": class_name(obj),
        fmt.ALGORITHM_KEY: "wsn",
        PROTECTION_KEY: "hard",
        HPARAMS_KEY: json.dumps({"mask_percentage": percentage}),
    })  # fmt: skip


def _weight_masks(path: Path, stored, shapes) -> dict[int, dict[str, np.ndarray]]:
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{path}: WSN's weight_masks is not a mapping of tasks")
    out: dict[int, dict[str, np.ndarray]] = {}
    for key, layers in stored.items():
        task = task_key(path, key)
        if task in out or not isinstance(layers, Mapping) or set(layers) != set(shapes):
            raise CheckpointError(
                f"{path}: weight_masks[{shown(key)}] does not map exactly the weighted layers once"
            )
        out[task] = {}
        for name, shape in shapes.items():
            where = f"weight_masks[{shown(key)}][{shown(name)}]"
            tensor = layers[name]
            if not isinstance(tensor, Tensor) or tuple(tensor.shape) != shape:
                raise CheckpointError(f"{path}: {where} is not a tensor of shape {shape}")
            out[task][name] = binary_mask(path, where, tensor).reshape(shape)
    return dict(sorted(out.items()))


def _bias_masks(path: Path, stored, layers, tasks) -> dict[str, dict[int, np.ndarray]]:
    """layer -> task -> (units,) uint8: the bias masks of the layers whose biases every
    task masks (``bias_masks[t][layer]``; None, or no entry, where a layer has no bias)."""
    if stored is None:
        return {}
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{path}: WSN's bias_masks is not a mapping of tasks")
    by_task = {task_key(path, key): value for key, value in stored.items()}
    if set(by_task) != set(tasks):
        raise CheckpointError(
            f"{path}: WSN's bias_masks holds tasks {sorted(by_task)}, its weight_masks"
            f" {sorted(tasks)}"
        )
    out: dict[str, dict[int, np.ndarray]] = {}
    for layer in layers:
        found = {}
        for task, value in by_task.items():
            where = f"bias_masks[{task}][{shown(layer.name)}]"
            if not isinstance(value, Mapping):
                raise CheckpointError(f"{path}: {where[: where.index(']') + 1]} is not a mapping")
            tensor = value.get(layer.name)
            if tensor is None:
                continue
            if not layer.has_bias or not isinstance(tensor, Tensor):
                raise CheckpointError(f"{path}: {where} masks a bias the layer does not have")
            if tuple(tensor.shape) != (layer.units,):
                raise CheckpointError(f"{path}: {where} is not a tensor of shape ({layer.units},)")
            found[task] = binary_mask(path, where, tensor).reshape(layer.units)
        if found and len(found) < len(tasks):
            raise CheckpointError(
                f"{path}: bias_masks masks the bias of layer {shown(layer.name)} for tasks"
                f" {sorted(found)} only, not all of {sorted(tasks)}"
            )
        if found:
            out[layer.name] = found
    return out


def _bias_words(layers) -> str:
    masked = [layer.name for layer in layers if layer.bias_masked]
    if not masked:
        return "no bias is masked"
    if len(masked) == len(layers):
        return "each unit's row of a layer's mask holds its weights, then its bias"
    return (
        f"the biases of {', '.join(masked)} are masked (each unit's row holding its"
        " weights, then its bias); the other layers' are not"
    )


def _cross_check(path: Path, attrs, masks) -> list[str]:
    """A note where the stored union of the tasks' masks is not theirs."""
    stored = attrs.get("cumulative_weight_mask_for_previous_tasks")
    if not isinstance(stored, Mapping) or not masks:
        return []
    differ = []
    for name in next(iter(masks.values())):
        union = np.zeros_like(next(iter(masks.values()))[name])
        for mask in masks.values():
            union |= mask[name]
        tensor = stored.get(name)
        values = tensor.detach().float().numpy() if isinstance(tensor, Tensor) else None
        if values is None or values.shape != union.shape or not (values == union).all():
            differ.append(name)
    if not differ:
        return []
    return [
        f"WSN's cumulative_weight_mask_for_previous_tasks differs from the union of the tasks'"
        f" masks in {', '.join(differ)}; the per-task masks are used"
    ]
